"""What moves in a scene, and where each thing is at any moment (closed form, so any frame renders on its own)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

Colour = tuple[int, int, int]  # BGR
Point = tuple[float, float]  # a ground point (X, Z) in metres


def _lerp(a: Point, b: Point, share: float) -> Point:
    return a[0] + (b[0] - a[0]) * share, a[1] + (b[1] - a[1]) * share


def _distance(a: Point, b: Point) -> float:
    return math.hypot(b[0] - a[0], b[1] - a[1])


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


@dataclass(frozen=True, slots=True)
class Look:
    """How a person looks: size and clothing."""

    height_m: float
    build: float  # shoulder width as a share of the height
    shirt: Colour
    trousers: Colour
    skin: Colour
    hair: Colour
    hat: Colour | None = None  # a hard hat on construction sites
    vest: Colour | None = None  # a high-visibility vest


@dataclass(frozen=True, slots=True)
class Pose:
    """Where a person stands and how far through a stride they are (None while standing)."""

    ground: Point
    stride_phase: float | None


@dataclass(frozen=True, slots=True)
class Pedestrian:
    """Someone crossing the view in a straight line, perhaps pausing once on the way."""

    start_s: float
    origin: Point
    destination: Point
    speed_mps: float
    look: Look
    pause_at: float = 0.0  # share of the way at which they stop
    pause_s: float = 0.0

    @property
    def end_s(self) -> float:
        """When they leave the view."""
        return self.start_s + _distance(self.origin, self.destination) / self.speed_mps + self.pause_s

    def pose(self, t_s: float) -> Pose:
        """Their position and stride at time t (seconds from the scene's start)."""
        length = _distance(self.origin, self.destination)
        elapsed = t_s - self.start_s
        reach_pause_s = self.pause_at * length / self.speed_mps
        if reach_pause_s < elapsed <= reach_pause_s + self.pause_s:
            return Pose(_lerp(self.origin, self.destination, self.pause_at), None)
        walked = self.speed_mps * (elapsed if elapsed <= reach_pause_s else elapsed - self.pause_s)
        stride_m = 0.75 * self.look.height_m
        return Pose(_lerp(self.origin, self.destination, min(max(walked / length, 0.0), 1.0)), walked / stride_m)


class StallShape(StrEnum):
    """The kinds of street stall: a folding table, a table under a parasol, a tricycle cart."""

    TABLE = "table"
    UMBRELLA = "umbrella"
    CART = "cart"


@dataclass(frozen=True, slots=True)
class Stall:
    """A vendor's stall: wheeled in from `origin`, set up at `spot`, then wheeled off to `exit`.

    `zone_id` is the vending zone that holds the spot's image point, or None for a stall outside every zone.
    """

    arrive_s: float
    stop_s: float  # stationary from here ...
    leave_s: float  # ... until here
    origin: Point
    spot: Point
    exit: Point
    shape: StallShape
    width_m: float
    height_m: float  # the top of the stall (the table, the cart's canopy or the parasol)
    body: Colour
    trim: Colour
    goods: tuple[Colour, ...]
    vendor: Look
    zone_id: str | None

    @property
    def end_s(self) -> float:
        """When the stall has left the view."""
        return self.leave_s + _distance(self.spot, self.exit) / max(self._speed, 1e-6)

    @property
    def _speed(self) -> float:
        return _distance(self.origin, self.spot) / max(self.stop_s - self.arrive_s, 1e-6)

    def position(self, t_s: float) -> tuple[Point, bool]:
        """Where the stall is at time t, and whether it is moving."""
        if t_s < self.stop_s:
            share = (t_s - self.arrive_s) / max(self.stop_s - self.arrive_s, 1e-6)
            return _lerp(self.origin, self.spot, share), True
        if t_s < self.leave_s:
            return self.spot, False
        share = (t_s - self.leave_s) * self._speed / max(_distance(self.spot, self.exit), 1e-6)
        return _lerp(self.spot, self.exit, min(share, 1.0)), True


@dataclass(frozen=True, slots=True)
class Plume:
    """A dust plume raised at `source`: it thickens, drifts with the wind while it grows, then settles.

    Its opacity follows a smooth rise, a hold and a smooth fade; it counts as visible while the opacity is at
    least half its peak. `zone_id` is the construction zone under its source, or None outside every zone.
    """

    start_s: float
    rise_s: float
    hold_s: float
    fade_s: float
    source: Point
    wind_mps: Point
    radius_m: float  # at the start
    growth_mps: float
    peak_alpha: float
    colour: Colour
    texture: int  # which noise pattern gives it its billows
    zone_id: str | None

    @property
    def end_s(self) -> float:
        """When the plume has settled completely."""
        return self.start_s + self.rise_s + self.hold_s + self.fade_s

    @property
    def visible_s(self) -> tuple[float, float]:
        """The interval during which the plume is at least half as opaque as at its peak."""
        return self.start_s + self.rise_s / 2, self.start_s + self.rise_s + self.hold_s + self.fade_s / 2

    def opacity(self, t_s: float) -> float:
        """The plume's peak opacity at time t (0 before and after it)."""
        age = t_s - self.start_s
        if age < self.rise_s:
            return self.peak_alpha * _smoothstep(age / self.rise_s)
        fading = age - self.rise_s - self.hold_s
        return self.peak_alpha * (1 - _smoothstep(fading / self.fade_s)) if fading > 0 else self.peak_alpha

    def centre(self, t_s: float) -> Point:
        """Where the foot of the plume has drifted to by time t."""
        age = min(max(t_s - self.start_s, 0.0), self.end_s - self.start_s)
        return self.source[0] + self.wind_mps[0] * age, self.source[1] + self.wind_mps[1] * age

    def radius(self, t_s: float) -> float:
        """The plume's radius in metres at time t."""
        return self.radius_m + self.growth_mps * max(t_s - self.start_s, 0.0)


class LightKind(StrEnum):
    """Sudden changes of light: a cloud's shadow sweeping over, or the exposure jumping (lights, auto-iris)."""

    CLOUD = "cloud"
    EXPOSURE = "exposure"


@dataclass(frozen=True, slots=True)
class LightEvent:
    """A sudden change of light that ramps in within seconds, holds, then ramps out."""

    kind: LightKind
    start_s: float
    duration_s: float
    ramp_s: float
    gain: float  # multiplies the light at full strength
    centre: Point  # clouds: where the shadow is at the start, as shares of the frame
    velocity: Point  # clouds: frame shares per second
    radius: float  # clouds: radius as a share of the frame width

    @property
    def end_s(self) -> float:
        """When the light is back to normal."""
        return self.start_s + self.duration_s

    def strength(self, t_s: float) -> float:
        """0 before and after the event, 1 at full strength."""
        age = t_s - self.start_s
        return _smoothstep(age / self.ramp_s) * (1 - _smoothstep((age - self.duration_s + self.ramp_s) / self.ramp_s))
