"""Citizen reports (随手拍 / 12345) received through Open311, and the rating token each reporter was given.

The case a report became (a new one, or an open case it was fused into) is decided by the stream worker; this
table keeps the report itself: what the citizen said, where, their photo and the hash of the token that lets
them rate the result once the case is closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, Column, Engine, Float, Index, String, Table, Text, select

from domain.epoch import EPOCH
from storage.metadata import metadata

citizen_reports = Table(
    "citizen_reports",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("case_id", String, nullable=False),
    Column("grid_code", String(15), nullable=False),
    Column("category", String(8), nullable=False),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("description", Text, nullable=False),
    Column("photo", String),  # evidence store reference
    Column("token_sha256", String(64), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_citizen_reports_case", "case_id"),
)


@dataclass(frozen=True, slots=True)
class CitizenReport:
    """One report as received."""

    id: str
    case_id: str
    grid_code: str
    category: str
    lat: float
    lon: float
    description: str
    photo: str | None
    token_sha256: str
    created_at: datetime


def save_report(engine: Engine, report: CitizenReport) -> None:
    """Store a report once the worker has said which case it is on."""
    r = report
    with engine.begin() as conn:
        conn.execute(citizen_reports.insert().values(
            id=r.id, case_id=r.case_id, grid_code=r.grid_code, category=r.category, lat=r.lat, lon=r.lon,
            description=r.description, photo=r.photo, token_sha256=r.token_sha256,
            created_ms=(r.created_at - EPOCH) // timedelta(milliseconds=1),
        ))


def get_report(engine: Engine, report_id: str) -> CitizenReport | None:
    """The report with this id, if any."""
    with engine.connect() as conn:
        row = conn.execute(select(citizen_reports).where(citizen_reports.c.id == report_id)).first()
    if row is None:
        return None
    m = row._mapping
    return CitizenReport(m["id"], m["case_id"], m["grid_code"], m["category"], m["lat"], m["lon"], m["description"],
                         m["photo"], m["token_sha256"], EPOCH + timedelta(milliseconds=m["created_ms"]))
