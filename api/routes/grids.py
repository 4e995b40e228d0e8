"""The grid hierarchy: cells under a district, street or community prefix."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, Field
from shapely.geometry import mapping

from api.auth import RIGHTS, Principal
from api.deps import Caller, CityDep, Reader
from domain.cells import GridCell
from domain.city import City
from domain.gridcode import GridCodeError

router = APIRouter(prefix="/api/v1", tags=["grids"])


class CellOut(BaseModel):
    """A grid cell as the API shows it."""

    code: str
    name: str
    street: str
    community: str
    area_m2: float


class CellPage(BaseModel):
    """Cells under a prefix."""

    items: list[CellOut]


class Area(BaseModel):
    """A named area or cell of the hierarchy."""

    code: str
    name: str


class CommunityNode(Area):
    """A community (社区) and its cells."""

    cells: list[Area]


class StreetNode(Area):
    """A street (街道) and its communities."""

    communities: list[CommunityNode]


class DistrictNode(BaseModel):
    """A district (区) and its streets; its name is the city's when it is the city's county."""

    code: str
    name: str | None
    streets: list[StreetNode]


class Hierarchy(BaseModel):
    """The grid hierarchy in scope: district → streets → communities → cells, in code order."""

    city: str
    districts: list[DistrictNode]


class WhoAmI(BaseModel):
    """The caller: its token, role, scope and what the role may do."""

    token_id: str
    name: str
    role: str
    scope: str = Field(description="grid code prefix the token covers")
    level: str = Field(description="district, street or community")
    rights: list[str]


@router.get("/whoami")
def whoami(caller: Caller) -> WhoAmI:
    """Who the bearer token says the caller is."""
    return WhoAmI(token_id=caller.token_id, name=caller.name, role=caller.role.value, scope=caller.scope,
                  level=caller.level, rights=sorted(RIGHTS[caller.role]))


@router.get("/grids")
def grids(
    city: CityDep, caller: Reader,
    prefix: Annotated[str | None, Query(description="district, street or community code prefix")] = None,
) -> CellPage:
    """Cells in code order, optionally only those under a hierarchy prefix."""
    cells = _cells(city, caller, prefix)
    return CellPage(items=[
        CellOut(code=c.code.digits, name=c.name, street=c.street_name, community=c.community_name,
                area_m2=round(c.area_m2, 1))
        for c in cells
    ])


@router.get("/grids/geojson", response_class=Response,
            responses={200: {"content": {"application/geo+json": {}},
                             "description": "a GeoJSON FeatureCollection (RFC 7946, WGS84 lon/lat)"}})
def grids_geojson(
    city: CityDep, caller: Reader,
    prefix: Annotated[str | None, Query(description="district, street or community code prefix")] = None,
) -> Response:
    """The cells in scope as GeoJSON features, for a map: polygon, code, names up the hierarchy and area."""
    collection = {"type": "FeatureCollection", "features": [_feature(cell) for cell in _cells(city, caller, prefix)]}
    return Response(orjson.dumps(collection), media_type="application/geo+json")


@router.get("/grids/hierarchy")
def grids_hierarchy(
    city: CityDep, caller: Reader,
    prefix: Annotated[str | None, Query(description="district, street or community code prefix")] = None,
) -> Hierarchy:
    """The district, streets, communities and cells in scope, with their names."""
    districts: dict[str, dict[str, StreetNode]] = {}
    for cell in _cells(city, caller, prefix):
        code = cell.code
        streets = districts.setdefault(code.county, {})
        street = streets.setdefault(code.street, StreetNode(code=code.street, name=cell.street_name, communities=[]))
        if not street.communities or street.communities[-1].code != code.community:  # cells come in code order
            street.communities.append(CommunityNode(code=code.community, name=cell.community_name, cells=[]))
        street.communities[-1].cells.append(Area(code=code.digits, name=cell.name))
    return Hierarchy(city=city.name, districts=[
        DistrictNode(code=county, name=city.name if county == city.county_code else None,
                     streets=list(streets.values()))
        for county, streets in districts.items()
    ])


def _cells(city: City, caller: Principal, prefix: str | None) -> list[GridCell]:
    """Cells in code order under the caller's scope, narrowed by `prefix`; 422 if `prefix` is not a prefix."""
    narrowed = caller.narrow(prefix)
    try:
        return city.cells.under(narrowed) if narrowed else []
    except GridCodeError as exc:
        raise HTTPException(422, str(exc)) from None


def _feature(cell: GridCell) -> dict[str, Any]:
    code = cell.code
    return {
        "type": "Feature",
        "id": code.digits,
        "geometry": mapping(cell.polygon),
        # Flat properties: map styling expressions (MapLibre, Leaflet) read flat values, not nested objects.
        "properties": {"code": code.digits, "name": cell.name, "street_code": code.street, "street": cell.street_name,
                       "community_code": code.community, "community": cell.community_name,
                       "area_m2": round(cell.area_m2, 1)},
    }


class CategoryOut(BaseModel):
    """A taxonomy code with its names and where its cases go by default."""

    code: str
    name_zh: str
    name_en: str
    kind: str = Field(description="component (部件) or event (事件)")
    department: str | None = Field(description="the department the routing table dispatches it to")
    tier: str | None = Field(description="the level that handles it first")
    term: str | None = Field(description="the deadline term, e.g. 4h working")


@router.get("/taxonomy")
def taxonomy(city: CityDep, _caller: Reader) -> list[CategoryOut]:
    """The city's case categories (taxonomy) and their default routes, for labels and dispatch forms."""
    out = []
    for category in city.taxonomy:
        route = city.routing.get(category.code)
        out.append(CategoryOut(
            code=category.code, name_zh=category.name_zh, name_en=category.name_en, kind=category.kind.value,
            department=route.department if route else None, tier=route.tier.name.lower() if route else None,
            term=str(route.term) if route else None,
        ))
    return out
