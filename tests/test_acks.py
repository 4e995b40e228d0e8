"""PUBACKs go out in arrival order, only for what Kafka holds, and never across a reconnect."""

from __future__ import annotations

from ingest.acks import AckTracker


def tracker() -> tuple[AckTracker, list[int]]:
    sent: list[int] = []
    return AckTracker(sent.append), sent


def test_acks_wait_for_earlier_messages() -> None:
    acks, sent = tracker()
    first, second, third = acks.receive(1), acks.receive(2), acks.receive(3)
    assert acks.complete([third, second]) == 0
    assert sent == []
    assert acks.complete([first]) == 3
    assert sent == [1, 2, 3]
    assert len(acks) == 0


def test_a_message_not_yet_in_kafka_holds_back_later_acks() -> None:
    acks, sent = tracker()
    handles = [acks.receive(mid) for mid in range(1, 6)]
    acks.complete([handles[0], handles[1], handles[3], handles[4]])
    assert sent == [1, 2]
    assert len(acks) == 3


def test_after_a_reconnect_old_packet_ids_are_never_acknowledged() -> None:
    acks, sent = tracker()
    old = acks.receive(7)
    acks.reconnected()
    new = acks.receive(7)  # the same packet id on the new connection is a different message
    acks.complete([old])
    assert sent == []
    acks.complete([new])
    assert sent == [7]

