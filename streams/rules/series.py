"""Per-device sample series keyed by measurement time: a duplicate delivery is the same sample again."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import accumulate

MICRO = 1_000_000  # totals are kept in integer millionths, so a window's total never depends on what came before


class Series:
    """Samples of one device sorted by time, one value per timestamp, with running sums for window totals."""

    __slots__ = ("_cum", "ts", "values")

    def __init__(self, samples: list[tuple[int, float]] | None = None) -> None:
        self.ts: list[int] = []
        self.values: list[float] = []
        self._cum: list[int] = []
        for ts, value in sorted(samples or ()):
            self.add(ts, value)

    def add(self, ts: int, value: float) -> bool:
        """Record a sample; False when the series already had exactly this sample (a duplicate)."""
        if not self.ts or ts > self.ts[-1]:  # the common case: in order
            self.ts.append(ts)
            self.values.append(value)
            self._cum.append((self._cum[-1] if self._cum else 0) + round(value * MICRO))
            return True
        i = bisect_left(self.ts, ts)
        if i < len(self.ts) and self.ts[i] == ts:
            if self.values[i] == value:
                return False
            self.values[i] = value  # a corrected report for the same instant replaces the old one
        else:
            self.ts.insert(i, ts)
            self.values.insert(i, value)
        self._cum = list(accumulate(round(v * MICRO) for v in self.values))
        return True

    def total(self, after: int, until: int) -> float:
        """Sum of the values with `after` < ts ≤ `until`."""
        i, j = bisect_right(self.ts, after), bisect_right(self.ts, until)
        if j <= i:
            return 0.0
        return (self._cum[j - 1] - (self._cum[i - 1] if i else 0)) / MICRO

    def any_within(self, after: int, until: int) -> bool:
        """True when a sample has `after` < ts ≤ `until`."""
        return bisect_right(self.ts, until) > bisect_right(self.ts, after)

    def prune(self, before: int) -> None:
        """Forget samples older than `before`."""
        i = bisect_left(self.ts, before)
        if i:
            del self.ts[:i], self.values[:i], self._cum[:i]
            if self._cum:
                base = round(self.values[0] * MICRO) - self._cum[0]
                self._cum = [c + base for c in self._cum]

    def samples(self) -> list[tuple[int, float]]:
        """The samples as (ts, value) pairs, oldest first."""
        return list(zip(self.ts, self.values, strict=True))

    def __len__(self) -> int:
        return len(self.ts)
