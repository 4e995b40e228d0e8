"""`gridhub bench e2e`: from an MQTT publish to the case readable through the API, under background load.

Mosquitto, Kafka, one gateway, one stream worker and the API run as in production, each in its own
process, on a fresh database: with `profile` embedded, an anonymous Mosquitto, Tansu and SQLite; with
production, GridHub's production Mosquitto (devices log in with their demo secrets), Apache Kafka and
PostgreSQL (`gridhub.bench.profiles`). C publishers (`mosquitto_pub -l`) send a paced background load of
ordinary readings. Every `interval` seconds a probe publishes a manhole report with the cover open (a
different cover each time), and the case it must open — its id is known in advance, cases ids being
deterministic — is polled on `GET /api/v1/cases/{id}` until it answers. The baseline is the round trip
of the same probe message from the publisher back to a plain MQTT subscriber on the same broker (where
gateways read): the floor that any pipeline behind the broker adds to.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import paho.mqtt.client as mqtt

from core import kafka
from core.city import load_city
from core.lifecycle import READY_FILE_ENV
from core.settings import Settings
from domain.registry import Device, DeviceKind
from gridhub import localbrokers
from gridhub.bench import BenchResult
from gridhub.bench.profiles import Broker, servers, session
from storage.db import connect
from storage.devices import is_demo_city, seed_devices
from storage.schema import init_db
from storage.tokens import create_token
from streams.engine import case_id, correlation_key

TARGET_P99_S = 1.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class BackgroundLoad:
    """`rate` ordinary readings per second from the city's rain gauges and crowd counters, paced in 10 ms ticks."""

    def __init__(self, broker: Broker, rate: int, devices: list[Device]) -> None:
        self.rate, self.devices = rate, devices
        self.processes = [
            subprocess.Popen(["mosquitto_pub", "-p", str(broker.port), "-q", "1", "-l", *_login_args(broker, d),
                              "-t", f"gridhub/v1/{d.kind.value}/{d.id}/telemetry"],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for d in devices
        ]
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BackgroundLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(10)

    def _run(self) -> None:
        started = time.monotonic()
        seq = 0
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            while self.sent < due:
                index = self.sent % len(self.devices)
                device, process = self.devices[index], self.processes[index]
                seq += 1
                values = {"rain_mm": 0.0} if device.kind is DeviceKind.RAIN else {"count": 10}
                assert process.stdin is not None
                process.stdin.write(orjson.dumps({"ts": round(time.time(), 3), "seq": seq, **values}) + b"\n")
                process.stdin.flush()
                self.sent += 1
            time.sleep(0.01)


def _login_args(broker: Broker, device: Device) -> list[str]:
    login = broker.device_login(device.id)
    return ["-u", login[0], "-P", login[1]] if login else []


@contextlib.contextmanager
def _service(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "gridhub", *argv], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            process.wait(30)


def _wait(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if condition():  # type: ignore[operator]
                return
        time.sleep(0.1)
    raise RuntimeError(f"gave up waiting for {what}")


def _mqtt_round_trip(broker: Broker, device: Device, probes: int) -> list[float]:
    """Publish as `device` → delivery to a plain subscriber where gateways read, `probes` times.

    Run before the gateway starts: nobody else reads the device's topic then.
    """
    arrived: dict[int, float] = {}
    got = threading.Event()
    topic = f"gridhub/v1/{device.kind.value}/{device.id}/telemetry"

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        arrived[int(message.payload)] = time.perf_counter()
        got.set()

    latencies = []
    with session(broker.hub_port, broker.hub_login, "gridhub-bench-e2e-floor") as subscriber, \
            session(broker.port, broker.device_login(device.id), "gridhub-bench-e2e-floor-pub") as publisher:
        subscriber.on_message = on_message
        subscriber.subscribe(topic, qos=1)
        time.sleep(0.5)
        for n in range(probes):
            got.clear()
            sent = time.perf_counter()
            publisher.publish(topic, str(n), qos=1)
            if got.wait(5) and n in arrived:
                latencies.append(arrived[n] - sent)
            time.sleep(0.05)
    return latencies


def run(probes: int, interval_s: float, background_rate: int, profile: str = "embedded") -> BenchResult:
    """Start the pipeline on the profile's servers, run the background load and the probes, report the latencies."""
    settings = Settings()
    city = load_city(settings)
    devices = sorted(city.registry.devices.values(), key=lambda d: d.id)
    covers = [d for d in devices if d.kind is DeviceKind.MANHOLE][:probes]
    if len(covers) < probes:
        raise ValueError(f"the demo city has {len(covers)} manhole covers; ask for at most that many probes")
    readers = [d for d in devices if d.kind in (DeviceKind.RAIN, DeviceKind.CROWD)]
    background, floor_device = readers[:10], readers[-1]
    with tempfile.TemporaryDirectory(prefix="gridhub-bench-e2e-") as tmp, \
            servers(profile, Path(tmp) / "state", mqtt_broker=True) as started:
        assert started.mqtt is not None
        broker = started.mqtt
        directory = Path(tmp)
        asyncio.run(kafka.ensure_topics(started.bootstrap, settings.kafka.partitions))
        (directory / "state").mkdir(parents=True)
        engine = connect(started.database_url)
        init_db(engine)
        seed_devices(engine, city, demo=is_demo_city(settings))
        broker.admit_devices(engine)
        token = create_token(engine, role="viewer", scope="310104", name="bench e2e", expires_in=None)[0]
        engine.dispose()
        api_port = localbrokers.free_port()
        env = {**os.environ, **started.env, "GRIDHUB_LOG_LEVEL": "warning", "GRIDHUB_API__PORT": str(api_port)}
        floor = _mqtt_round_trip(broker, floor_device, 50)
        with _service(["gateway"], env, directory / "gateway.log"), \
                _service(["worker"], {**env, READY_FILE_ENV: str(directory / "worker.ready")},
                         directory / "worker.log"), \
                _service(["api"], env, directory / "api.log"), \
                httpx.Client(base_url=f"http://127.0.0.1:{api_port}",
                             headers={"Authorization": f"Bearer {token}"}, timeout=5) as api:
            _wait(lambda: (directory / "worker.ready").exists(), 90, "the worker's partitions")
            _wait(lambda: api.get("/healthz").status_code == 200, 60, "the API")
            latencies: list[float] = []
            with BackgroundLoad(broker, background_rate, background) as load:
                time.sleep(3)  # let the load settle
                for cover in covers:
                    # Each cover logs in as itself (the production broker's ACL lets it publish only its own
                    # topics); the connection is made before the clock starts.
                    with session(broker.port, broker.device_login(cover.id), f"gridhub-bench-e2e-{cover.id}") as pub:
                        latencies.append(_probe(pub, api, cover))
                    time.sleep(interval_s)
                sent = load.sent
    p50, p99 = statistics.median(latencies), _percentile(latencies, 0.99)
    return BenchResult(
        name="e2e", value=p99 * 1000, unit="ms p99", baseline=_percentile(floor, 0.99) * 1000,
        target=f"p99 <= {TARGET_P99_S * 1000:.0f} ms at {background_rate:,} msg/s background load",
        met=p99 <= TARGET_P99_S,
        details={"p50_ms": round(p50 * 1000, 1), "p99_ms": round(p99 * 1000, 1),
                 "max_ms": round(max(latencies) * 1000, 1), "probes": len(latencies),
                 "background_msgs_per_s": background_rate, "background_sent": sent,
                 "mqtt_floor_p50_ms": round(statistics.median(floor) * 1000, 2),
                 "measured_to": "GET /api/v1/cases/{id} answers 200", "servers": started.description},
    )


def _probe(publisher: mqtt.Client, api: httpx.Client, cover: Device) -> float:
    """Open `cover`, return the seconds until its case answers on the API."""
    assert cover.component_id is not None
    ts = round(time.time(), 3)
    expected = case_id(cover.grid_code, correlation_key(cover.component_id.taxonomy_code, str(cover.component_id)),
                       int(ts * 1000))
    payload = orjson.dumps({"ts": ts, "seq": 1, "tilt_deg": 2.0, "cover_open": True, "water_level_cm": 10.0})
    sent = time.perf_counter()
    publisher.publish(f"gridhub/v1/manhole/{cover.id}/telemetry", payload, qos=1)
    deadline = sent + 30
    while time.perf_counter() < deadline:
        if api.get(f"/api/v1/cases/{expected}").status_code == 200:
            return time.perf_counter() - sent
        time.sleep(0.005)
    raise RuntimeError(f"case {expected} never appeared")
