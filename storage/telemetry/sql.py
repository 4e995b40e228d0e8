"""The SQL telemetry store (SQLite embedded, PostgreSQL in production), in portable SQLAlchemy Core.

Readings get one typed, nullable column per quantity rather than a JSON document: the quantities are
fixed by the device kinds (`domain.telemetry.MEASUREMENTS`), and typed columns let SUM/AVG/MAX/MIN run in
the database on both SQLite and PostgreSQL without dialect-specific JSON extraction. A new quantity is a
new column.

The consumer group's next offset per partition is written in the same transaction as the rows, so the
rows and the position never disagree; rows are inserted with ON CONFLICT DO NOTHING on their identity
(device, measurement time, seq), so reading a partition again never duplicates anything.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Engine,
    Float,
    Index,
    Integer,
    ScalarSelect,
    String,
    Table,
    UnaryExpression,
    and_,
    cast,
    column,
    func,
    select,
    values,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from storage.metadata import metadata
from storage.telemetry.base import (
    MAX_GRID_CODE_LENGTH,
    MAX_ID_LENGTH,
    LastHeard,
    Position,
    ReadingRow,
    SeriesRequest,
    StatusRow,
    StoreBatch,
    StoreUnavailable,
    Window,
)

readings = Table(
    "telemetry_readings",
    metadata,
    # The primary key doubles as the "device over a time range" index.
    Column("device_id", String(MAX_ID_LENGTH), primary_key=True),
    Column("ts_ms", BigInteger, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("grid_code", String(MAX_GRID_CODE_LENGTH), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("received_ms", BigInteger, nullable=False),
    Column("late", Boolean, nullable=False),
    Column("rain_mm", Float),
    Column("count", Integer),
    Column("tilt_deg", Float),
    Column("cover_open", Boolean),
    Column("water_level_cm", Float),
    Column("battery_v", Float),
    Index("ix_telemetry_readings_grid_time", "grid_code", "ts_ms"),
)

status_changes = Table(
    "telemetry_status_changes",
    metadata,
    Column("device_id", String(MAX_ID_LENGTH), primary_key=True),
    Column("ts_ms", BigInteger, primary_key=True, autoincrement=False),
    Column("online", Boolean, primary_key=True),
    Column("grid_code", String(MAX_GRID_CODE_LENGTH), nullable=False),
    Column("kind", String(16), nullable=False),
    Index("ix_telemetry_status_grid_time", "grid_code", "ts_ms"),
)

positions = Table(
    "telemetry_store_positions",
    metadata,
    Column("consumer_group", String(255), primary_key=True),
    Column("topic", String(255), primary_key=True),
    Column("kafka_partition", Integer, primary_key=True, autoincrement=False),
    Column("next_offset", BigInteger, nullable=False),
    Column("last_record", String(64), nullable=False),
)

#: Errors that mean "the database cannot do this now" (down, locked, read-only, pool exhausted), not a bug.
_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeoutError)


class SqlTelemetryStore:
    """Telemetry in the GridHub database."""

    keeps_positions = True

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"the telemetry store supports SQLite and PostgreSQL, not {dialect}")
        self._engine = engine
        self._insert = postgresql.insert if dialect == "postgresql" else sqlite.insert

    def write(self, batch: StoreBatch) -> None:
        """Insert new rows and move the partition positions, in one transaction."""
        try:
            with self._engine.begin() as conn:
                if batch.readings:
                    conn.execute(self._insert(readings).on_conflict_do_nothing(),
                                 [_reading(r) for r in batch.readings])
                if batch.statuses:
                    conn.execute(self._insert(status_changes).on_conflict_do_nothing(),
                                 [_status(s) for s in batch.statuses])
                if batch.positions:
                    upsert = self._insert(positions)
                    conn.execute(
                        upsert.on_conflict_do_update(
                            index_elements=[positions.c.consumer_group, positions.c.topic,
                                            positions.c.kafka_partition],
                            set_={"next_offset": upsert.excluded.next_offset,
                                  "last_record": upsert.excluded.last_record},
                        ),
                        [{"consumer_group": batch.group, "topic": batch.topic, "kafka_partition": partition,
                          "next_offset": p.next_offset, "last_record": p.last_record}
                         for partition, p in batch.positions.items()],
                    )
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc

    def positions(self, group: str, topic: str) -> dict[int, Position]:
        """Partition → next offset and last record fingerprint stored for the group."""
        query = select(positions.c.kafka_partition, positions.c.next_offset, positions.c.last_record).where(
            positions.c.consumer_group == group, positions.c.topic == topic)
        try:
            with self._engine.connect() as conn:
                return {row.kafka_partition: Position(row.next_offset, row.last_record)
                        for row in conn.execute(query)}
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc

    def latest_statuses(self, device_ids: Collection[str]) -> dict[str, bool]:
        """Device → online of its newest status row, for the devices that have one."""
        s = status_changes.c
        newest = (select(s.device_id, func.max(s.ts_ms).label("ts_ms"))
                  .where(s.device_id.in_(list(device_ids))).group_by(s.device_id).subquery())
        query = (select(s.device_id, s.online)
                 .join(newest, and_(s.device_id == newest.c.device_id, s.ts_ms == newest.c.ts_ms))
                 .order_by(s.online))  # two statuses at the same millisecond: online wins, as the later word
        try:
            with self._engine.connect() as conn:
                return {row.device_id: bool(row.online) for row in conn.execute(query)}
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc

    def last_heard(self, device_ids: Collection[str]) -> dict[str, LastHeard]:
        """Device → its newest reading and status, in one statement of index look-ups.

        Each value is a correlated subquery that takes the newest row by the primary key (device, time): a seek,
        not a scan of the device's history, on SQLite and PostgreSQL alike.
        """
        if not device_ids:
            return {}
        wanted = values(column("device_id", String), name="wanted").data([(i,) for i in device_ids]).cte("wanted")
        r, s = readings.c, status_changes.c
        device = wanted.c.device_id
        newest_reading = (r.ts_ms.desc(), r.seq.desc())
        newest_status = (s.ts_ms.desc(), s.online.desc())  # two at the same millisecond: online wins, as the later word
        query = select(
            device,
            _newest(r.received_ms, r.device_id == device, newest_reading),
            _newest(r.battery_v, and_(r.device_id == device, r.battery_v.is_not(None)), newest_reading),
            _newest(s.ts_ms, s.device_id == device, newest_status),
            _newest(s.online, s.device_id == device, newest_status),
        )
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(query).all()
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc
        return {device_id: LastHeard(received_ms, battery_v, status_ms, None if online is None else bool(online))
                for device_id, received_ms, battery_v, status_ms, online in rows
                if received_ms is not None or status_ms is not None}

    def device_series(self, device_id: str, request: SeriesRequest) -> list[Window]:
        """The device's aggregated windows."""
        return self._series(readings.c.device_id == device_id, request)

    def grid_series(self, grid_code: str, request: SeriesRequest) -> list[Window]:
        """The grid cell's aggregated windows; rain is the mean of its gauges' window totals."""
        return self._series(readings.c.grid_code == grid_code, request)

    def close(self) -> None:
        """Close pooled connections."""
        self._engine.dispose()

    def _series(self, where: ColumnElement[bool], request: SeriesRequest) -> list[Window]:
        r = readings.c
        # Integer division of integer columns is floor division here: ts_ms >= start_ms, so it is non-negative.
        window = ((r.ts_ms - request.start_ms) // request.every_ms).label("window_index")
        per_device = (
            select(
                window,
                func.count().label("n"),
                func.sum(r.rain_mm).label("rain"),
                func.sum(r.count).label("count_sum"), func.count(r.count).label("count_n"),
                func.max(r.count).label("count_max"),
                func.sum(r.water_level_cm).label("water_sum"), func.count(r.water_level_cm).label("water_n"),
                func.max(r.water_level_cm).label("water_max"),
                func.sum(r.tilt_deg).label("tilt_sum"), func.count(r.tilt_deg).label("tilt_n"),
                func.max(r.tilt_deg).label("tilt_max"),
                func.max(cast(r.cover_open, Integer)).label("cover"),
                func.min(r.battery_v).label("battery"),
            )
            .where(where, r.ts_ms >= request.start_ms, r.ts_ms < request.end_ms)
            .group_by(window, r.device_id)
            .subquery()
        )
        d = per_device.c
        # Sums and counts rather than AVG at the outer level: means are over readings, not over devices.
        query = (
            select(
                d.window_index, func.sum(d.n), func.avg(d.rain), func.count(d.rain),
                func.sum(d.count_sum), func.sum(d.count_n), func.max(d.count_max),
                func.sum(d.water_sum), func.sum(d.water_n), func.max(d.water_max),
                func.sum(d.tilt_sum), func.sum(d.tilt_n), func.max(d.tilt_max),
                func.max(d.cover), func.min(d.battery),
            )
            .group_by(d.window_index)
            .order_by(d.window_index)
        )
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(query).all()
        except _UNAVAILABLE as exc:
            raise _unavailable(exc) from exc
        return [_window(request, row) for row in rows]


def _newest(value: Column[Any], where: ColumnElement[bool], order: tuple[UnaryExpression[Any], ...]
            ) -> ScalarSelect[Any]:
    """`value` of the first row in `order` that matches `where`, as a scalar subquery."""
    return select(value).where(where).order_by(*order).limit(1).scalar_subquery()


def _unavailable(exc: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"database: {getattr(exc, 'orig', None) or exc}")


def _reading(row: ReadingRow) -> dict[str, Any]:
    # Written out rather than dataclasses.asdict, which deep-copies and took 80 % of a batch write's time.
    return {"device_id": row.device_id, "ts_ms": row.ts_ms, "seq": row.seq, "grid_code": row.grid_code,
            "kind": row.kind.value, "received_ms": row.received_ms, "late": row.late, "rain_mm": row.rain_mm,
            "count": row.count, "tilt_deg": row.tilt_deg, "cover_open": row.cover_open,
            "water_level_cm": row.water_level_cm, "battery_v": row.battery_v}


def _status(row: StatusRow) -> dict[str, Any]:
    return {"device_id": row.device_id, "ts_ms": row.ts_ms, "online": row.online, "grid_code": row.grid_code,
            "kind": row.kind.value}


def _window(request: SeriesRequest, row: Sequence[Any]) -> Window:
    (index, n, rain, gauges, count_sum, count_n, count_max, water_sum, water_n, water_max,
     tilt_sum, tilt_n, tilt_max, cover, battery) = row
    return Window(
        start_ms=request.start_ms + int(index) * request.every_ms,
        readings=int(n),
        rain_mm=_float(rain),
        rain_gauges=int(gauges) or None,
        count_mean=_mean(count_sum, count_n),
        count_max=None if count_max is None else int(count_max),
        water_level_cm_mean=_mean(water_sum, water_n),
        water_level_cm_max=_float(water_max),
        tilt_deg_mean=_mean(tilt_sum, tilt_n),
        tilt_deg_max=_float(tilt_max),
        cover_open=None if cover is None else bool(cover),
        battery_v_min=_float(battery),
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _mean(total: Any, n: Any) -> float | None:
    """PostgreSQL returns SUMs of integers as Decimal; divide in Python so both dialects agree."""
    return float(total) / int(n) if n else None
