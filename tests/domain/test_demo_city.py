"""The city as GridHub knows it, and the facts the shipped demo city must hold."""

from __future__ import annotations

import csv
import itertools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from shapely.geometry import box

from core.city.config import camera_from_mapping
from domain.cells import CellIndex, GridCell, cells_from_geojson
from domain.city import City
from domain.gridcode import Level, parse_grid_code
from domain.registry import Device, DeviceKind, Registry, device_from_row
from domain.routing import RoutingTable, routing_from_rows
from domain.sla import SlaCalendar
from domain.taxonomy import Taxonomy, taxonomy_from_rows

DEMO = Path(__file__).parents[2] / "core" / "city" / "demo"


def read_csv(name: str) -> list[dict[str, str]]:
    with (DEMO / name).open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_yaml(name: str) -> Any:
    with (DEMO / name).open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def demo_config() -> dict[str, Any]:
    config: dict[str, Any] = read_yaml("city.yaml")
    return config


@pytest.fixture(scope="module")
def demo_cells(demo_config: dict[str, Any]) -> CellIndex:
    with (DEMO / "cells.geojson").open(encoding="utf-8") as f:
        return CellIndex(cells_from_geojson(json.load(f), code_length=int(demo_config["code_length"])))


@pytest.fixture(scope="module")
def demo_registry() -> Registry:
    return Registry([device_from_row(row) for row in read_csv("devices.csv")],
                    [camera_from_mapping(data) for data in read_yaml("cameras.yaml")])


@pytest.fixture(scope="module")
def demo_taxonomy() -> Taxonomy:
    return taxonomy_from_rows(read_csv("taxonomy.csv"))


def test_the_summary_counts_cells_devices_and_cameras(calendar: SlaCalendar) -> None:
    cells = CellIndex([
        GridCell(parse_grid_code("310104003001001"), "a", "", "", box(0, 0, 1, 1)),
        GridCell(parse_grid_code("310104003001002"), "b", "", "", box(1, 0, 2, 1)),
    ])
    registry = Registry([Device("rain-0001", DeviceKind.RAIN, "310104003001001", 0.5, 0.5, 60)])
    city = City("徐汇区 (Xuhui)", "310104", cells, registry, taxonomy_from_rows([]), RoutingTable([]), calendar)

    assert city.summary() == "徐汇区 (Xuhui): 2 cells, 1 devices, 0 cameras"


def test_the_demo_city_assembles(
    demo_config: dict[str, Any], demo_cells: CellIndex, demo_registry: Registry, demo_taxonomy: Taxonomy,
    calendar: SlaCalendar,
) -> None:
    routing = routing_from_rows(read_csv("routing.csv"), demo_taxonomy, calendar.working_day)
    city = City(demo_config["name"], str(demo_config["county_code"]), demo_cells, demo_registry, demo_taxonomy,
                routing, calendar)

    assert city.summary().startswith(f"{demo_config['name']}: {len(demo_cells)} cells, ")


def test_the_demo_city_has_at_least_60_cells_in_its_county(demo_config: dict[str, Any], demo_cells: CellIndex) -> None:
    assert len(demo_cells) >= 60
    assert all(cell.code.county == demo_config["county_code"] for cell in demo_cells)


def test_the_demo_city_has_at_least_3_streets_with_at_least_2_communities_each(demo_cells: CellIndex) -> None:
    communities_by_street: dict[str, set[str]] = defaultdict(set)
    for community in demo_cells.areas(Level.COMMUNITY):
        communities_by_street[community[:9]].add(community)

    assert len(demo_cells.areas(Level.STREET)) >= 3
    assert set(communities_by_street) == set(demo_cells.areas(Level.STREET))
    assert all(len(communities) >= 2 for communities in communities_by_street.values())


def test_every_demo_street_and_community_has_a_name(demo_cells: CellIndex) -> None:
    assert all(demo_cells.areas(Level.STREET).values())
    assert all(demo_cells.areas(Level.COMMUNITY).values())


def test_demo_cells_are_nominally_10000_m2(demo_cells: CellIndex) -> None:
    assert all(5_000 <= cell.area_m2 <= 20_000 for cell in demo_cells)


def test_demo_cells_do_not_overlap(demo_cells: CellIndex) -> None:
    # Shared edges are fine; a shared area would make point placement ambiguous.
    overlaps = [
        (a.code.digits, b.code.digits)
        for a, b in itertools.combinations(demo_cells, 2)
        if a.polygon.intersection(b.polygon).area > 1e-12
    ]
    assert overlaps == []


def test_the_demo_city_has_at_least_200_devices_of_all_three_kinds(demo_registry: Registry) -> None:
    kinds = {device.kind for device in demo_registry}

    assert len(demo_registry) >= 200
    assert kinds == set(DeviceKind)


def test_every_demo_device_and_camera_lies_in_the_cell_it_names(
    demo_registry: Registry, demo_cells: CellIndex
) -> None:
    demo_registry.check_against(demo_cells)  # raises on the first misplaced device


def test_every_demo_manhole_watches_a_manhole_cover_component(
    demo_registry: Registry, demo_config: dict[str, Any], demo_taxonomy: Taxonomy
) -> None:
    manholes = [device for device in demo_registry if device.kind is DeviceKind.MANHOLE]

    assert manholes
    for device in manholes:
        assert device.component_id is not None, device.id
        assert device.component_id.taxonomy_code in {"0101", "0102", "0103"}, device.id
        assert device.component_id.county == demo_config["county_code"], device.id
        assert device.component_id.taxonomy_code in demo_taxonomy


def test_demo_manhole_component_ids_are_unique(demo_registry: Registry) -> None:
    ids = [device.component_id for device in demo_registry if device.kind is DeviceKind.MANHOLE]

    assert len(ids) == len(set(ids))

