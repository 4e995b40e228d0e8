"""The sensor fleet against real brokers: every device connects with its own credentials, publishes the
documented telemetry, keeps a retained status, and drops off with its last will."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import paho.mqtt.publish as mqtt_publish
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.city import load_city
from core.settings import load_settings
from domain.registry import Device
from simulators.fleet import Fleet, FleetStats
from simulators.scenario import IncidentKind, ScenarioConfig
from tests import brokers
from tests.test_simulator_scenario import problem

pytestmark = pytest.mark.integration

SPEED = 200.0  # about 640 readings/s; the opening outage starts 0.9 s in and lasts 3 s
RUN_S = 6.0
CHECK_RETAINED_AT_S = 4.5
PROBE = "gridhub/v1/probe/probe/status"


class Firehose:
    """`mosquitto_sub` on gridhub/v1/#: a C client that keeps up with the fleet where a paho thread in this
    process, sharing the GIL with it, falls behind and makes Mosquitto drop QoS 1 messages."""

    def __init__(self, port: int, output: Path) -> None:
        self._output = output
        with output.open("wb") as sink:  # a file, not a pipe nobody drains while the fleet runs
            self._process = subprocess.Popen(
                ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", "gridhub/v1/#",
                 "-F", "%U %t %x"], stdout=sink)
        deadline = time.monotonic() + 10
        while not output.stat().st_size:  # subscribed once a probe comes through
            assert time.monotonic() < deadline, "mosquitto_sub did not subscribe"
            mqtt_publish.single(PROBE, b"probe", qos=1, hostname="127.0.0.1", port=port)
            time.sleep(0.2)

    def stop(self) -> list[tuple[float, str, bytes]]:
        """Once the broker has delivered its backlog (amqtt acknowledges publishers before it forwards),
        stop and return every message but the probes: (arrival time, topic, payload)."""
        deadline, size = time.monotonic() + 20, -1
        while size != self._output.stat().st_size and time.monotonic() < deadline:
            size = self._output.stat().st_size
            time.sleep(1.0)
        self._process.terminate()
        self._process.wait(10)
        messages = []
        for line in self._output.read_bytes().splitlines():
            arrived, topic, payload = line.decode().split(" ")
            if topic != PROBE:
                messages.append((float(arrived), topic, bytes.fromhex(payload)))
        return messages


class Recorder:
    """A paho subscriber that keeps the messages under a topic filter with their retain flags."""

    def __init__(self, port: int, topic: str, name: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []  # topic, payload, retained
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name)
        self._client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload), m.retain))
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        assert self._subscribed.wait(10), f"{name} could not subscribe"

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture(params=["mosquitto", "amqtt"])
def broker_port(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[int]:
    """A fresh broker of each kind GridHub runs on."""
    if request.param == "mosquitto":
        with brokers.mosquitto(tmp_path) as port:
            yield port
    else:
        with brokers.amqtt() as port:
            yield port


@pytest.fixture(scope="module")
def devices() -> list[Device]:
    return list(load_city(load_settings(environ={})).registry)


def test_the_fleet_publishes_the_documented_telemetry_and_statuses(
    broker_port: int, devices: list[Device], tmp_path: Path
) -> None:
    everything = Firehose(broker_port, tmp_path / "firehose.txt")
    fleet = Fleet(devices, ScenarioConfig(seed=3, speed=SPEED, malformed_share=0.05, min_outage_s=1.0),
                  "127.0.0.1", broker_port)
    outcome: list[FleetStats] = []
    runner = threading.Thread(target=lambda: outcome.append(asyncio.run(fleet.run(asyncio.Event(), RUN_S))))
    runner.start()
    while fleet.scenario is None and runner.is_alive():
        time.sleep(0.02)
    assert fleet.scenario is not None, "the fleet never got connected"
    started = fleet.stats.started_at
    time.sleep(max(0.0, started + CHECK_RETAINED_AT_S - time.time()))
    retained = Recorder(broker_port, "gridhub/v1/+/+/status", "test-retained")
    checked_at = time.time()
    time.sleep(0.5)
    retained.close()
    runner.join(30)
    stopped_at = time.time()
    received = everything.stop()
    assert outcome, "the fleet did not stop"
    stats = outcome[0]
    by_id = {d.id: d for d in devices}
    outages = [i for i in fleet.scenario.incidents_between(started, started + RUN_S) if i.kind is IncidentKind.OUTAGE]

    statuses: dict[str, list[tuple[float, bytes]]] = {}
    telemetry: dict[str, list[tuple[float, bytes]]] = {}
    for arrived, topic, payload in received:
        _, _, kind, device_id, leaf = topic.split("/")
        assert by_id[device_id].kind.value == kind
        (statuses if leaf == "status" else telemetry).setdefault(device_id, []).append((arrived, payload))

    # every device connected and said so
    assert {d for d, seen in statuses.items() if (seen[0][1] == b"online")} == set(by_id)
    assert stats.connects >= len(devices) + 1  # and the one back from its outage reconnected
    assert stats.refusals == 0

    # well-formed telemetry follows the contract, seq increases per device, and the defects are all there
    malformed = 0
    for device_id, messages in telemetry.items():
        distinct = list(dict.fromkeys(payload for _, payload in messages))  # QoS 1 may redeliver
        well_formed = [p for p in distinct if problem(p, by_id[device_id], stopped_at) is None]
        malformed += len(distinct) - len(well_formed)
        seqs = [orjson.loads(p)["seq"] for p in well_formed]
        assert seqs == sorted(set(seqs)), device_id
    assert len(telemetry) == len(devices)
    assert sum(len(set(p for _, p in m)) for m in telemetry.values()) == stats.sent == stats.acked
    assert malformed == sum(k.malformed for k in stats.kinds.values())
    assert 0.02 < malformed / stats.sent < 0.1

    # retained statuses: online, except for a device in the middle of an outage
    held = {topic.split("/")[3]: payload for topic, payload, was_retained in retained.messages if was_retained}
    away = {i.device_id for i in outages if i.start < checked_at < i.end}
    settling = {i.device_id for i in outages if min(abs(i.start - checked_at), abs(i.end - checked_at)) < 0.5}
    assert set(held) == set(by_id)
    assert all(held[d] == b"online" for d in set(by_id) - away - settling)
    assert all(held[d] == b"offline" for d in away - settling)

    # the outage: the broker published the will, the device came back, and at the stop said goodbye
    outage = outages[0]
    assert outage.end < started + RUN_S
    sequence = [payload for _, payload in statuses[outage.device_id]]
    assert sequence == [b"online", b"offline", b"online", b"offline"]
    will_arrived = statuses[outage.device_id][1][0]
    assert outage.start - 0.2 < will_arrived < outage.end
    assert all(seen[-1][1] == b"offline" and seen[-1][0] > started + RUN_S for seen in statuses.values())


def test_the_command_runs_a_subset_against_the_broker_in_ready_json_and_sums_up(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    with brokers.mosquitto(tmp_path) as port:
        ready.write_bytes(orjson.dumps({"mqtt_host": "127.0.0.1", "mqtt_port": port}))
        done = subprocess.run(
            [sys.executable, "-m", "gridhub", "simulate", "sensors", "--ready", str(ready), "--devices", "12",
             "--rate", "100", "--duration", "2"],
            capture_output=True, timeout=60, env={**os.environ, "GRIDHUB_CONFIG": ""},
        )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, err
    assert "Traceback" not in err
    assert f"12 devices ran 2.0 s against 127.0.0.1:{port}" in out
    sent = int(re.search(r"telemetry sent (\d+), acknowledged (\d+)", out)[1])  # type: ignore[index]
    assert 120 < sent < 280
