"""The embedded broker's per-session outbox: QoS 1 stays in flight until acknowledged, bounded, in order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gridhub.runtime.mqtt_outbox import Message, Outbox


def msg(n: int, qos: int = 1, size: int = 10) -> Message:
    return Message(f"t/{n}", bytes(size), qos)


def drain(outbox: Outbox) -> list[tuple[int | None, Message]]:
    sent = []
    while (item := outbox.next_to_send()) is not None:
        sent.append(item)
    return sent


def test_a_message_in_flight_stays_until_its_puback_however_long_that_takes() -> None:
    outbox = Outbox(max_inflight=10, max_messages=100, max_bytes=10_000)
    outbox.put(msg(1))
    [(packet_id, _)] = drain(outbox)
    assert packet_id is not None
    assert len(outbox) == 1 and outbox.unacked() == [(packet_id, msg(1))]
    assert outbox.acked(packet_id)
    assert len(outbox) == 0 and outbox.bytes == 0


def test_no_more_than_the_window_is_in_flight_and_an_ack_opens_it_in_order() -> None:
    outbox = Outbox(max_inflight=2, max_messages=100, max_bytes=10_000)
    for n in range(5):
        outbox.put(msg(n))
    first = drain(outbox)
    assert [m.topic for _, m in first] == ["t/0", "t/1"]
    assert outbox.next_to_send() is None
    outbox.acked(first[0][0])  # type: ignore[arg-type]
    assert [m.topic for _, m in drain(outbox)] == ["t/2"]


def test_unacked_messages_keep_their_packet_ids_for_redelivery_after_a_reconnect() -> None:
    outbox = Outbox(max_inflight=5, max_messages=100, max_bytes=10_000)
    for n in range(3):
        outbox.put(msg(n))
    sent = drain(outbox)
    outbox.acked(sent[1][0])  # type: ignore[arg-type]
    assert outbox.unacked() == [sent[0], sent[2]]


def test_an_unknown_or_repeated_puback_changes_nothing() -> None:
    outbox = Outbox(max_inflight=5, max_messages=100, max_bytes=10_000)
    outbox.put(msg(1))
    [(packet_id, _)] = drain(outbox)
    assert not outbox.acked(999)
    assert outbox.acked(packet_id)  # type: ignore[arg-type]
    assert not outbox.acked(packet_id)  # type: ignore[arg-type]
    assert outbox.bytes == 0


def test_a_full_outbox_refuses_by_count_and_by_bytes() -> None:
    by_count = Outbox(max_inflight=5, max_messages=2, max_bytes=10_000)
    assert by_count.put(msg(1)) and by_count.put(msg(2))
    assert not by_count.put(msg(3))
    by_bytes = Outbox(max_inflight=5, max_messages=100, max_bytes=25)
    assert by_bytes.put(msg(1)) and by_bytes.put(msg(2))
    assert not by_bytes.put(msg(3))
    assert len(by_bytes) == 2


def test_qos0_needs_no_window_keeps_its_place_in_line_and_is_dropped_when_the_connection_goes() -> None:
    outbox = Outbox(max_inflight=1, max_messages=100, max_bytes=10_000)
    outbox.put(msg(1))
    outbox.put(msg(2, qos=0))
    assert drain(outbox) == [(1, msg(1)), (None, msg(2, qos=0))]
    outbox.put(msg(3))
    outbox.put(msg(4, qos=0))
    assert drain(outbox) == []  # message 3 waits for the window, and message 4 behind it
    outbox.drop_qos0()
    assert list(outbox.waiting) == [msg(3)]
    assert outbox.bytes == len(msg(1).data) + len(msg(3).data)


def test_packet_ids_wrap_around_and_skip_those_still_in_flight() -> None:
    outbox = Outbox(max_inflight=3, max_messages=100_000, max_bytes=10**9)
    outbox.put(msg(0))
    [(stuck, _)] = drain(outbox)  # never acknowledged
    seen = set()
    for n in range(70_000):
        outbox.put(msg(n))
        [(packet_id, _)] = drain(outbox)
        assert packet_id != stuck and 1 <= packet_id <= 65535  # type: ignore[operator]
        seen.add(packet_id)
        outbox.acked(packet_id)  # type: ignore[arg-type]
    assert len(seen) == 65534


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 50)), max_size=200))
def test_every_message_put_is_sent_exactly_once_in_order_unless_refused(steps: list[tuple[bool, int]]) -> None:
    outbox = Outbox(max_inflight=4, max_messages=20, max_bytes=400)
    accepted: list[Message] = []
    sent: list[Message] = []
    for n, (ack_oldest, size) in enumerate(steps):
        message = Message(f"t/{n}", bytes(size), 1)
        if outbox.put(message):
            accepted.append(message)
        sent += [m for _, m in drain(outbox)]
        if ack_oldest and outbox.unacked():
            outbox.acked(outbox.unacked()[0][0])
        assert outbox.bytes == sum(len(m.data) for m in outbox.waiting) + sum(
            len(m.data) for _, m in outbox.unacked())
    while outbox.unacked():
        outbox.acked(outbox.unacked()[0][0])
        sent += [m for _, m in drain(outbox)]
    assert sent == accepted
