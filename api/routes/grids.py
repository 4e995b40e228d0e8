"""The grid hierarchy: cells under a district, street or community prefix."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from api.deps import CityDep, CurrentRole
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


class WhoAmI(BaseModel):
    """The caller's role."""

    role: str


@router.get("/whoami")
def whoami(role: CurrentRole) -> WhoAmI:
    """The role of the bearer token."""
    return WhoAmI(role=role.value)


@router.get("/grids")
def grids(
    city: CityDep, _role: CurrentRole,
    prefix: Annotated[str | None, Query(description="district, street or community code prefix")] = None,
) -> CellPage:
    """Cells in code order, optionally only those under a hierarchy prefix."""
    try:
        cells = city.cells.under(prefix) if prefix else list(city.cells)
    except GridCodeError as exc:
        raise HTTPException(422, str(exc)) from None
    return CellPage(items=[
        CellOut(code=c.code.digits, name=c.name, street=c.street_name, community=c.community_name,
                area_m2=round(c.area_m2, 1))
        for c in cells
    ])
