"""Whole cases (document and timeline) read back from the case tables, for figures over a period of time."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import Engine, and_, or_, select

from domain.case_records import case_from_doc
from domain.cases import Case
from domain.epoch import EPOCH
from storage.cases import _UNAVAILABLE, _unavailable, case_events, cases


def load_cases(engine: Engine, *, grid_prefix: str, since_ms: int, until_ms: int) -> list[Case]:
    """Every case under `grid_prefix` that a figure over [since_ms, until_ms) can count, with its full history.

    This is `domain.kpi.counted_in` in SQL, a little wider where a column is missing: only the latest handling
    has one, and it is never before the first, so a case handled at or after the start and reported before the
    end stands in for one first handled in the period.
    """
    c = cases.c
    relevant = and_(
        c.grid_code.startswith(grid_prefix, autoescape=True),
        c.voided_ms.is_(None),
        c.reported_ms < until_ms,
        or_(c.handled_ms >= since_ms,
            *(column.between(since_ms, until_ms - 1)
              for column in (c.reported_ms, c.dispatched_ms, c.deadline_ms, c.closed_ms))),
    )
    e = case_events.c
    try:
        with engine.connect() as conn:
            docs = conn.execute(select(c.doc).where(relevant)).scalars().all()
            events = conn.execute(
                select(e.case_id, e.version, e.action, e.from_state, e.to_state, e.at_ms, e.actor, e.note, e.data)
                .where(e.case_id.in_(select(c.id).where(relevant)))
                .order_by(e.case_id, e.version)
            ).all()
    except _UNAVAILABLE as exc:
        raise _unavailable(exc) from exc
    histories: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for case_id, version, action, from_state, to_state, at_ms, actor, note, data in events:
        histories[case_id].append({
            "version": version, "action": action, "from_state": from_state, "to_state": to_state,
            "at": EPOCH + timedelta(milliseconds=at_ms), "actor": actor, "note": note, "data": orjson.loads(data),
        })
    loaded = []
    for text in docs:
        doc = orjson.loads(text)
        # The two reads are separate statements: the sink may have added events to a case in between, and
        # a case's events never change once written, so its history is the first `version` of them.
        loaded.append(case_from_doc({**doc, "history": histories[doc["id"]][: doc["version"]]}))
    return loaded
