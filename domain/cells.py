"""Grid cells (单元网格) as polygons, and the spatial index that places a point in its cell."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import shapely
from shapely.errors import ShapelyError
from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry

from domain.gridcode import GridCode, GridCodeError, Level, parse_grid_code, parse_prefix


class CellGeometryError(ValueError):
    """A cell feature with a missing or invalid polygon, or a duplicate code."""


@dataclass(frozen=True, slots=True)
class GridCell:
    """One grid cell: its code, names up the hierarchy, and its polygon (WGS84 lon/lat)."""

    code: GridCode
    name: str
    street_name: str
    community_name: str
    polygon: BaseGeometry

    @property
    def area_m2(self) -> float:
        """Approximate area in square metres (equirectangular at the cell's latitude)."""
        return _area_m2(self.polygon)


class CellIndex:
    """Point → cell lookup over cell polygons with a shapely STRtree, plus hierarchy prefix queries."""

    def __init__(self, cells: Iterable[GridCell]) -> None:
        self._cells = sorted(cells, key=lambda c: c.code)
        self._by_code = {c.code.digits: c for c in self._cells}
        if len(self._by_code) != len(self._cells):
            counts = Counter(c.code.digits for c in self._cells)
            dupes = sorted(code for code, n in counts.items() if n > 1)
            raise CellGeometryError(f"duplicate grid cell codes: {', '.join(dupes)}")
        self._tree = shapely.STRtree([c.polygon for c in self._cells])
        for cell in self._cells:
            shapely.prepare(cell.polygon)

    def __len__(self) -> int:
        return len(self._cells)

    def __iter__(self) -> Iterator[GridCell]:
        return iter(self._cells)

    def get(self, code: str) -> GridCell | None:
        """The cell with exactly this code, or None."""
        return self._by_code.get(code)

    def locate(self, lon: float, lat: float) -> GridCell | None:
        """The cell containing the point (boundary points go to the lowest code), or None outside the city."""
        hits = self._tree.query(Point(lon, lat), predicate="intersects")
        if len(hits) == 0:
            return None
        return self._cells[int(min(hits))]

    def under(self, prefix: str) -> list[GridCell]:
        """All cells under an area prefix (district, street, community or a full cell code), in code order."""
        digits, _ = parse_prefix(prefix, self.code_length)
        return [c for c in self._cells if c.code.within(digits)]

    def areas(self, level: Level) -> dict[str, str]:
        """Prefix → name of every area at `level` (street or community) present in the index."""
        names: dict[str, str] = {}
        for cell in self._cells:
            prefix = cell.code.prefix(level)
            if level is Level.STREET:
                names[prefix] = cell.street_name
            elif level is Level.COMMUNITY:
                names[prefix] = cell.community_name
            elif level is Level.CELL:
                names[prefix] = cell.name
            else:
                names[prefix] = prefix
        return names

    @property
    def code_length(self) -> int:
        """Digits per cell code in this index (15 or 14)."""
        return len(self._cells[0].code.digits) if self._cells else 15


def cells_from_geojson(collection: Mapping[str, Any], code_length: int = 15) -> list[GridCell]:
    """Build cells from a GeoJSON FeatureCollection whose features carry `code`, `name`, `street`, `community`."""
    if collection.get("type") != "FeatureCollection":
        raise CellGeometryError("grid cells must be a GeoJSON FeatureCollection")
    cells = []
    for i, feature in enumerate(collection.get("features", [])):
        if not isinstance(feature, Mapping):
            raise CellGeometryError(f"feature {i} is not a GeoJSON Feature object")
        props = feature.get("properties") or {}
        where = f"feature {i} ({props.get('code', 'no code')})"
        try:
            code = parse_grid_code(str(props["code"]), code_length)
            polygon = shape(feature["geometry"])
        except KeyError as exc:
            raise CellGeometryError(f"{where}: missing {exc.args[0]!r}") from exc
        except GridCodeError as exc:
            raise CellGeometryError(f"{where}: {exc}") from exc
        except (TypeError, ValueError, AttributeError, ShapelyError) as exc:
            raise CellGeometryError(f"{where}: bad geometry: {exc}") from exc
        if polygon.geom_type not in ("Polygon", "MultiPolygon") or not polygon.is_valid or polygon.is_empty:
            raise CellGeometryError(f"{where}: geometry must be a valid, non-empty (Multi)Polygon")
        cells.append(
            GridCell(
                code=code,
                name=str(props.get("name", code.digits)),
                street_name=str(props.get("street", "")),
                community_name=str(props.get("community", "")),
                polygon=polygon,
            )
        )
    return cells


def _area_m2(polygon: BaseGeometry) -> float:
    lat = polygon.centroid.y
    metres_per_deg_lat = 110_574.0
    metres_per_deg_lon = 111_320.0 * math.cos(math.radians(lat))
    return float(polygon.area * metres_per_deg_lat * metres_per_deg_lon)

