"""Retrying through an outage, one way everywhere: a backoff schedule, the outage and the recovery each logged once.

`Retry` is a small state object rather than a decorator (tenacity's shape) because GridHub retries in four
shapes: an async loop (`await wait_or_stop(retry.failed(...), stop)`), a thread (`event.wait(retry.failed(...))`),
a callback chain (the gateway resends a record from the producer's done-callback) and a broker's answer (the
gateway's refused subscriptions). All four need only the next delay and the two log lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence


class Retry:
    """Attempts at one thing: the delay after each failure in a row (the schedule's last one repeated), the
    outage logged when it starts (and again only if its message changes), the recovery logged when it ends."""

    def __init__(self, delays: Sequence[float], log: logging.Logger | None = None) -> None:
        if not delays:
            raise ValueError("a retry schedule needs at least one delay")
        self.delays = tuple(delays)
        self.failures = 0
        self._log = log
        self._said = ""

    def failed(self, message: str = "", *args: object) -> float:
        """Count a failure and return the delay before the next attempt; log `message % args` if it is news."""
        delay = self.delays[min(self.failures, len(self.delays) - 1)]
        self.failures += 1
        if message and self._log is not None:
            text = message % args if args else message
            if text != self._said:
                self._log.warning("%s", text)
                self._said = text
        return delay

    def recovered(self, message: str = "", *args: object) -> int:
        """End the outage, logging `message % args` if there was one; return how many failures it had."""
        failures, self.failures, self._said = self.failures, 0, ""
        if failures and message and self._log is not None:
            self._log.info(message, *args)
        return failures


def doubling(first_s: float, cap_s: float) -> tuple[float, ...]:
    """A schedule that starts at `first_s` and doubles up to `cap_s`."""
    if not 0 < first_s <= cap_s:
        raise ValueError("a doubling schedule needs 0 < first_s <= cap_s")
    delays = [first_s]
    while delays[-1] < cap_s:
        delays.append(min(delays[-1] * 2, cap_s))
    return tuple(delays)


async def wait_or_stop(seconds: float, stop: asyncio.Event) -> bool:
    """Wait `seconds`, or less if `stop` is set meanwhile; whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
