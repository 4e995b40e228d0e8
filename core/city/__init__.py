"""Load a city directory (or the shipped demo city) into the domain's `City`, and camera files on their own."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import orjson

from core.city.config import CityError, load_cameras, load_city_config, read_text
from core.settings import Settings, SlaSettings
from domain.cells import CellIndex, cells_from_geojson
from domain.city import City
from domain.registry import Registry, device_from_row
from domain.routing import routing_from_rows
from domain.sla import ChinaWorkdays, SlaCalendar
from domain.taxonomy import taxonomy_from_rows

__all__ = ["CITY_FILES", "DEMO_CITY_DIR", "CityError", "build_calendar", "load_cameras", "load_city"]

DEMO_CITY_DIR = Path(__file__).parent / "demo"
CITY_FILES = ("city.yaml", "cells.geojson", "devices.csv", "cameras.yaml", "taxonomy.csv", "routing.csv")

T = TypeVar("T")


def load_city(settings: Settings) -> City:
    """Load and cross-check the configured city; raise CityError naming the file and the problem."""
    directory = settings.city.dir or DEMO_CITY_DIR
    missing = [name for name in CITY_FILES if not (directory / name).is_file()]
    if missing:
        raise CityError(f"{directory}: missing city file(s): {', '.join(missing)}")
    meta = load_city_config(directory / "city.yaml")
    code_length = meta.code_length
    calendar = build_calendar(settings.sla)
    cells = _parse(directory / "cells.geojson", lambda text: CellIndex(cells_from_geojson(orjson.loads(text),
                                                                                          code_length)))
    taxonomy = _parse(directory / "taxonomy.csv", lambda text: taxonomy_from_rows(_csv_rows(text)))
    routing = _parse(directory / "routing.csv",
                     lambda text: routing_from_rows(_csv_rows(text), taxonomy, calendar.working_day))
    devices = _parse(directory / "devices.csv", lambda text: [device_from_row(r) for r in _csv_rows(text)])
    cameras = load_cameras(directory / "cameras.yaml")
    registry = _parse(directory / "devices.csv", lambda _: Registry(devices, cameras))
    _parse(directory / "devices.csv", lambda _: registry.check_against(cells))
    return City(
        name=meta.name or directory.name,
        county_code=meta.county_code,
        cells=cells,
        registry=registry,
        taxonomy=taxonomy,
        routing=routing,
        calendar=calendar,
    )


def build_calendar(sla: SlaSettings) -> SlaCalendar:
    """The SLA calendar from settings: China's official working days with the city's overrides."""
    return SlaCalendar(
        tz=ZoneInfo(sla.timezone),
        working_periods=tuple(sla.working_periods),
        is_workday=ChinaWorkdays(sla.extra_holidays, sla.extra_workdays),
    )


def _parse(path: Path, parse: Callable[[str], T]) -> T:
    text = read_text(path)
    try:
        return parse(text)
    except (ValueError, TypeError, KeyError) as exc:
        raise CityError(f"{path}: {exc}") from None


def _csv_rows(text: str) -> list[dict[str, Any]]:
    return list(csv.DictReader(text.splitlines()))
