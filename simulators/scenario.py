"""What every device of the sensor fleet reports, and when: a deterministic world driven by a seed.

The world runs on *scenario time*, `speed` times faster than the wall clock, starting at the wall-clock
moment `start`. Weather, the daily rhythm of crowds, incidents and battery drain follow scenario time,
so `--speed 10` shows a day in 2.4 hours; devices report `speed` times more often, each report covering
one registered report interval of scenario time, and every timestamp is real wall-clock time.

Two kinds of duration are kept on the wall clock instead, because the stream rules measure them there
and compressing them would make a sped-up demo never show them: how long a crowd surge
stays over its density threshold (sustained 2 min → 9901; brief spikes stay under that), and how long an
outage lasts (at least 4 registered report intervals, so the silence rule fires as well as the will).

Events are generated per block of scenario time from the seed alone, so any moment can be computed
without replaying the past, and the same seed and start give the same messages, byte for byte.
"""

from __future__ import annotations

import itertools
import math
import random
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, tzinfo
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from domain.registry import Device, DeviceKind

SHANGHAI = ZoneInfo("Asia/Shanghai")
BLOCK_S = 6 * 3600  # scenario seconds per block of generated events
DAY_S = 86_400
RAIN_LOOKBACK_S = 12 * 3600  # longer than any rain event lasts
TIP_MM = 0.2  # tipping-bucket resolution
TIP_UM = 200  # the same in micrometres: whole numbers keep the bucket exact over millions of reports
MAX_STEP_S = 60.0  # integration step for rainfall, scenario seconds

STORMS_PER_DAY = 1.2  # convective cells crossing the district in a wet season (梅雨/台风季)
STRATIFORM_PER_DAY = 0.4  # long widespread rain, the kind that fills 6 h and 12 h windows
SURGES_PER_COUNTER_DAY = 0.25
COVER_INCIDENTS_PER_WELL_DAY = 1 / 15
BLOCKED_SEWERS_PER_WELL_DAY = 1 / 30  # before dropping the ones that would start in rain
OUTAGES_PER_DEVICE_DAY = 1 / 20
OUTAGE_MIN_INTERVALS = 4  # silence rule: no message for 3 report intervals
LOW_BATTERY_SHARE = 0.04

CROWD_BASELINE_CAP = 1.6  # persons/m²: an ordinary day never reaches the 2/m² warning density
SEWER_DRY_LOOKBACK_S = 6 * 3600  # a blocked sewer starts with no rain in its cell for 6 h (0404, not 0406)
DRY_STEP_S = 300.0
WATER_RESPONSE_S = 15 * 60  # how fast a well fills and drains after rain
WATER_HALF_MM_H = 20.0  # rain intensity that fills a well half-way towards its susceptibility


class Defect(StrEnum):
    """Ways a published telemetry message is malformed, for the gateway's dead-letter path."""

    INVALID_JSON = "invalid_json"
    OUT_OF_RANGE = "out_of_range"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    NOT_UTF8 = "not_utf8"
    OVERSIZED = "oversized"


class IncidentKind(StrEnum):
    """Something happening to one device's surroundings, or to the device itself."""

    CROWD_SURGE = "crowd_surge"  # over the density threshold long enough for a 9901 case
    CROWD_SPIKE = "crowd_spike"  # over it briefly: must open nothing
    COVER_OPEN = "cover_open"
    COVER_TILTED = "cover_tilted"
    SEWER_BLOCKED = "sewer_blocked"  # water near the cover without rain: 0404
    OUTAGE = "outage"  # the device drops off the network without DISCONNECT, then comes back


@dataclass(frozen=True, slots=True)
class ScenarioConfig:
    """Everything that shapes the scenario besides the devices, the start and the calendar."""

    seed: int = 0
    speed: float = 1.0
    malformed_share: float = 0.01
    # over the gateway's payload limit (4 KiB by default) and under the broker's packet limit (8 KiB): a
    # message the broker passes on and the gateway dead-letters as too large
    oversized_bytes: int = 4096 + 256
    min_outage_s: float | None = None  # wall-clock silence; None: OUTAGE_MIN_INTERVALS report intervals
    opening: bool = True  # the first scenario hours show one of each incident, for demos

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError("speed must be positive")
        if not 0 <= self.malformed_share < 0.5:
            raise ValueError("malformed share must be at least 0 and below 0.5")


