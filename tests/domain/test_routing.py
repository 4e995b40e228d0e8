"""Routing (派遣规则): department, starting level and deadline per taxonomy code."""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path

import pytest

from domain.cases import Tier
from domain.routing import Route, RoutingError, RoutingTable, routing_from_rows
from domain.sla import Clock, SlaError, SlaTerm
from domain.taxonomy import Taxonomy, taxonomy_from_rows

DEMO = Path(__file__).parents[2] / "core" / "city" / "demo"
H = timedelta(hours=1)


def read_csv(name: str) -> list[dict[str, str]]:
    with (DEMO / name).open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return taxonomy_from_rows(read_csv("taxonomy.csv"))


def route_row(**overrides: str) -> dict[str, str]:
    return {"code": "0501", "department": "城管执法", "tier": "community", "deadline": "2h working", **overrides}


def test_a_row_becomes_a_route(taxonomy: Taxonomy) -> None:
    table = routing_from_rows([route_row()], taxonomy)

    assert table["0501"] == Route("0501", "城管执法", Tier.COMMUNITY, SlaTerm(2 * H, Clock.WORKING))


def test_the_tier_is_read_case_insensitively_and_trimmed(taxonomy: Taxonomy) -> None:
    table = routing_from_rows([route_row(tier=" Street ", code=" 0501 ", department=" 城管执法 ")], taxonomy)

    assert table["0501"].tier is Tier.STREET
    assert table["0501"].department == "城管执法"


def test_a_route_on_natural_time_is_urgent() -> None:
    assert Route("0103", "水务", Tier.STREET, SlaTerm(2 * H, Clock.NATURAL)).urgent
    assert not Route("0406", "水务", Tier.STREET, SlaTerm(4 * H, Clock.WORKING)).urgent


def test_a_working_day_deadline_follows_the_given_working_day(taxonomy: Taxonomy) -> None:
    table = routing_from_rows([route_row(code="0404", deadline="1d working")], taxonomy, working_day=7.5 * H)

    assert table["0404"].term == SlaTerm(7.5 * H, Clock.WORKING)


def test_a_code_outside_the_taxonomy_is_rejected(taxonomy: Taxonomy) -> None:
    with pytest.raises(RoutingError, match=r"routing row 1 \(0999\): code is not in the taxonomy"):
        routing_from_rows([route_row(code="0999")], taxonomy)


def test_a_row_without_a_code_is_named_as_such(taxonomy: Taxonomy) -> None:
    with pytest.raises(RoutingError, match=r"routing row 2 \(no code\): code is not in the taxonomy"):
        routing_from_rows([route_row(), {"department": "水务"}], taxonomy)


def test_a_route_needs_a_department(taxonomy: Taxonomy) -> None:
    with pytest.raises(RoutingError, match=r"routing row 1 \(0501\): department is empty"):
        routing_from_rows([route_row(department="  ")], taxonomy)


@pytest.mark.parametrize("tier", ["", "city", "grid"])
def test_the_tier_must_be_community_street_or_district(taxonomy: Taxonomy, tier: str) -> None:
    with pytest.raises(RoutingError, match="must be community, street or district"):
        routing_from_rows([route_row(tier=tier)], taxonomy)


def test_a_malformed_deadline_is_a_routing_error_caused_by_the_sla_error(taxonomy: Taxonomy) -> None:
    with pytest.raises(RoutingError, match=r"routing row 1 \(0501\): SLA term '2 hours' must look like") as info:
        routing_from_rows([route_row(deadline="2 hours")], taxonomy)

    assert isinstance(info.value.__cause__, SlaError)


def test_a_code_routed_twice_is_rejected(taxonomy: Taxonomy) -> None:
    with pytest.raises(RoutingError, match="lists a taxonomy code twice"):
        routing_from_rows([route_row(), route_row(department="市场监管")], taxonomy)


def test_a_code_without_a_route_raises_routing_error() -> None:
    table = RoutingTable([Route("0501", "城管执法", Tier.COMMUNITY, SlaTerm(2 * H, Clock.WORKING))])

    assert "0501" in table
    assert "0504" not in table
    assert len(table) == 1
    with pytest.raises(RoutingError, match="no route for taxonomy code '0504'"):
        table["0504"]


# --- the demo city's table ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_routing(taxonomy: Taxonomy) -> RoutingTable:
    return routing_from_rows(read_csv("routing.csv"), taxonomy)


def test_the_demo_table_routes_every_taxonomy_code(taxonomy: Taxonomy, demo_routing: RoutingTable) -> None:
    assert all(category.code in demo_routing for category in taxonomy)
    assert len(demo_routing) == len(taxonomy)


@pytest.mark.parametrize(
    ("code", "department", "term"),
    [
        ("0101", "水务", SlaTerm(2 * H, Clock.NATURAL)),  # manhole cover: 2 h urgent
        ("0102", "水务", SlaTerm(2 * H, Clock.NATURAL)),
        ("0103", "水务", SlaTerm(2 * H, Clock.NATURAL)),
        ("0302", "住建环保", SlaTerm(4 * H, Clock.WORKING)),
        ("0404", "水务", SlaTerm(9 * H, Clock.WORKING)),  # 1 working day
        ("0406", "水务", SlaTerm(4 * H, Clock.WORKING)),
        ("0501", "城管执法", SlaTerm(2 * H, Clock.WORKING)),
        ("0504", "城管执法", SlaTerm(4 * H, Clock.WORKING)),
        ("9901", "公安", SlaTerm(timedelta(minutes=30), Clock.NATURAL)),  # 30 min urgent
        ("9902", "运维", SlaTerm(18 * H, Clock.WORKING)),  # 2 working days
        ("9903", "运维", SlaTerm(18 * H, Clock.WORKING)),
    ],
)
def test_the_demo_table_follows_the_design_defaults(
    demo_routing: RoutingTable, code: str, department: str, term: SlaTerm
) -> None:
    route = demo_routing[code]

    assert (route.department, route.term) == (department, term)
    assert route.urgent is (term.clock is Clock.NATURAL)
