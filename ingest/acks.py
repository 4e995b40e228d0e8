"""Acknowledge QoS 1 messages to the broker in the order they arrived, once each is safe in Kafka.

MQTT 3.1.1 §4.6 and MQTT 5 §4.6 require PUBACKs in the order the PUBLISH packets were received,
while Kafka acknowledges per grid-cell batch in any order. The tracker holds each message until it is
done, then releases the longest done prefix. A reconnect starts a new generation: packet ids of the
old connection are meaningless on the new one, and the broker redelivers what was never acknowledged.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Pending:
    """One received QoS 1 message awaiting its Kafka acknowledgement."""

    mid: int
    generation: int
    done: bool = False


@dataclass
class AckTracker:
    """Thread-safe: `receive()` runs on the MQTT thread, `complete()` on the Kafka side."""

    send_ack: Callable[[int], object]
    _queue: deque[Pending] = field(default_factory=deque)
    _generation: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def receive(self, mid: int) -> Pending:
        """Register a message in arrival order; pass the returned handle to `complete()`."""
        with self._lock:
            pending = Pending(mid, self._generation)
            self._queue.append(pending)
            return pending

    def complete(self, handles: list[Pending]) -> int:
        """Mark messages produced (or dead-lettered); send every PUBACK now allowed; return how many."""
        with self._lock:
            for pending in handles:
                pending.done = True
            sent = 0
            while self._queue and self._queue[0].done:
                pending = self._queue.popleft()
                if pending.generation == self._generation:
                    self.send_ack(pending.mid)
                    sent += 1
            return sent

    def reconnected(self) -> None:
        """Forget the previous connection's packet ids; the broker will redeliver those messages."""
        with self._lock:
            self._generation += 1
            self._queue = deque(p for p in self._queue if p.generation == self._generation)

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)