@dataclass(frozen=True, slots=True)
class RainEvent:
    """A convective storm cell moving across the district, or widespread rain (`sigma_m` None)."""

    start: float  # scenario seconds since the start
    end: float
    peak_mm_h: float
    sigma_m: float | None = None  # Gaussian radius of the cell
    x_m: float = 0.0  # where the cell is half-way through its life, metres east of the district centre
    y_m: float = 0.0
    vx_m_s: float = 0.0
    vy_m_s: float = 0.0

    def intensity(self, x: float, y: float, offset: float) -> float:
        """Rain rate in mm/h at a point (metres from the district centre) and scenario offset."""
        if not self.start < offset < self.end:
            return 0.0
        envelope = math.sin(math.pi * (offset - self.start) / (self.end - self.start))
        if self.sigma_m is None:
            return self.peak_mm_h * min(1.0, 3.0 * envelope)
        since_mid = offset - (self.start + self.end) / 2
        dx = x - (self.x_m + self.vx_m_s * since_mid)
        dy = y - (self.y_m + self.vy_m_s * since_mid)
        return self.peak_mm_h * envelope * math.exp(-(dx * dx + dy * dy) / (2 * self.sigma_m**2))


@dataclass(frozen=True, slots=True)
class Incident:
    """An incident at one device, in wall-clock time.

    `peak` is the surge density (persons/m²), the cover's tilt (degrees), or for a blocked sewer how far
    below the cover the water stands (cm); `ramp_s` is how long the surge or the water takes to build.
    """

    kind: IncidentKind
    device_id: str
    start: float
    end: float
    peak: float = 0.0
    ramp_s: float = 0.0

    def shape(self, at: float) -> float:
        """0 outside the incident, rising to 1 over `ramp_s`, holding, and falling back over `ramp_s`."""
        if not self.start <= at < self.end:
            return 0.0
        if self.ramp_s <= 0:
            return 1.0
        return min(1.0, (at - self.start) / self.ramp_s, (self.end - at) / self.ramp_s)


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publish a device makes on its telemetry topic."""

    at: float  # wall-clock epoch seconds when it is sent
    device: Device
    seq: int
    payload: bytes
    defect: Defect | None = None  # None for a well-formed reading
    measured_at: float = 0.0  # differs from `at` for readings buffered through an outage

    @property
    def topic(self) -> str:
        """`gridhub/v1/{kind}/{device_id}/telemetry`, the MQTT topic the device publishes on."""
        return telemetry_topic(self.device)


@dataclass(frozen=True, slots=True)
class ConnectionChange:
    """The device drops off the network without DISCONNECT (`online` False), or comes back."""

    at: float
    device: Device
    online: bool


def telemetry_topic(device: Device) -> str:
    """The device's telemetry topic."""
    return f"gridhub/v1/{device.kind.value}/{device.id}/telemetry"


def status_topic(device: Device) -> str:
    """The device's status topic: retained `online`, and `offline` as its last will."""
    return f"gridhub/v1/{device.kind.value}/{device.id}/status"


def base_rate(devices: Sequence[Device]) -> float:
    """Readings per second the devices send at speed 1: one per registered report interval each."""
    return sum(1.0 / d.report_interval_s for d in devices)


def speed_for_rate(devices: Sequence[Device], messages_per_s: float) -> float:
    """The speed at which the devices send about `messages_per_s` readings per second."""
    if not messages_per_s > 0:
        raise ValueError("the message rate must be positive")
    return messages_per_s / base_rate(devices)


