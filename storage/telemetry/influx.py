"""The InfluxDB 2 telemetry store, through influxdb-client.

One measurement per device kind (`rain`, `crowd`, `manhole`) plus `status`; tags `device_id` and
`grid_code`; the quantities, `seq`, `received_ms` and `late` are fields; the time is the measurement time.

Writes are synchronous: one HTTP request per batch, retried by influxdb-client's own `WritesRetry`
(exponential backoff with jitter, honours Retry-After; its callback logs each retry). The batching write API was
the alternative, and it does not fit a consumer that may only advance its offsets past records whose
every point was stored: it re-chunks points by count and time on a background thread, and when a chunk's
retries run out its error callback receives the data and the points are gone. Advancing offsets from its
callbacks would mean mapping chunks back to records and rewinding the consumer on errors — rebuilding a
synchronous write on top of an asynchronous one. The writer already batches, so a synchronous request
per batch gives the same batching and a plain answer: success, or an exception and nothing advances.

Bodies of a kilobyte or more go gzip-compressed (a writer's batch of line protocol shrinks several times
over); smaller ones go as they are, since gzip would save less than a request's headers weigh.

Replays are harmless: a point with the same measurement, tags and time replaces the earlier one. So this
backend keeps no partition positions; the writer commits its offsets to Kafka after each write. A point's
time is its millisecond plus the reading's seq (mod 10⁶) or the status's online flag in nanoseconds, so a point
stands for what the SQL store keys on (device, time, seq). Its fields are those written last, where SQL keeps
the first: a reading delivered twice has the receive time of its last delivery. `tests/test_telemetry_contract.py`
holds both backends to the same answers otherwise.

InfluxDB keeps times from 1677 to 2262 only (nanoseconds in 64 bits): queries are clipped to that span, and a
reading or status outside it, which the gateway never lets through, is dropped with a warning rather than
refused for ever with the whole batch.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta
from typing import Any

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write.retry import WritesRetry
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService
from urllib3.exceptions import HTTPError

from domain.epoch import EPOCH
from storage.telemetry.base import (
    LastHeard,
    Position,
    ReadingRow,
    SeriesRequest,
    StatusRow,
    StoreBatch,
    StoreUnavailable,
    Window,
)

log = logging.getLogger("gridhub.store.influx")
READING_MEASUREMENTS = ("rain", "crowd", "manhole")
STATUS_MEASUREMENT = "status"
GZIP_MIN_BYTES = 1024
NS_PER_MS = 1_000_000
#: The newest millisecond InfluxDB can store with any nanosecond offset (its times are int64 nanoseconds).
MAX_TIME_MS = (2**63 - 1) // NS_PER_MS - 1
MAX_FLUX_TIME = "2262-04-11T23:47:16.854775806Z"

#: Flux yields of a series query: name → (field, aggregate). `rain_mm` and `rain_gauges` are written out.
_MERGED_AGGREGATES = {
    "readings": ("seq", "count"),
    "count_mean": ("count", "mean"),
    "count_max": ("count", "max"),
    "water_level_cm_mean": ("water_level_cm", "mean"),
    "water_level_cm_max": ("water_level_cm", "max"),
    "tilt_deg_mean": ("tilt_deg", "mean"),
    "tilt_deg_max": ("tilt_deg", "max"),
    "battery_v_min": ("battery_v", "min"),
}


class InfluxTelemetryStore:
    """Telemetry in an InfluxDB 2 bucket."""

    keeps_positions = False

    def __init__(
        self, url: str, token: str | None, org: str, bucket: str, *,
        timeout_ms: int = 10_000, retries: int = 5, retry_interval_s: float = 0.5, max_retry_delay_s: float = 8.0,
        max_retry_time_s: float = 30.0,
    ) -> None:
        self._url = url
        self._org = org
        self._bucket = bucket
        self._retry = {"total": retries, "retry_interval": retry_interval_s, "max_retry_delay": max_retry_delay_s,
                       "max_retry_time": max_retry_time_s, "exponential_base": 2, "jitter_interval": 0.1}
        self._client = InfluxDBClient(url=url, token=token or "", org=org, timeout=timeout_ms)
        self._writes = WriteService(self._client.api_client)  # type: ignore[no-untyped-call]
        self._queries = self._client.query_api()

    def write(self, batch: StoreBatch) -> None:
        """POST the batch as line protocol; return only once InfluxDB has accepted every point."""
        lines = [reading_line(row) for row in batch.readings if _storable(row.ts_ms, row.device_id)]
        lines += [status_line(row) for row in batch.statuses if _storable(row.ts_ms, row.device_id)]
        if not lines:
            return
        body, encoding = write_body(lines)
        retries: list[str] = []

        def note_retry(exc: Exception) -> int:
            retries.append(_describe(exc))
            log.warning("InfluxDB %s did not take %d points (%s); retry %d of %d with backoff", self._url,
                        len(lines), retries[-1], len(retries), self._retry["total"])
            return len(retries)

        # A fresh strategy per batch: WritesRetry's max_retry_time counts from the strategy's creation.
        strategy = WritesRetry(**self._retry, retry_callback=note_retry, allowed_methods=["POST"])
        try:
            self._writes.post_write(  # type: ignore[no-untyped-call]
                org=self._org, bucket=self._bucket, body=body, precision=WritePrecision.NS,
                content_encoding=encoding,
                content_type="text/plain; charset=utf-8", urlopen_kw={"retries": strategy},
            )
        except (ApiException, HTTPError, OSError) as exc:
            after = f" after {len(retries)} retries ({retries[-1]})" if retries else ""
            raise StoreUnavailable(f"InfluxDB {self._url}: {_describe(exc)}{after}") from exc
        if retries:
            log.info("InfluxDB accepted %d points after %d retries (%s)", len(lines), len(retries), retries[-1])

    def positions(self, group: str, topic: str) -> dict[int, Position]:
        """None kept here: the writer's offsets live in Kafka."""
        return {}

    def latest_statuses(self, device_ids: Collection[str]) -> dict[str, bool]:
        """Device → online of its newest status point, for the devices that have one."""
        if not device_ids:
            return {}
        try:
            tables = self._queries.query(flux_latest_statuses(self._bucket, device_ids), org=self._org)
        except (ApiException, HTTPError, OSError) as exc:
            raise StoreUnavailable(f"InfluxDB {self._url}: {_describe(exc)}") from exc
        return {str(record.values["device_id"]): bool(record.values["_value"])
                for table in tables for record in table.records}

    def last_heard(self, device_ids: Collection[str]) -> dict[str, LastHeard]:
        """Device → its newest reading and status, from one Flux query."""
        if not device_ids:
            return {}
        try:
            tables = self._queries.query(flux_last_heard(self._bucket, device_ids), org=self._org)
        except (ApiException, HTTPError, OSError) as exc:
            raise StoreUnavailable(f"InfluxDB {self._url}: {_describe(exc)}") from exc
        return last_heard_from_records(
            (str(record.values["result"]), str(record.values["device_id"]), record.values.get("_time"),
             record.values.get("_value"))
            for table in tables for record in table.records
        )

    def device_series(self, device_id: str, request: SeriesRequest) -> list[Window]:
        """The device's aggregated windows."""
        return self._series("device_id", device_id, request)

    def grid_series(self, grid_code: str, request: SeriesRequest) -> list[Window]:
        """The grid cell's aggregated windows; rain is the mean of its gauges' window totals."""
        return self._series("grid_code", grid_code, request)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()  # type: ignore[no-untyped-call]

    def _series(self, tag: str, value: str, request: SeriesRequest) -> list[Window]:
        if request.start_ms > MAX_TIME_MS:
            return []  # after anything InfluxDB can hold, and a range it refuses
        try:
            tables = self._queries.query(flux_series(self._bucket, tag, value, request), org=self._org)
        except (ApiException, HTTPError, OSError) as exc:
            raise StoreUnavailable(f"InfluxDB {self._url}: {_describe(exc)}") from exc
        return windows_from_records(
            (str(record.values["result"]), record.values.get("_time"), record.values.get("_value"))
            for table in tables for record in table.records
        )


