"""The grid hierarchy: cells under a district, street or community prefix."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from api.auth import RIGHTS
from api.deps import Caller, CityDep, Reader
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
    narrowed = caller.narrow(prefix)
    try:
        cells = city.cells.under(narrowed) if narrowed else []
    except GridCodeError as exc:
        raise HTTPException(422, str(exc)) from None
    return CellPage(items=[
        CellOut(code=c.code.digits, name=c.name, street=c.street_name, community=c.community_name,
                area_m2=round(c.area_m2, 1))
        for c in cells
    ])