def select_devices(devices: Sequence[Device], count: int) -> list[Device]:
    """A subset of `count` devices that keeps the fleet's mix of kinds, in registry order."""
    by_kind: dict[DeviceKind, list[Device]] = {}
    for device in devices:
        by_kind.setdefault(device.kind, []).append(device)
    ranked = sorted(
        ((i + 0.5) / len(group), kind_index, device.id)
        for kind_index, group in enumerate(by_kind.values())
        for i, device in enumerate(group)
    )
    chosen = {device_id for _, _, device_id in ranked[:count]}
    return [device for device in devices if device.id in chosen]


class Scenario:
    """The world the fleet measures: rain events, crowds, incidents, batteries and message defects."""

    def __init__(
        self,
        devices: Sequence[Device],
        config: ScenarioConfig,
        start: float,
        tz: tzinfo = SHANGHAI,
        is_workday: Callable[[date], bool] = lambda day: day.weekday() < 5,
    ) -> None:
        if not devices:
            raise ValueError("a scenario needs at least one device")
        self.devices = tuple(sorted(devices, key=lambda d: d.id))
        self.config = config
        self.start = start
        self.tz = tz
        self._is_workday = is_workday
        self._workdays: dict[date, bool] = {}
        lon0 = sum(d.lon for d in self.devices) / len(self.devices)
        lat0 = sum(d.lat for d in self.devices) / len(self.devices)
        metres_per_lon = 111_320.0 * math.cos(math.radians(lat0))
        self._xy = {d.id: ((d.lon - lon0) * metres_per_lon, (d.lat - lat0) * 110_574.0) for d in self.devices}
        self._rain_blocks: dict[int, tuple[RainEvent, ...]] = {}
        self._incident_blocks: dict[int, tuple[Incident, ...]] = {}
        self._low_battery = self._pick_low_battery()

    # --- time ---------------------------------------------------------------------------------------

    def offset(self, wall: float) -> float:
        """Scenario seconds since the start at a wall-clock moment."""
        return (wall - self.start) * self.config.speed

    def wall(self, offset: float) -> float:
        """The wall-clock moment of a scenario offset."""
        return self.start + offset / self.config.speed

    def local_time(self, offset: float) -> datetime:
        """Scenario time at an offset, in the city's time zone (what crowds and daylight follow)."""
        return datetime.fromtimestamp(self.start + offset, self.tz)

    def is_workday(self, day: date) -> bool:
        """Whether people go to work that day (official calendar with 调休, when the city gives one)."""
        known = self._workdays.get(day)
        if known is None:
            known = self._workdays[day] = self._is_workday(day)
        return known

    # --- rain ---------------------------------------------------------------------------------------

    def rain_events(self, block: int) -> tuple[RainEvent, ...]:
        """Rain events that start in a block of scenario time (none before the start)."""
        if block < 0:
            return ()
        cached = self._rain_blocks.get(block)
        if cached is None:
            cached = self._rain_blocks[block] = self._generate_rain(block)
            _forget_old(self._rain_blocks, block)
        return cached

    def rain_between(self, offset_from: float, offset_to: float) -> list[RainEvent]:
        """Rain events active at some moment between two scenario offsets."""
        first = _block_of(offset_from - RAIN_LOOKBACK_S)
        return [
            event
            for block in range(first, _block_of(offset_to) + 1)
            for event in self.rain_events(block)
            if event.start < offset_to and event.end > offset_from
        ]

    def rain_intensity(self, device: Device, offset: float) -> float:
        """Rain rate in mm/h over the device at a scenario offset."""
        x, y = self._xy[device.id]
        return sum(event.intensity(x, y, offset) for event in self.rain_between(offset, offset))

    def rainfall_mm(self, device: Device, offset_from: float, offset_to: float) -> float:
        """Rain in mm that falls on the device between two scenario offsets (trapezoid rule)."""
        events = self.rain_between(offset_from, offset_to)
        if not events or offset_to <= offset_from:
            return 0.0
        x, y = self._xy[device.id]
        steps = max(1, math.ceil((offset_to - offset_from) / MAX_STEP_S))
        width = (offset_to - offset_from) / steps
        rates = [sum(e.intensity(x, y, offset_from + i * width) for e in events) for i in range(steps + 1)]
        return (sum(rates) - (rates[0] + rates[-1]) / 2) * width / 3600

    def _generate_rain(self, block: int) -> tuple[RainEvent, ...]:
        rng = random.Random(f"{self.config.seed}:rain:{block}")
        events = []
        if block == 0 and self.config.opening:
            # A slow, heavy cell that reaches the district within the first hour: ≥ 20 mm within the hour.
            events.append(_storm(start=0, lifetime=9000, peak=80, sigma=2500, speed=3.0, heading=0.3,
                                 miss_m=200))
        for _ in range(_poisson(rng, STORMS_PER_DAY * BLOCK_S / DAY_S)):
            events.append(_storm(
                start=block * BLOCK_S + rng.uniform(0, BLOCK_S),
                lifetime=rng.uniform(1.5, 4) * 3600,
                peak=min(120.0, 10 + rng.expovariate(1 / 30)),
                sigma=rng.uniform(1200, 3500),
                speed=rng.uniform(1.5, 7),
                heading=rng.gauss(0.0, 0.6),  # mostly west to east
                miss_m=rng.uniform(-1500, 1500),
            ))
        for _ in range(_poisson(rng, STRATIFORM_PER_DAY * BLOCK_S / DAY_S)):
            start = block * BLOCK_S + rng.uniform(0, BLOCK_S)
            events.append(RainEvent(start, start + rng.uniform(4, 12) * 3600, rng.uniform(2, 8)))
        return tuple(sorted(events, key=lambda e: e.start))

    # --- incidents ----------------------------------------------------------------------------------

    def incidents(self, block: int) -> tuple[Incident, ...]:
        """Incidents whose scenario start falls in a block, in order of wall-clock start."""
        if block < 0:
            return ()
        cached = self._incident_blocks.get(block)
        if cached is None:
            cached = self._incident_blocks[block] = self._generate_incidents(block)
            _forget_old(self._incident_blocks, block)
        return cached

    def incidents_between(self, wall_from: float, wall_to: float) -> list[Incident]:
        """Incidents that start between two wall-clock moments."""
        return [
            incident
            for block in range(_block_of(self.offset(wall_from)), _block_of(self.offset(wall_to)) + 1)
            for incident in self.incidents(block)
            if wall_from <= incident.start < wall_to
        ]

    def _generate_incidents(self, block: int) -> tuple[Incident, ...]:
        rng = random.Random(f"{self.config.seed}:incidents:{block}")
        crowds = [d for d in self.devices if d.kind is DeviceKind.CROWD]
        wells = [d for d in self.devices if d.kind is DeviceKind.MANHOLE]
        share = BLOCK_S / DAY_S
        found: list[Incident] = []

        def when() -> float:
            return block * BLOCK_S + rng.uniform(0, BLOCK_S)

        if block == 0 and self.config.opening:
            # One of each early on, so that a demo shows every kind of case within minutes.
            if wells:
                found.append(self._cover(rng.choice(wells), 120, 40 * 60, IncidentKind.COVER_OPEN, 85.0))
                sewer = self._sewer(rng.choice(wells), 300, 40 * 60, 12.0)
                if sewer is not None:
                    found.append(sewer)
            found.append(self._outage(rng.choice(self.devices), 180, 10 * 60))
            if crowds:
                found.append(self._surge(rng.choice(crowds), 480, peak=4.6, ramp_s=40, plateau_s=240))
        for _ in range(_poisson(rng, SURGES_PER_COUNTER_DAY * len(crowds) * share) if crowds else 0):
            device, start = rng.choice(crowds), when()
            peak = rng.uniform(2.4, 3.6) if rng.random() < 0.65 else rng.uniform(4.4, 6.0)
            if rng.random() < 0.25:
                found.append(self._surge(device, start, peak, ramp_s=rng.uniform(10, 20),
                                         plateau_s=rng.uniform(20, 50)))
            else:
                found.append(self._surge(device, start, peak, ramp_s=rng.uniform(30, 60),
                                         plateau_s=rng.uniform(150, 420)))
        for _ in range(_poisson(rng, COVER_INCIDENTS_PER_WELL_DAY * len(wells) * share) if wells else 0):
            device, start, duration = rng.choice(wells), when(), rng.uniform(15, 120) * 60
            if rng.random() < 0.4:
                found.append(self._cover(device, start, duration, IncidentKind.COVER_OPEN, rng.uniform(50, 90)))
            else:
                found.append(self._cover(device, start, duration, IncidentKind.COVER_TILTED,
                                         rng.uniform(15.5, 40)))
        for _ in range(_poisson(rng, BLOCKED_SEWERS_PER_WELL_DAY * len(wells) * share) if wells else 0):
            sewer = self._sewer(rng.choice(wells), when(), rng.uniform(1, 4) * 3600, rng.uniform(5, 25))
            if sewer is not None:
                found.append(sewer)
        for _ in range(_poisson(rng, OUTAGES_PER_DEVICE_DAY * len(self.devices) * share)):
            found.append(self._outage(rng.choice(self.devices), when(), rng.uniform(10, 90) * 60))
        return tuple(sorted(found, key=lambda i: (i.start, i.device_id)))

    def _surge(self, device: Device, offset: float, peak: float, ramp_s: float, plateau_s: float) -> Incident:
        start = self.wall(offset)
        kind = IncidentKind.CROWD_SURGE if plateau_s >= 120 else IncidentKind.CROWD_SPIKE
        return Incident(kind, device.id, start, start + 2 * ramp_s + plateau_s, peak, ramp_s)

    def _cover(self, device: Device, offset: float, duration: float, kind: IncidentKind, tilt: float) -> Incident:
        start = self.wall(offset)
        return Incident(kind, device.id, start, start + duration / self.config.speed, tilt)

    def _sewer(self, device: Device, offset: float, duration: float, gap_cm: float) -> Incident | None:
        """A blocked sewer, unless it rained over the well within the 6 h before the water comes up.

        The stream rule looks back 6 h of event time, which is wall-clock time, so sped up the well must
        have stayed dry for `speed` times as much scenario time."""
        rise = duration / 4
        lookback = SEWER_DRY_LOOKBACK_S * max(1.0, self.config.speed)
        if not self._dry(device, offset + rise - lookback, offset + rise):
            return None
        start = self.wall(offset)
        return Incident(IncidentKind.SEWER_BLOCKED, device.id, start, start + duration / self.config.speed,
                        gap_cm, rise / self.config.speed)

    def _dry(self, device: Device, offset_from: float, offset_to: float) -> bool:
        """Less than half a bucket tip of rain over the device between two offsets. It searches back from
        the latest rain, so it stops at the first shower instead of generating weeks of weather."""
        x, y = self._xy[device.id]
        offset_from = max(0.0, offset_from)  # the scenario starts dry
        fallen_mm = 0.0
        for block in range(_block_of(offset_to), _block_of(offset_from - RAIN_LOOKBACK_S) - 1, -1):
            for event in self.rain_events(block):
                moment, until = max(event.start, offset_from), min(event.end, offset_to)
                while moment < until:
                    fallen_mm += event.intensity(x, y, moment) * DRY_STEP_S / 3600
                    if fallen_mm >= TIP_MM / 2:
                        return False
                    moment += DRY_STEP_S
        return True

    def _outage(self, device: Device, offset: float, duration: float) -> Incident:
        floor = self.config.min_outage_s
        if floor is None:
            floor = OUTAGE_MIN_INTERVALS * device.report_interval_s
        start = self.wall(offset)
        return Incident(IncidentKind.OUTAGE, device.id, start, start + max(duration / self.config.speed, floor))

    # --- batteries ----------------------------------------------------------------------------------

    def _pick_low_battery(self) -> frozenset[str]:
        powered = [d.id for d in self.devices if d.battery_floor_v is not None]
        rng = random.Random(f"{self.config.seed}:low-battery")
        if not powered:
            return frozenset()
        return frozenset(rng.sample(powered, max(1, round(LOW_BATTERY_SHARE * len(powered)))))

    def battery(self, device: Device) -> tuple[float, float] | None:
        """(volts at the start, volts lost per scenario day), or None for mains-powered devices."""
        if device.battery_floor_v is None:
            return None
        rng = random.Random(f"{self.config.seed}:battery:{device.id}")
        if device.id in self._low_battery:
            return device.battery_floor_v - rng.uniform(0.02, 0.12), rng.uniform(0.002, 0.01)
        return device.battery_floor_v + rng.uniform(0.15, 0.55), rng.uniform(0.002, 0.01)

    # --- devices ------------------------------------------------------------------------------------

    def script(self, device: Device) -> Iterator[Message | ConnectionChange]:
        """Everything the device does, in wall-clock order, forever."""
        return _MODELS[device.kind](self, device).run()