def reading_line(row: ReadingRow) -> str:
    """The reading as one line of line protocol. Its time is the millisecond plus the seq's last six digits in
    nanoseconds: InfluxDB identifies a point by series and time, and two readings of a device stamped in one
    millisecond (a device that stamps whole seconds) are two readings, as in SQL's (device, time, seq)."""
    fields = [
        f"{name}={_field_value(value)}"
        for name, value in (("rain_mm", row.rain_mm), ("count", row.count), ("tilt_deg", row.tilt_deg),
                            ("cover_open", row.cover_open), ("water_level_cm", row.water_level_cm),
                            ("battery_v", row.battery_v), ("seq", row.seq), ("received_ms", row.received_ms),
                            ("late", row.late))
        if value is not None
    ]
    return (f"{_escape(row.kind.value)},device_id={_escape(row.device_id)},grid_code={_escape(row.grid_code)} "
            f"{','.join(fields)} {row.ts_ms * NS_PER_MS + row.seq % NS_PER_MS}")


def status_line(row: StatusRow) -> str:
    """The status change as one line of line protocol. An online status is one nanosecond after its
    millisecond: of an online and an offline word in one millisecond, online is the later, as in SQL."""
    return (f"{STATUS_MEASUREMENT},device_id={_escape(row.device_id)},grid_code={_escape(row.grid_code)},"
            f"kind={_escape(row.kind.value)} online={_field_value(row.online)} {row.ts_ms * NS_PER_MS + row.online}")


