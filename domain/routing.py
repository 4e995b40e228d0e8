"""Routing (派遣规则): which department and level take each taxonomy code, and how long they have."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from domain.cases import Tier
from domain.sla import Clock, SlaError, SlaTerm, parse_term
from domain.taxonomy import Taxonomy


class RoutingError(ValueError):
    """A malformed routing table, or a code without a route."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where a category of case goes by default."""

    category: str
    department: str
    tier: Tier
    term: SlaTerm

    @property
    def urgent(self) -> bool:
        """Urgent categories run on natural time (e.g. an open manhole cover: 2 h, day or night)."""
        return self.term.clock is Clock.NATURAL


class RoutingTable:
    """Routes by taxonomy code."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._routes = {route.category: route for route in routes}

    def __getitem__(self, category: str) -> Route:
        try:
            return self._routes[category]
        except KeyError:
            raise RoutingError(f"no route for taxonomy code {category!r}") from None

    def __contains__(self, category: object) -> bool:
        return category in self._routes

    def get(self, category: str) -> Route | None:
        """The route of a taxonomy code, None if the table has none (the center routes it by hand)."""
        return self._routes.get(category)

    def __len__(self) -> int:
        return len(self._routes)


def routing_from_rows(
    rows: Iterable[Mapping[str, str]], taxonomy: Taxonomy, working_day: timedelta = timedelta(hours=9)
) -> RoutingTable:
    """Build routes from rows with `code`, `department`, `tier` (community|street|district) and `deadline`."""
    routes = []
    for i, row in enumerate(rows, start=1):
        code = str(row.get("code", "")).strip()
        where = f"routing row {i} ({code or 'no code'})"
        if code not in taxonomy:
            raise RoutingError(f"{where}: code is not in the taxonomy")
        department = str(row.get("department", "")).strip()
        if not department:
            raise RoutingError(f"{where}: department is empty")
        tier_name = str(row.get("tier", "")).strip().upper()
        if tier_name not in Tier.__members__:
            raise RoutingError(f"{where}: tier {row.get('tier')!r} must be community, street or district")
        try:
            term = parse_term(str(row.get("deadline", "")), working_day)
        except SlaError as exc:
            raise RoutingError(f"{where}: {exc}") from exc
        routes.append(Route(code, department, Tier[tier_name], term))
    table = RoutingTable(routes)
    if len(table) != len(routes):
        raise RoutingError("routing table lists a taxonomy code twice")
    return table
