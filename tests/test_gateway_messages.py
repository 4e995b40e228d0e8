"""What the gateway does with each MQTT message before Kafka: replays, duplicates, conflicts, seq going back."""

from __future__ import annotations

import logging
import time

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import REGISTRY

from core import kafka
from core.settings import load_settings
from domain.registry import Device, DeviceKind, Registry
from domain.telemetry import Reading, StatusChange
from ingest.gateway import Gateway
from ingest.payloads import Reason, Rejection

CELL = "310104003001001"
RAIN = "gridhub/v1/rain/rain-0001/telemetry"
STATUS = "gridhub/v1/rain/rain-0001/status"
REGISTRY_OF_ONE = Registry([Device("rain-0001", DeviceKind.RAIN, CELL, 121.43, 31.195, 60)])
CLIENT = mqtt.Client(CallbackAPIVersion.VERSION2)


@pytest.fixture
def gateway() -> Gateway:
    return Gateway(load_settings(environ={}), REGISTRY_OF_ONE)


def deliver(gateway: Gateway, topic: str, payload: bytes, *, mid: int = 1, retain: bool = False) -> None:
    message = mqtt.MQTTMessage(mid, topic.encode())
    message.payload, message.qos, message.retain = payload, 1, retain
    gateway._on_message(CLIENT, None, message)


def rain(seq: int, ts: int, rain_mm: float = 0.2) -> bytes:
    return orjson.dumps({"ts": ts, "seq": seq, "rain_mm": rain_mm})


def outcomes(gateway: Gateway) -> list[Reading | StatusChange | Rejection]:
    return [item.outcome for item in gateway.queue]


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_retained_telemetry_is_acknowledged_and_counted_not_forwarded(gateway: Gateway) -> None:
    acked: list[int] = []
    gateway.tracker.send_ack = acked.append
    before = counter("gridhub_gateway_retained_skipped_total")
    deliver(gateway, RAIN, rain(1, int(time.time())), mid=9, retain=True)
    assert outcomes(gateway) == []
    assert acked == [9]
    assert counter("gridhub_gateway_retained_skipped_total") == before + 1


def test_a_retained_status_is_forwarded_marked_replayed(gateway: Gateway) -> None:
    deliver(gateway, STATUS, b"online", retain=True)
    deliver(gateway, STATUS, b"offline")
    assert [(s.online, s.replayed) for s in outcomes(gateway) if isinstance(s, StatusChange)] == [(True, True),
                                                                                                 (False, False)]


def test_an_exact_repeat_is_dropped_and_counted_as_a_duplicate(gateway: Gateway) -> None:
    now = int(time.time())
    deliver(gateway, RAIN, b'{"ts": %d, "seq": 1, "rain_mm": 0.2}' % now, mid=1)
    deliver(gateway, RAIN, b'{"rain_mm": 0.20, "seq": 1,  "ts": %d}' % now, mid=2)
    assert [o.seq for o in outcomes(gateway) if isinstance(o, Reading)] == [1]
    assert gateway._duplicates == 1


def test_the_same_seq_with_another_payload_is_dead_lettered_as_a_conflicting_duplicate(gateway: Gateway) -> None:
    now = int(time.time())
    deliver(gateway, RAIN, rain(1, now, 0.2), mid=1)
    deliver(gateway, RAIN, rain(1, now, 5.0), mid=2)
    first, second = outcomes(gateway)
    assert isinstance(first, Reading)
    assert isinstance(second, Rejection)
    assert (second.reason, second.device_id) == (Reason.CONFLICTING_DUPLICATE, "rain-0001")
    assert second.detail == f"seq 1 was received before with other content (ts_ms {now * 1000}); this one has " \
                            f"ts_ms {now * 1000}"
    assert gateway._duplicates == 0


def test_a_seq_going_backwards_is_accepted_counted_and_logged_naming_the_device(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    now = int(time.time())
    before = counter("gridhub_gateway_seq_regressions_total")
    with caplog.at_level(logging.WARNING, "gridhub.gateway"):
        deliver(gateway, RAIN, rain(500, now - 60), mid=1)
        deliver(gateway, RAIN, rain(0, now), mid=2)
    assert [o.seq for o in outcomes(gateway) if isinstance(o, Reading)] == [500, 0]
    assert counter("gridhub_gateway_seq_regressions_total") == before + 1
    assert "seq of rain-0001 went back from 500 to 0" in caplog.text


def test_seq_regressions_are_logged_at_most_once_per_interval_and_all_counted(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    now = int(time.time())
    before = counter("gridhub_gateway_seq_regressions_total")
    with caplog.at_level(logging.WARNING, "gridhub.gateway"):
        for mid, seq in enumerate((10, 1, 9, 2, 8, 3), start=1):
            deliver(gateway, RAIN, rain(seq, now - 100 + mid), mid=mid)
    assert counter("gridhub_gateway_seq_regressions_total") == before + 3
    assert caplog.text.count("went back") == 1


def test_a_message_the_broker_sends_again_is_counted_as_redelivered(gateway: Gateway) -> None:
    before = counter("gridhub_gateway_redelivered_total")
    message = mqtt.MQTTMessage(3, RAIN.encode())
    message.payload, message.qos, message.dup = rain(1, int(time.time())), 1, True
    gateway._on_message(CLIENT, None, message)
    assert counter("gridhub_gateway_redelivered_total") == before + 1


def test_a_redelivered_copy_is_acknowledged_only_once_the_first_copy_is_in_kafka(gateway: Gateway) -> None:
    """Had the copy been PUBACKed at once, a gateway dying before Kafka took the first copy would lose it."""
    acked: list[int] = []
    gateway.tracker.send_ack = acked.append
    now = int(time.time())
    deliver(gateway, RAIN, rain(1, now), mid=1)
    gateway.tracker.reconnected()  # the connection dropped; the broker sends the reading again
    deliver(gateway, RAIN, rain(1, now), mid=7)
    assert acked == []
    [first] = list(gateway.queue)
    gateway._produced(kafka.TELEMETRY, [first])
    assert acked == [7]
    deliver(gateway, RAIN, rain(1, now), mid=8)  # a later copy: the first is in Kafka, acknowledge at once
    assert acked == [7, 8]
