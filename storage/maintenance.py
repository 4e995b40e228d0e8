"""Open maintenance cases by device: 设备离线 (9902) and 设备低电量 (9903) cases, read from the case tables.

The stream worker opens one such case per cell and kind of fault and attaches each device's signals to it as
evidence whose `source_id` is the device id, so the devices a case is about are the sources of its evidence.
"""

from __future__ import annotations

import orjson
from sqlalchemy import Engine, select

from domain.cases import CaseState
from domain.taxonomy import DEVICE_OFFLINE, LOW_BATTERY
from storage.cases import cases

MAINTENANCE_CATEGORIES = (DEVICE_OFFLINE, LOW_BATTERY)
_OPEN = tuple(state.value for state in CaseState if state.is_open)


def open_maintenance_cases(engine: Engine, grid_prefix: str) -> dict[str, list[str]]:
    """Device id → ids (in order) of the open maintenance cases under `grid_prefix` whose evidence names it."""
    c = cases.c
    query = (select(c.id, c.doc)
             .where(c.category.in_(MAINTENANCE_CATEGORIES), c.state.in_(_OPEN),
                    c.grid_code.startswith(grid_prefix, autoescape=True))
             .order_by(c.id))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    by_device: dict[str, list[str]] = {}
    for case_id, doc in rows:
        for device_id in dict.fromkeys(e["source_id"] for e in orjson.loads(doc)["evidence"]):
            by_device.setdefault(device_id, []).append(case_id)
    return by_device
