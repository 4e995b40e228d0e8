"""What the sensor fleet is doing: a live table on a terminal, plain log lines under a supervisor,
and a summary when it stops."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterator

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from domain.registry import DeviceKind
from simulators.fleet import DeviceState, Fleet
from simulators.scenario import Scenario

log = logging.getLogger("gridhub.simulate")

RATE_WINDOW_S = 5.0


class Progress:
    """Samples the fleet's counters; shows them live on a terminal or logs a line every `every_s`."""

    def __init__(self, fleet: Fleet, endpoint: str, console: Console, every_s: float = 10.0) -> None:
        self.fleet = fleet
        self.endpoint = endpoint
        self.console = console
        self.every_s = every_s
        self._samples: deque[tuple[float, dict[DeviceKind, int]]] = deque()

    async def run(self) -> None:
        """Show progress until cancelled."""
        self._sample()
        if not self.console.is_terminal:
            while True:
                await asyncio.sleep(self.every_s)
                self._sample()
                log.info("%s", self.line())
        with Live(self.table(), console=self.console, auto_refresh=False, transient=True) as live:
            while True:
                await asyncio.sleep(0.5)
                self._sample()
                live.update(self.table(), refresh=True)

    def rates(self) -> dict[DeviceKind, float]:
        """Acknowledged messages per second by kind, over the last few seconds."""
        if len(self._samples) < 2:
            return {kind: 0.0 for kind in DeviceKind}
        (t0, first), (t1, last) = self._samples[0], self._samples[-1]
        return {kind: (last[kind] - first[kind]) / max(t1 - t0, 1e-9) for kind in DeviceKind}

    def line(self) -> str:
        """One plain line for logs."""
        stats = self.fleet.stats
        rates = self.rates()
        kinds = ", ".join(f"{kind.value} {stats.kinds[kind].sent}" for kind in DeviceKind)
        return (f"{sum(rates.values()):.1f} msg/s acked; sent {kinds}; malformed "
                f"{sum(k.malformed for k in stats.kinds.values())}; dropped "
                f"{sum(k.dropped for k in stats.kinds.values())}; {_devices(self.fleet)}; lag {stats.lag_s:.1f} s"
                f"{_world(self.fleet.scenario)}")

    def table(self) -> Group:
        """The live display."""
        stats = self.fleet.stats
        rates = self.rates()
        table = Table(title=f"GridHub sensor fleet → {self.endpoint}  (speed ×{self.fleet.config.speed:.4g}, "
                            f"seed {self.fleet.config.seed}, {_clock(time.time() - stats.started_at)})")
        for column in ("kind", "devices", "sent", "acked", "malformed", "dropped", "msg/s"):
            table.add_column(column, justify="left" if column == "kind" else "right")
        devices = {kind: sum(1 for d in self.fleet.devices if d.kind is kind) for kind in DeviceKind}
        for kind in DeviceKind:
            counts = stats.kinds[kind]
            table.add_row(kind.value, str(devices[kind]), f"{counts.sent:,}", f"{counts.acked:,}",
                          f"{counts.malformed:,}", f"{counts.dropped:,}", f"{rates[kind]:.1f}")
        table.add_row("total", str(len(self.fleet.devices)), f"{stats.sent:,}", f"{stats.acked:,}",
                      f"{sum(k.malformed for k in stats.kinds.values()):,}",
                      f"{sum(k.dropped for k in stats.kinds.values()):,}", f"{sum(rates.values()):.1f}",
                      style="bold")
        status = f"devices: {_devices(self.fleet)}   lag {stats.lag_s:.1f} s{_world(self.fleet.scenario)}"
        return Group(table, status)

    def _sample(self) -> None:
        now = time.monotonic()
        self._samples.append((now, {kind: counts.acked for kind, counts in self.fleet.stats.kinds.items()}))
        while len(self._samples) > 2 and self._samples[0][0] < now - RATE_WINDOW_S:
            self._samples.popleft()


def summary(fleet: Fleet, endpoint: str) -> str:
    """What the run did, for the console or the log, when the fleet has stopped."""
    stats = fleet.stats
    elapsed = max((stats.stopped_at or time.time()) - stats.started_at, 1e-9)
    malformed = sum(k.malformed for k in stats.kinds.values())
    defects = ", ".join(f"{defect.value} {n}" for defect, n in sorted(stats.defects.items()))
    lines = [
        f"GridHub sensor fleet: {len(fleet.devices)} devices ran {elapsed:.1f} s against {endpoint} "
        f"at speed ×{fleet.config.speed:.4g} (seed {fleet.config.seed})",
        f"  telemetry sent {stats.sent:,}, acknowledged {stats.acked:,} ({stats.acked / elapsed:.1f} msg/s), "
        f"dropped {sum(k.dropped for k in stats.kinds.values()):,}",
        "  by kind: " + ", ".join(f"{kind.value} {stats.kinds[kind].sent:,}" for kind in DeviceKind),
        f"  malformed {malformed:,}" + (f" ({defects})" if defects else ""),
        f"  connections {stats.connects}, outages (dropped without DISCONNECT) {stats.outages}, "
        f"refused {stats.refusals}",
    ]
    lines.extend(_incidents(fleet.scenario, stats.started_at, stats.started_at + elapsed))
    return "\n".join(lines)


def _incidents(scenario: Scenario | None, wall_from: float, wall_to: float) -> Iterator[str]:
    if scenario is None:
        return
    counts: dict[str, int] = {}
    for incident in scenario.incidents_between(wall_from, wall_to):
        counts[incident.kind.value] = counts.get(incident.kind.value, 0) + 1
    scenario_s = scenario.offset(wall_to)
    rain = scenario.rain_between(0, scenario_s)
    yield (f"  scenario: {_clock(scenario_s)} of scenario time; rain events {len(rain)}"
           + (f" (strongest {max(e.peak_mm_h for e in rain):.0f} mm/h)" if rain else "")
           + "".join(f", {kind} {n}" for kind, n in sorted(counts.items())))


def _devices(fleet: Fleet) -> str:
    states = fleet.device_states()
    return ", ".join(f"{states[state]} {state.value}" for state in DeviceState if states[state])


def _world(scenario: Scenario | None) -> str:
    """The scenario's clock and the rain now, so that a demo audience can follow along."""
    if scenario is None:
        return ""
    offset = scenario.offset(time.time())
    gauges = [d for d in scenario.devices if d.kind is DeviceKind.RAIN]
    rain = sum(scenario.rain_intensity(d, offset) for d in gauges) / len(gauges) if gauges else 0.0
    return f"; scenario {scenario.local_time(offset):%a %H:%M}, rain {rain:.1f} mm/h"


def _clock(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days} d {text}" if days else text
