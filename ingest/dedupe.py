"""Which readings are new: exact repeats, conflicting duplicates, and a seq that goes backwards.

A reading is identified by (device, seq) and its content is the normalised reading: measurement time and
values, so key order, whitespace or `1` versus `1.0` in the JSON do not matter (receipt time and lateness
are the gateway's, not the device's). The same (device, seq) with the same content is a duplicate (the
broker redelivered it, or the device retried); with other content it is a conflict — unless the earlier
reading is from before the device restarted its seq.

A device restarts its seq when it reboots: its seq goes below the previous one while its clock does not go
back. Readings remembered from before that moment belong to the previous run, and a later reading with the
same seq replaces them. A seq that goes backwards is reported either way (`Seen.REGRESSED`); the reading is
new and accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from domain.telemetry import Reading


class Seen(Enum):
    """What a reading is, given the readings before it."""

    NEW = "new"
    REGRESSED = "regressed"  # new, but its seq is below the device's previous one
    DUPLICATE = "duplicate"  # the same (device, seq) with the same content: dropped
    CONFLICT = "conflict"  # the same (device, seq) with other content, in the same seq run: dead-lettered


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome for one reading, with what explains it."""

    seen: Seen
    previous_seq: int | None = None  # the device's seq before this reading (REGRESSED)
    earlier_ts_ms: int | None = None  # measurement time of the reading first received with this seq (CONFLICT)


_NEW = Verdict(Seen.NEW)
_DUPLICATE = Verdict(Seen.DUPLICATE)


@dataclass(slots=True)
class _Run:
    """A device's current seq run: its last seq and time, and when the run began (0: first seen)."""

    seq: int
    ts_ms: int
    started_ms: int = 0


class SequenceTracker:
    """Remembers the content of the last `size` readings and each device's seq run; not thread-safe."""

    def __init__(self, size: int) -> None:
        self._size = size
        # (device, seq) → (ts_ms, hash of the values): a hash keeps the cache small, and values that differ
        # but collide in 64 bits are not a case worth the memory.
        self._readings: dict[tuple[str, int], tuple[int, int]] = {}
        self._runs: dict[str, _Run] = {}

    def check(self, reading: Reading) -> Verdict:
        """Classify a reading; a new one (NEW or REGRESSED) is remembered."""
        key = (reading.device_id, reading.seq)
        content = (reading.ts_ms, _hash(reading.values))
        earlier = self._readings.get(key)
        if earlier == content:
            return _DUPLICATE
        run = self._runs.get(reading.device_id)
        if run is None:
            self._runs[reading.device_id] = _Run(reading.seq, reading.ts_ms)
            verdict = _NEW
        else:
            went_back = reading.seq < run.seq
            if went_back and reading.ts_ms >= run.ts_ms:  # seq back, clock not: the device restarted
                run.started_ms = reading.ts_ms
            elif earlier is not None and earlier[0] >= run.started_ms:
                return Verdict(Seen.CONFLICT, earlier_ts_ms=earlier[0])
            verdict = Verdict(Seen.REGRESSED, previous_seq=run.seq) if went_back else _NEW
            run.seq, run.ts_ms = reading.seq, reading.ts_ms
        if earlier is not None:
            del self._readings[key]  # from the device's previous run: this one takes its place (and is newest)
        self._readings[key] = content
        if len(self._readings) > self._size:
            del self._readings[next(iter(self._readings))]  # dicts keep insertion order: drop the oldest
        return verdict


def _hash(values: Mapping[str, float | bool]) -> int:
    return hash(frozenset(values.items()))
