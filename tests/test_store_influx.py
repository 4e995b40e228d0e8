"""The InfluxDB 2 store, against a local stub of InfluxDB's HTTP API (no InfluxDB server runs here).

The stub implements `/api/v2/write` (records line protocol, refuses on request) and `/api/v2/query`
(answers with annotated CSV written in the test), so these tests show what the backend sends and how it
reads answers — not that a real InfluxDB accepts the Flux it sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from core.settings import TelemetryStoreSettings
from domain.registry import DeviceKind
from domain.telemetry import Reading, TelemetryBatch, encode_record
from ingest.store_writer import StoreWriter
from storage.telemetry.base import (
    LastHeard,
    ReadingRow,
    SeriesRequest,
    StatusRow,
    StoreBatch,
    StoreUnavailable,
    Window,
)
from storage.telemetry.influx import InfluxTelemetryStore, flux_last_heard, flux_latest_statuses, flux_series
from tests.brokers import free_port

GRID = "310104003001001"
T0 = 1_717_200_000_000  # 2024-06-01T00:00:00Z
MS = 1_000_000  # nanoseconds per millisecond: the store writes nanosecond times


@dataclass
class Request:
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class InfluxStub:
    """Records every request; refuses the next `refuse` writes with 503; answers queries with `csv`."""

    requests: list[Request] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)  # line protocol lines of accepted writes
    refuse: int = 0
    csv: str = ""
    url: str = ""


@contextlib.contextmanager
def influx_stub() -> Iterator[InfluxStub]:
    stub = InfluxStub()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            url = urlsplit(self.path)
            with lock:
                stub.requests.append(Request(url.path, {k: v[0] for k, v in parse_qs(url.query).items()},
                                             dict(self.headers), body))
                refused = url.path == "/api/v2/write" and stub.refuse > 0
                if refused:
                    stub.refuse -= 1
                elif url.path == "/api/v2/write":
                    stub.accepted += body.decode().splitlines()
            if refused:
                self._reply(503, b'{"code":"unavailable","message":"stub is refusing writes"}', "application/json")
            elif url.path == "/api/v2/write":
                self._reply(204, b"", "application/json")
            elif url.path == "/api/v2/query":
                self._reply(200, stub.csv.encode(), "text/csv; charset=utf-8")
            else:
                self._reply(404, b'{"code":"not found","message":"not in the stub"}', "application/json")

        def _reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def stub() -> Iterator[InfluxStub]:
    with influx_stub() as running:
        yield running


def store_for(stub: InfluxStub, **options: Any) -> InfluxTelemetryStore:
    return InfluxTelemetryStore(stub.url, "s3cret", "gridhub", "telemetry", retry_interval_s=0.01,
                                max_retry_delay_s=0.05, **options)


def batch(*readings: ReadingRow, statuses: tuple[StatusRow, ...] = ()) -> StoreBatch:
    return StoreBatch("gridhub-store", "gridhub.telemetry", list(readings), list(statuses))


RAIN = ReadingRow("rain-0001", T0, 7, GRID, DeviceKind.RAIN, T0 + 40, False, rain_mm=0.5, battery_v=3.7)
CROWD = ReadingRow("crowd-0016", T0 + 1, 3, GRID, DeviceKind.CROWD, T0 + 41, True, count=42)
MANHOLE = ReadingRow("manhole-0001", T0 + 2, 9, GRID, DeviceKind.MANHOLE, T0 + 42, False, tilt_deg=16.5,
                     cover_open=True, water_level_cm=20.0)


def test_a_batch_is_one_write_of_line_protocol_with_millisecond_times(stub: InfluxStub) -> None:
    store_for(stub).write(batch(RAIN, CROWD, MANHOLE,
                                statuses=(StatusRow("rain-0001", T0 + 3, False, GRID, DeviceKind.RAIN),)))

    (request,) = stub.requests
    assert request.path == "/api/v2/write"
    assert request.params == {"org": "gridhub", "bucket": "telemetry", "precision": "ns"}
    assert request.headers["Authorization"] == "Token s3cret"
    assert request.body.decode().splitlines() == [
        f"rain,device_id=rain-0001,grid_code={GRID} rain_mm=0.5,battery_v=3.7,seq=7i,received_ms={T0 + 40}i,"
        f"late=false {T0 * MS + 7}",  # nanoseconds: the millisecond, and the seq below it
        f"crowd,device_id=crowd-0016,grid_code={GRID} count=42i,seq=3i,received_ms={T0 + 41}i,late=true "
        f"{(T0 + 1) * MS + 3}",
        f"manhole,device_id=manhole-0001,grid_code={GRID} tilt_deg=16.5,cover_open=true,water_level_cm=20.0,"
        f"seq=9i,received_ms={T0 + 42}i,late=false {(T0 + 2) * MS + 9}",
        f"status,device_id=rain-0001,grid_code={GRID},kind=rain online=false {(T0 + 3) * MS}",
    ]


def test_tag_values_are_escaped(stub: InfluxStub) -> None:
    odd = ReadingRow("a b,c=d", T0, 1, GRID, DeviceKind.RAIN, T0, False, rain_mm=1.0)
    store_for(stub).write(batch(odd))
    assert stub.accepted[0].startswith(f"rain,device_id=a\\ b\\,c\\=d,grid_code={GRID} rain_mm=1.0,")


def test_a_batch_of_nothing_sends_nothing(stub: InfluxStub) -> None:
    store_for(stub).write(batch())
    assert stub.requests == []


def test_a_refused_write_is_retried_with_backoff_until_accepted(stub: InfluxStub) -> None:
    stub.refuse = 2
    store_for(stub).write(batch(RAIN))
    assert len(stub.requests) == 3
    assert len(stub.accepted) == 1


def test_a_write_that_keeps_being_refused_raises_store_unavailable(stub: InfluxStub) -> None:
    stub.refuse = 100
    with pytest.raises(StoreUnavailable, match=r"HTTP 503 .*after 2 retries"):
        store_for(stub, retries=2).write(batch(RAIN))
    assert len(stub.requests) == 3
    assert stub.accepted == []


def test_an_unreachable_server_is_unavailable() -> None:
    store = InfluxTelemetryStore(f"http://127.0.0.1:{free_port()}", None, "gridhub", "telemetry",
                                 retries=1, retry_interval_s=0.01)
    with pytest.raises(StoreUnavailable, match=r"InfluxDB http://127\.0\.0\.1:\d+: .*[Cc]onnection refused"):
        store.write(batch(RAIN))


def _table(result: str, value_type: str, rows: list[tuple[str, str]]) -> str:
    lines = [f"#datatype,string,long,dateTime:RFC3339,{value_type}", "#group,false,false,false,false",
             f"#default,{result},,,", ",result,table,_time,_value"]
    lines += [f",,0,{time},{value}" for time, value in rows]
    return "\r\n".join(lines) + "\r\n\r\n"


def test_a_grid_series_is_read_from_the_yields_of_one_flux_query(stub: InfluxStub) -> None:
    stub.csv = (
        _table("readings", "long", [("2024-06-01T00:00:00Z", "3"), ("2024-06-01T00:05:00Z", "1")])
        + _table("rain_mm", "double", [("2024-06-01T00:00:00Z", "3.5")])
        + _table("rain_gauges", "long", [("2024-06-01T00:00:00Z", "2")])
        + _table("cover_open", "long", [("2024-06-01T00:05:00Z", "1")])
        + _table("count_max", "long", [("2024-06-01T00:00:00Z", "80")])
    )
    windows = store_for(stub).grid_series(GRID, SeriesRequest(T0, T0 + 600_000, 300_000))

    assert windows == [
        Window(start_ms=T0, readings=3, rain_mm=3.5, rain_gauges=2, count_max=80),
        Window(start_ms=T0 + 300_000, readings=1, cover_open=True),
    ]
    (request,) = stub.requests
    assert request.path == "/api/v2/query"
    assert request.params == {"org": "gridhub"}
    assert orjson.loads(request.body)["query"] == flux_series("telemetry", "grid_code", GRID,
                                                              SeriesRequest(T0, T0 + 600_000, 300_000))


def test_the_flux_query_windows_from_the_range_start_with_an_aggregate_per_quantity() -> None:
    flux = flux_series("telemetry", "device_id", 'x"${y}', SeriesRequest(T0 + 90_000, T0 + 3_690_000, 300_000))
    lines = flux.splitlines()

    assert "  |> range(start: 2024-06-01T00:01:30.000Z, stop: 2024-06-01T01:01:30.000Z)" in lines
    assert r'and r.device_id == "x\"\${y}")' in flux  # quoted, and no string interpolation
    assert "aggregateWindow(every: 300000ms, offset: 90000ms, fn: fn, createEmpty: false" in flux
    assert {
        'rain = data |> filter(fn: (r) => r._field == "rain_mm") |> windowed(fn: sum)',
        'rain |> group(columns: ["_time"]) |> mean() |> group() |> yield(name: "rain_mm")',
        'merged(name: "seq") |> windowed(fn: count) |> yield(name: "readings")',
        'merged(name: "count") |> windowed(fn: mean) |> yield(name: "count_mean")',
        'merged(name: "tilt_deg") |> windowed(fn: max) |> yield(name: "tilt_deg_max")',
        'merged(name: "battery_v") |> windowed(fn: min) |> yield(name: "battery_v_min")',
    } <= set(lines)


def test_a_failed_query_is_unavailable(stub: InfluxStub) -> None:
    store = InfluxTelemetryStore(stub.url + "/nowhere", None, "gridhub", "telemetry")
    with pytest.raises(StoreUnavailable, match="HTTP 404"):
        store.device_series("rain-0001", SeriesRequest(T0, T0 + 60_000, 60_000))


def test_latest_statuses_are_read_from_one_flux_query(stub: InfluxStub) -> None:
    stub.csv = "\r\n".join(["#datatype,string,long,string,boolean", "#group,false,false,true,false",
                            "#default,_result,,,", ",result,table,device_id,_value",
                            ",,0,rain-0001,false", ",,1,rain-0002,true"]) + "\r\n\r\n"
    latest = store_for(stub).latest_statuses({"rain-0001", "rain-0002", "rain-0003"})

    assert latest == {"rain-0001": False, "rain-0002": True}
    (request,) = stub.requests
    assert orjson.loads(request.body)["query"] == flux_latest_statuses("telemetry",
                                                                       {"rain-0001", "rain-0002", "rain-0003"})


def test_the_latest_status_query_takes_each_devices_newest_online_field() -> None:
    flux = flux_latest_statuses("telemetry", {"rain-0002", 'x"${y}'})
    assert 'r._measurement == "status" and r._field == "online" and (r.device_id == "rain-0002" or ' \
           r'r.device_id == "x\"\${y}")' in flux
    assert flux.splitlines()[-4:] == ['  |> group(columns: ["device_id"])', '  |> sort(columns: ["_time"])',
                                      "  |> last()", '  |> keep(columns: ["device_id", "_value"])']


def test_latest_statuses_of_no_devices_ask_nothing(stub: InfluxStub) -> None:
    assert store_for(stub).latest_statuses(set()) == {}
    assert stub.requests == []


def _last(result: str, value_type: str, rows: list[tuple[str, str, str]]) -> str:
    lines = [f"#datatype,string,long,string,dateTime:RFC3339,{value_type}", "#group,false,false,true,false,false",
             f"#default,{result},,,,", ",result,table,device_id,_time,_value"]
    lines += [f",,{i},{device},{time},{value}" for i, (device, time, value) in enumerate(rows)]
    return "\r\n".join(lines) + "\r\n\r\n"


def test_last_heard_is_read_from_the_yields_of_one_flux_query(stub: InfluxStub) -> None:
    stub.csv = (
        _last("received_ms", "long", [("manhole-0001", "2024-06-01T00:02:00Z", str(T0 + 180_000)),
                                        ("crowd-0016", "2024-06-01T00:00:00Z", str(T0 + 50))])
        + _last("battery_v", "double", [("manhole-0001", "2024-06-01T00:01:00Z", "3.5")])
        + _last("online", "boolean", [("manhole-0001", "2024-06-01T00:01:00.250Z", "false"),
                                      ("rain-0002", "2024-06-01T00:00:00Z", "true")])
    )
    wanted = {"manhole-0001", "crowd-0016", "rain-0002", "rain-0004"}
    heard = store_for(stub).last_heard(wanted)

    assert heard == {
        "manhole-0001": LastHeard(received_ms=T0 + 180_000, battery_v=3.5, status_ms=T0 + 60_250, online=False),
        "crowd-0016": LastHeard(received_ms=T0 + 50, battery_v=None, status_ms=None, online=None),
        "rain-0002": LastHeard(received_ms=None, battery_v=None, status_ms=T0, online=True),
    }
    (request,) = stub.requests
    assert orjson.loads(request.body)["query"] == flux_last_heard("telemetry", wanted)


def test_the_last_heard_query_takes_each_devices_newest_receive_time_battery_and_status() -> None:
    flux = flux_last_heard("telemetry", {"rain-0002", 'x"${y}'})
    newest = ('|> last() |> group(columns: ["device_id"]) |> sort(columns: ["_time"]) |> last()'
              ' |> keep(columns: ["device_id", "_time", "_value"])')
    readings = 'r._measurement == "rain" or r._measurement == "crowd" or r._measurement == "manhole"'

    assert flux.splitlines() == [
        'data = from(bucket: "telemetry") |> range(start: 0) |> filter(fn: (r) => r.device_id == "rain-0002" or '
        r'r.device_id == "x\"\${y}")',
        f'data |> filter(fn: (r) => ({readings}) and r._field == "received_ms") {newest} |> yield(name: "received_ms")',
        f'data |> filter(fn: (r) => ({readings}) and r._field == "battery_v") {newest} |> yield(name: "battery_v")',
        f'data |> filter(fn: (r) => r._measurement == "status" and r._field == "online") {newest}'
        ' |> yield(name: "online")',
    ]


def test_last_heard_of_no_devices_asks_nothing(stub: InfluxStub) -> None:
    assert store_for(stub).last_heard(set()) == {}
    assert stub.requests == []


async def _committed(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        offset: int | None = await consumer.committed(tp)
        return offset
    finally:
        await consumer.stop()


@pytest.mark.integration
def test_offsets_advance_only_after_influxdb_accepted_the_points(kafka_bootstrap: str, stub: InfluxStub) -> None:
    topic, group = "store-influx-offsets", "store-influx-offsets"
    tp = TopicPartition(topic, 0)
    reading = Reading("rain-0001", DeviceKind.RAIN, GRID, T0, T0, 1, {"rain_mm": 0.5})

    async def scenario() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(topic, 1, 1)])
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        for seq in range(1, 6):
            batch = TelemetryBatch(GRID, (dataclasses.replace(reading, seq=seq, ts_ms=T0 + seq),))
            await producer.send_and_wait(topic, encode_record([batch]), key=GRID.encode())
        await producer.stop()

        stub.refuse = 10**6
        writer = StoreWriter(store_for(stub, retries=1), kafka_bootstrap, TelemetryStoreSettings(linger_ms=20),
                             topic=topic, group=group)
        stop = asyncio.Event()
        task = asyncio.create_task(writer.run(stop))
        await _until(lambda: len(stub.requests) >= 6, 30)  # joined, fetched, and refused several times
        assert stub.accepted == []
        assert await _committed(kafka_bootstrap, group, tp) is None

        stub.refuse = 0
        await _until(lambda: len(stub.accepted) == 5, 15)
        await _until_async(lambda: _committed(kafka_bootstrap, group, tp), 5, 10)
        stop.set()
        await task

    asyncio.run(scenario())
    assert sorted(line.rsplit(" ", 1)[1] for line in stub.accepted) == [str((T0 + seq) * MS + seq)
                                                                        for seq in range(1, 6)]


async def _until(condition: Any, timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def _until_async(value: Any, expected: Any, timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (current := await value()) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"{current!r} is not {expected!r}"
        await asyncio.sleep(0.1)
