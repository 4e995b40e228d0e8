"""What the embedded broker owes one subscriber session: messages in flight and messages waiting.

amqtt 0.12.1 sends every matching message at once, as its own task, waits 5 s for the PUBACK and then
forgets the message; when the connection closes it cancels the waits and forgets them too
(`amqtt/mqtt/protocol/handler.py`, `_handle_qos1_message_flow`). A gateway that acknowledges only after
Kafka has a message is slower than that under a burst, and so it lost messages. Here a QoS 1 message
stays in flight, under its packet id, until its PUBACK arrives, however long that takes; after a
reconnect of the persistent session it is sent again with DUP set and the same packet id
(MQTT 3.1.1 §4.4). At most `max_inflight` are in flight; the rest wait in order. Waiting and in-flight
messages together are bounded by a count and by payload bytes: what does not fit is refused, and the
caller logs and counts it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Message:
    """An application message as it will be sent to this subscriber."""

    topic: str
    data: bytes
    qos: int
    retain: bool = False


class Outbox:
    """One session's outgoing messages, in order; `wake` is set whenever there may be more to send."""

    def __init__(self, max_inflight: int, max_messages: int, max_bytes: int) -> None:
        self.max_inflight = max_inflight
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.waiting: deque[Message] = deque()
        self.inflight: OrderedDict[int, Message] = OrderedDict()
        self.bytes = 0
        self.wake = asyncio.Event()
        self._last_packet_id = 0

    def __len__(self) -> int:
        return len(self.waiting) + len(self.inflight)

    def put(self, message: Message) -> bool:
        """Queue a message; False (nothing queued) if it would exceed the count or the bytes bound."""
        if len(self) >= self.max_messages or self.bytes + len(message.data) > self.max_bytes:
            return False
        self.waiting.append(message)
        self.bytes += len(message.data)
        self.wake.set()
        return True

    def next_to_send(self) -> tuple[int | None, Message] | None:
        """The next message to send with its packet id (None for QoS 0), or None if none may go now.

        A QoS 1 message moves to in flight here: it leaves the outbox only when `acked()`.
        """
        if not self.waiting:
            return None
        if self.waiting[0].qos == 0:
            message = self.waiting.popleft()
            self.bytes -= len(message.data)
            return None, message
        if len(self.inflight) >= self.max_inflight:
            return None
        message = self.waiting.popleft()
        packet_id = self._free_packet_id()
        self.inflight[packet_id] = message
        return packet_id, message

    def acked(self, packet_id: int) -> bool:
        """The subscriber acknowledged `packet_id`: forget the message. False for an id not in flight."""
        message = self.inflight.pop(packet_id, None)
        if message is None:
            return False
        self.bytes -= len(message.data)
        self.wake.set()
        return True

    def unacked(self) -> list[tuple[int, Message]]:
        """The messages in flight, oldest first: to send again, with DUP, after a reconnect."""
        return list(self.inflight.items())

    def drop_qos0(self) -> None:
        """Forget waiting QoS 0 messages: they are for a connection that is gone."""
        kept = deque(m for m in self.waiting if m.qos > 0)
        self.bytes -= sum(len(m.data) for m in self.waiting if m.qos == 0)
        self.waiting = kept

    def _free_packet_id(self) -> int:
        # len(inflight) < max_inflight <= 65535, so a free id exists
        packet_id = self._last_packet_id
        while True:
            packet_id = packet_id % 65535 + 1
            if packet_id not in self.inflight:
                self._last_packet_id = packet_id
                return packet_id