def write_body(lines: list[str]) -> tuple[bytes, str]:
    """The request body for lines of line protocol, and its content encoding: gzip from GZIP_MIN_BYTES up."""
    body = "\n".join(lines).encode()
    return (gzip.compress(body, compresslevel=5), "gzip") if len(body) >= GZIP_MIN_BYTES else (body, "identity")


def flux_series(bucket: str, tag: str, value: str, request: SeriesRequest) -> str:
    """A Flux query for one device's or grid cell's windows: one `yield` per aggregate, windows from `start`."""
    measurements = " or ".join(f"r._measurement == {_flux_string(m)}" for m in READING_MEASUREMENTS)
    # aggregateWindow aligns windows to the epoch; the offset moves their boundaries onto the range start.
    every = f"every: {request.every_ms}ms, offset: {request.start_ms % request.every_ms}ms"
    stop = MAX_FLUX_TIME if request.end_ms > MAX_TIME_MS else _flux_time(request.end_ms)
    lines = [
        f"data = from(bucket: {_flux_string(bucket)})",
        f"  |> range(start: {_flux_time(request.start_ms)}, stop: {stop})",
        f"  |> filter(fn: (r) => ({measurements}) and r.{tag} == {_flux_string(value)})",
        # A table per device and field, not per series: a device moved to another cell has a series in each,
        # and is still one gauge.
        '  |> group(columns: ["device_id", "_field"])',
        f"windowed = (tables=<-, fn) => tables |> aggregateWindow({every}, fn: fn, createEmpty: false,"
        ' timeSrc: "_start")',
        # Other quantities: one series per field over all the devices, then the aggregate per window.
        'merged = (name) => data |> filter(fn: (r) => r._field == name) |> group(columns: ["_field"])',
        # Rain: each gauge's total per window, then the mean and number of gauges.
        'rain = data |> filter(fn: (r) => r._field == "rain_mm") |> windowed(fn: sum)',
        'rain |> group(columns: ["_time"]) |> mean() |> group() |> yield(name: "rain_mm")',
        'rain |> group(columns: ["_time"]) |> count() |> group() |> yield(name: "rain_gauges")',
        'merged(name: "cover_open") |> map(fn: (r) => ({r with _value: if r._value then 1 else 0}))'
        ' |> windowed(fn: max) |> yield(name: "cover_open")',
    ]
    lines += [
        f'merged(name: "{name}") |> windowed(fn: {aggregate}) |> yield(name: "{result}")'
        for result, (name, aggregate) in _MERGED_AGGREGATES.items()
    ]
    return "\n".join(lines)


