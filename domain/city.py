"""The city as GridHub knows it: cells, devices and cameras, taxonomy, routing and the SLA calendar."""

from __future__ import annotations

from dataclasses import dataclass

from domain.cells import CellIndex
from domain.registry import Registry
from domain.routing import RoutingTable
from domain.sla import SlaCalendar
from domain.taxonomy import Taxonomy


@dataclass(frozen=True)
class City:
    """Everything static that the services share about one city."""

    name: str
    county_code: str
    cells: CellIndex
    registry: Registry
    taxonomy: Taxonomy
    routing: RoutingTable
    calendar: SlaCalendar

    def summary(self) -> str:
        """One line for consoles and logs."""
        return (
            f"{self.name}: {len(self.cells)} cells, {len(self.registry)} devices, "
            f"{len(self.registry.cameras)} cameras"
        )