def _storm(start: float, lifetime: float, peak: float, sigma: float, speed: float, heading: float,
           miss_m: float) -> RainEvent:
    """A cell that moves along `heading` (radians from east) and passes `miss_m` beside the centre."""
    return RainEvent(start, start + lifetime, peak, sigma,
                     x_m=-miss_m * math.sin(heading), y_m=miss_m * math.cos(heading),
                     vx_m_s=speed * math.cos(heading), vy_m_s=speed * math.sin(heading))


def _block_of(offset: float) -> int:
    return math.floor(offset / BLOCK_S)


def _forget_old(cache: dict[int, Any], latest: int) -> None:
    """Keep memory bounded on long runs; forgotten blocks are regenerated identically if asked again."""
    for block in [b for b in cache if b < latest - 8]:
        del cache[block]


def _poisson(rng: random.Random, mean: float) -> int:
    threshold, count, product = math.exp(-mean), 0, rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-((hour - centre) ** 2) / (2 * width * width))


def crowd_rhythm(hour: float, workday: bool) -> float:
    """Share of a zone's usual evening peak present at a local hour: commuter peaks on working days,
    a late, broad day on weekends and holidays, the evening busiest on both."""
    if workday:
        return (0.03 + 0.45 * _bump(hour, 8.3, 0.8) + 0.35 * _bump(hour, 12.3, 1.0)
                + 0.25 * _bump(hour, 15.0, 2.0) + 1.0 * _bump(hour, 19.2, 1.6))
    return (0.05 + 0.55 * _bump(hour, 11.5, 2.5) + 0.6 * _bump(hour, 15.5, 2.2)
            + 1.1 * _bump(hour, 20.0, 1.8) + 0.25 * _bump(hour, 24.0, 1.2))