def flux_latest_statuses(bucket: str, device_ids: Collection[str]) -> str:
    """A Flux query for the newest `online` field of each of the devices (statuses are few: all time is read)."""
    devices = " or ".join(f"r.device_id == {_flux_string(device_id)}" for device_id in sorted(device_ids))
    return "\n".join([
        f"from(bucket: {_flux_string(bucket)})",
        "  |> range(start: 0)",
        f'  |> filter(fn: (r) => r._measurement == "{STATUS_MEASUREMENT}" and r._field == "online" and ({devices}))',
        "  |> last()",  # per series; a device moved to another cell has one series per cell
        '  |> group(columns: ["device_id"])',
        '  |> sort(columns: ["_time"])',
        "  |> last()",
        '  |> keep(columns: ["device_id", "_value"])',
    ])


def flux_last_heard(bucket: str, device_ids: Collection[str]) -> str:
    """A Flux query for each device's newest `received_ms` and `battery_v` fields and newest status, one `yield` each.

    `last()` right after a filter is pushed down to the storage engine, so all time is read without a scan; the
    second `last()` picks the newest over a device's series (one per cell it has been in, per measurement).
    """
    devices = " or ".join(f"r.device_id == {_flux_string(device_id)}" for device_id in sorted(device_ids))
    measurements = " or ".join(f"r._measurement == {_flux_string(m)}" for m in READING_MEASUREMENTS)
    newest = ('|> last() |> group(columns: ["device_id"]) |> sort(columns: ["_time"]) |> last()'
              ' |> keep(columns: ["device_id", "_time", "_value"])')
    return "\n".join([
        f"data = from(bucket: {_flux_string(bucket)}) |> range(start: 0) |> filter(fn: (r) => {devices})",
        f'data |> filter(fn: (r) => ({measurements}) and r._field == "received_ms") {newest}'
        ' |> yield(name: "received_ms")',
        f'data |> filter(fn: (r) => ({measurements}) and r._field == "battery_v") {newest}'
        ' |> yield(name: "battery_v")',
        f'data |> filter(fn: (r) => r._measurement == "{STATUS_MEASUREMENT}" and r._field == "online") {newest}'
        ' |> yield(name: "online")',
    ])


def last_heard_from_records(records: Iterable[tuple[str, str, datetime | None, Any]]) -> dict[str, LastHeard]:
    """Device → what it was last heard saying, from (yield name, device id, time, value) records of `flux_last_heard`.

    A reading's `received_ms` field is the newest reading's receive time; a status's time is its point's time.
    """
    found: dict[str, dict[str, Any]] = {}
    for result, device_id, time, value in records:
        if value is None:
            continue
        fields = found.setdefault(device_id, {})
        if result == "received_ms":
            fields["received_ms"] = int(value)
        elif result == "battery_v":
            fields["battery_v"] = float(value)
        elif result == "online" and time is not None:
            fields["status_ms"] = (time - EPOCH) // timedelta(milliseconds=1)
            fields["online"] = bool(value)
    return {device_id: LastHeard(fields.get("received_ms"), fields.get("battery_v"), fields.get("status_ms"),
                                 fields.get("online"))
            for device_id, fields in found.items() if "received_ms" in fields or "status_ms" in fields}


def windows_from_records(records: Iterable[tuple[str, datetime | None, Any]]) -> list[Window]:
    """Windows in time order from (yield name, window start, value) records of a `flux_series` query."""
    by_start: dict[int, dict[str, Any]] = {}
    for result, time, value in records:
        if time is None or value is None:
            continue
        start_ms = (time - EPOCH) // timedelta(milliseconds=1)
        fields = by_start.setdefault(start_ms, {"start_ms": start_ms, "readings": 0})
        if result in ("readings", "rain_gauges", "count_max"):
            fields[result] = int(value)
        elif result == "cover_open":
            fields[result] = bool(value)
        else:
            fields[result] = float(value)
    return [Window(**by_start[start]) for start in sorted(by_start)]


def _storable(ts_ms: int, device_id: str) -> bool:
    if ts_ms <= MAX_TIME_MS:
        return True
    log.warning("dropped a point of %s at %d ms: InfluxDB keeps no times after %s", device_id, ts_ms, MAX_FLUX_TIME)
    return False


def _field_value(value: float | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    return repr(value)


def _escape(text: str) -> str:
    """Escape a measurement, tag key or tag value for line protocol."""
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _flux_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    return f'"{escaped}"'


def _flux_time(ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}: {exc.message or ''}".rstrip(": ")
    return str(getattr(exc, "reason", None) or exc)
