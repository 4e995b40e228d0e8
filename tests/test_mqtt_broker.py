"""The embedded amqtt broker's fixes, each at the amqtt method it replaces (the whole paths run in
tests/integration/test_delivery.py and test_broker_acl.py)."""

from __future__ import annotations

import asyncio

import pytest
from amqtt.codecs_amqtt import read_or_raise
from amqtt.errors import NoDataError
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.packet import MQTTFixedHeader
from amqtt.session import IncomingApplicationMessage, Session

from core.settings import MqttSettings
from gridhub.runtime.mqtt_broker import LISTENER, OUTBOX, GridBroker, _BoundedReader, _Handler, broker_config
from tests.brokers import free_port

TOPIC = "gridhub/v1/rain/rain-0001/telemetry"


def session(client_id: str, broker: GridBroker, *, connected: bool = True) -> Session:
    s = Session()
    s.client_id = client_id
    s.clean_session = False
    s.attributes.update({LISTENER: "devices", OUTBOX: broker._new_outbox()})
    if connected:
        s.transitions.connect()
    else:
        s.transitions.disconnect()
    return s


def test_messages_pubacked_before_a_disconnect_are_delivered_not_dropped() -> None:
    """amqtt's message loop ends at DISCONNECT and the publisher's queue was cleared with its session."""
    async def run() -> int:
        broker = GridBroker(broker_config("127.0.0.1", free_port()), MqttSettings(), accounts=None)
        gateway = session("gridhub-gateway-1", broker)
        broker._subscriptions["gridhub/v1/+/+/telemetry"] = [(gateway, 1)]
        device = session("rain-0001", broker)
        handler = _Handler(broker.plugins_manager, device)
        broker._sessions["rain-0001"] = (device, handler)
        for seq in range(100):  # PUBACKed to the device, not yet taken by the message loop
            device.delivered_message_queue.put_nowait(IncomingApplicationMessage(seq + 1, TOPIC, 1, b"%d" % seq,
                                                                                 False))
        done: asyncio.Future[DisconnectPacket | None] = asyncio.get_running_loop().create_future()
        done.set_result(DisconnectPacket())
        await broker._handle_disconnect(device, handler, done)
        while not broker._broadcast_queue.empty():
            broker._route(broker._broadcast_queue.get_nowait())
        return len(gateway.attributes[OUTBOX])

    assert asyncio.run(run()) == 100


def test_qos1_messages_for_an_offline_persistent_session_wait_in_its_outbox_and_qos0_do_not() -> None:
    async def run() -> list[int]:
        broker = GridBroker(broker_config("127.0.0.1", free_port()), MqttSettings(), accounts=None)
        gateway = session("gridhub-gateway-1", broker, connected=False)
        broker._subscriptions["gridhub/v1/+/+/telemetry"] = [(gateway, 1)]
        broker._route({"topic": TOPIC, "data": b"1", "qos": 1})
        broker._route({"topic": TOPIC, "data": b"0", "qos": 0})
        return [m.qos for m in gateway.attributes[OUTBOX].waiting]

    assert asyncio.run(run()) == [1]


def test_a_full_outbox_is_counted_and_never_silent(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> tuple[int, int]:
        limits = MqttSettings(max_queued_messages=3)
        broker = GridBroker(broker_config("127.0.0.1", free_port()), limits, accounts=None)
        gateway = session("gridhub-gateway-1", broker, connected=False)
        broker._subscriptions["gridhub/v1/+/+/telemetry"] = [(gateway, 1)]
        for n in range(5):
            broker._route({"topic": TOPIC, "data": b"%d" % n, "qos": 1})
        return len(gateway.attributes[OUTBOX]), broker.dropped

    assert asyncio.run(run()) == (3, 2)
    assert "the queue of gridhub-gateway-1 is full" in caplog.text


class _Chunks:
    """A reader adapter that hands out prepared bytes."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def read(self, n: int = -1) -> bytes:
        taken, self._data = self._data[:n], self._data[n:]
        return taken


def publish_packet(payload_size: int) -> bytes:
    body = b"\x00\x01t" + b"\x00\x01" + bytes(payload_size)
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes([0x32]) + bytes(encoded) + body


@pytest.mark.parametrize(("size", "allowed"), [(1000, True), (8000, True), (10_000_000, False)])
def test_a_packet_over_the_limit_ends_the_connection_at_its_header(size: int, allowed: bool) -> None:
    async def read_all() -> int:
        packets = publish_packet(size) * 2
        reader = _BoundedReader(_Chunks(packets), limit=8192, peer="test")
        read = 0
        for _ in range(2):
            header = await MQTTFixedHeader.from_stream(reader)
            if header is None:
                return read
            await reader.read(header.remaining_length)
            read += 1
        return read

    assert asyncio.run(read_all()) == (2 if allowed else 0)


def test_the_bounded_reader_lets_eof_through() -> None:
    async def run() -> None:
        await read_or_raise(_BoundedReader(_Chunks(b""), limit=8192, peer="test"), 1)

    with pytest.raises(NoDataError):
        asyncio.run(run())