class _DeviceModel(ABC):
    """Common to every kind: the report clock, sequence numbers, timestamps, battery, defects, outages."""

    def __init__(self, scenario: Scenario, device: Device) -> None:
        self.scenario = scenario
        self.device = device
        self.rng = random.Random(f"{scenario.config.seed}:device:{device.id}")
        # A device keeps counting across restarts of its firmware; the start time in ms stands in for
        # the counter it would have persisted, so a second run never reuses a (device, seq) pair.
        self.seq = int(scenario.start * 1000)
        self.epoch_ts = self.rng.random() < 0.5
        self.battery = scenario.battery(device)
        self.ongoing: list[Incident] = []  # this device's incidents, pruned once over
        self.outages: deque[Incident] = deque()
        self.scanned_block = -1
        self.last_outage_end = -math.inf

    @abstractmethod
    def measure(self, offset_from: float, offset_to: float, at: float) -> dict[str, object]:
        """The kind-specific readings over one report interval of scenario time, sent at `at`."""

    def run(self) -> Iterator[Message | ConnectionChange]:
        """Report every interval; drop off and come back for outages; add the odd malformed message."""
        scenario, device = self.scenario, self.device
        interval_wall = device.report_interval_s / scenario.config.speed
        first = scenario.start + self.rng.uniform(0, interval_wall)
        malformed_p = scenario.config.malformed_share / (1 - scenario.config.malformed_share)
        outage: Incident | None = None  # the one the device is in
        buffered: list[Message] = []
        for k in itertools.count():
            at = first + k * interval_wall
            self._scan(at)
            while True:
                if outage is None and self.outages and self.outages[0].start <= at:
                    outage = self.outages.popleft()
                    yield ConnectionChange(outage.start, device, False)
                elif outage is not None and outage.end <= at:
                    yield ConnectionChange(outage.end, device, True)
                    yield from (replace(message, at=outage.end) for message in buffered)
                    buffered.clear()
                    outage = None
                else:
                    break
            offset = scenario.offset(at)
            readings = self.measure(offset - device.report_interval_s, offset, at)
            if outage is not None:
                if device.kind is DeviceKind.RAIN:  # gauges log to flash and upload after the outage
                    buffered.append(self._message(at, readings))
                continue
            if self.rng.random() < malformed_p:
                yield self._malformed(at, readings)
            yield self._message(at, readings)

    def _scan(self, at: float) -> None:
        """Pick up this device's incidents from every block of scenario time that has begun by `at`."""
        latest = _block_of(self.scenario.offset(at))
        while self.scanned_block < latest:
            self.scanned_block += 1
            for incident in self.scenario.incidents(self.scanned_block):
                if incident.device_id != self.device.id:
                    continue
                if incident.kind is not IncidentKind.OUTAGE:
                    self.ongoing.append(incident)
                elif incident.start >= self.last_outage_end:  # one outage at a time
                    self.outages.append(incident)
                    self.last_outage_end = incident.end
        self.ongoing = [incident for incident in self.ongoing if incident.end > at]

    def _active(self, at: float) -> list[Incident]:
        return [incident for incident in self.ongoing if incident.start <= at < incident.end]

    def _body(self, at: float, readings: dict[str, object]) -> dict[str, object]:
        self.seq += 1
        ts: object = round(at, 3) if self.epoch_ts else (
            datetime.fromtimestamp(at, self.scenario.tz).isoformat(timespec="milliseconds"))
        body: dict[str, object] = {"ts": ts, "seq": self.seq, **readings}
        if self.battery is not None:
            volts, per_day = self.battery
            body["battery_v"] = round(volts - per_day * self.scenario.offset(at) / DAY_S, 3)
        return body

    def _message(self, at: float, readings: dict[str, object]) -> Message:
        body = self._body(at, readings)
        return Message(at, self.device, self.seq, orjson.dumps(body), None, at)

    def _malformed(self, at: float, readings: dict[str, object]) -> Message:
        body = self._body(at, readings)
        defect = self.rng.choice(list(Defect))
        name = next(iter(readings))
        if defect is Defect.INVALID_JSON:
            text = orjson.dumps(body)
            payload = text[: self.rng.randrange(1, len(text) - 1)]  # every proper prefix of an object is invalid
        elif defect is Defect.OUT_OF_RANGE:
            if self.rng.random() < 0.5:
                body[name] = {"rain_mm": 999.0, "count": -5, "tilt_deg": 400.0, "water_level_cm": -50.0}[name]
            else:
                body["ts"] = round(at + DAY_S, 3)  # a clock that jumped a day ahead
            payload = orjson.dumps(body)
        elif defect is Defect.MISSING_FIELD:
            del body[self.rng.choice(["ts", "seq", name])]
            payload = orjson.dumps(body)
        elif defect is Defect.WRONG_TYPE:
            body[self.rng.choice(["seq", name])] = self.rng.choice([None, "n/a", [1, 2], {"value": 1}])
            payload = orjson.dumps(body)
        elif defect is Defect.NOT_UTF8:
            payload = orjson.dumps(body).replace(b'"ts"', b'"t\xff\xfe"')
        else:
            body["debug"] = "x" * self.scenario.config.oversized_bytes
            payload = orjson.dumps(body)
        return Message(at, self.device, self.seq, payload, defect, at)


class _RainGauge(_DeviceModel):
    """A tipping-bucket gauge: reports whole 0.2 mm tips since its previous report."""

    def __init__(self, scenario: Scenario, device: Device) -> None:
        super().__init__(scenario, device)
        self.catch = self.rng.uniform(0.96, 1.04)  # gauges of one make agree within a few per cent
        self.caught_um = 0
        self.reported_tips = 0

    def measure(self, offset_from: float, offset_to: float, at: float) -> dict[str, object]:
        """Tips since the previous report, in mm."""
        self.caught_um += round(1000 * self.catch * self.scenario.rainfall_mm(self.device, offset_from, offset_to))
        tips = self.caught_um // TIP_UM - self.reported_tips
        self.reported_tips += tips
        return {"rain_mm": round(tips * TIP_MM, 1)}


class _CrowdCounter(_DeviceModel):
    """A people counter over a zone: the city's daily rhythm scaled to the zone, plus surges."""

    def __init__(self, scenario: Scenario, device: Device) -> None:
        super().__init__(scenario, device)
        self.area = device.zone_area_m2 or 1.0
        self.peak_density = self.rng.uniform(0.3, 0.9) * (600 / self.area) ** 0.2  # small zones are denser

    def measure(self, offset_from: float, offset_to: float, at: float) -> dict[str, object]:
        """People in the zone now."""
        local = self.scenario.local_time(offset_to)
        hour = local.hour + local.minute / 60 + local.second / 3600
        rhythm = crowd_rhythm(hour, self.scenario.is_workday(local.date()))
        density = min(CROWD_BASELINE_CAP, self.peak_density * rhythm * self.rng.gauss(1.0, 0.08))
        for surge in self._active(at):
            share = surge.shape(at)
            density = max(density, surge.peak * share + density * (1 - share))
        return {"count": max(0, round(density * self.area))}


class _ManholeSensor(_DeviceModel):
    """A cover sensor: tilt, open switch and the water level in the well, which follows the rain."""

    def __init__(self, scenario: Scenario, device: Device) -> None:
        super().__init__(scenario, device)
        self.depth = device.well_depth_cm or 100.0
        self.base_cm = self.rng.uniform(5, min(40, 0.2 * self.depth))
        self.susceptibility = self.rng.uniform(0.3, 1.3)  # low-lying wells on small pipes fill first
        self.tilt_deg = self.rng.uniform(0.2, 3.0)
        self.smoothed_mm_h = 0.0

    def measure(self, offset_from: float, offset_to: float, at: float) -> dict[str, object]:
        """Tilt, open switch, and water depth from the well bottom."""
        span = offset_to - offset_from
        mean_mm_h = self.scenario.rainfall_mm(self.device, offset_from, offset_to) * 3600 / span
        keep = math.exp(-span / WATER_RESPONSE_S)
        self.smoothed_mm_h = self.smoothed_mm_h * keep + mean_mm_h * (1 - keep)
        filled = min(1.0, self.susceptibility * self.smoothed_mm_h / (self.smoothed_mm_h + WATER_HALF_MM_H))
        level = self.base_cm + (self.depth - self.base_cm) * filled + self.rng.gauss(0, 0.8)
        tilt = abs(self.tilt_deg + self.rng.gauss(0, 0.2))
        cover_open = False
        for incident in self._active(at):
            if incident.kind is IncidentKind.SEWER_BLOCKED:
                blocked = self.base_cm + (self.depth - incident.peak - self.base_cm) * incident.shape(at)
                level = max(level, blocked + self.rng.gauss(0, 0.8))
            else:
                tilt = incident.peak + self.rng.gauss(0, 0.5)
                cover_open = incident.kind is IncidentKind.COVER_OPEN
        return {
            "tilt_deg": round(min(max(tilt, 0.0), 180.0), 1),
            "cover_open": cover_open,
            "water_level_cm": round(min(max(level, 0.0), self.depth), 1),
        }


_MODELS: dict[DeviceKind, Callable[[Scenario, Device], _DeviceModel]] = {
    DeviceKind.RAIN: _RainGauge, DeviceKind.CROWD: _CrowdCounter, DeviceKind.MANHOLE: _ManholeSensor,
}
