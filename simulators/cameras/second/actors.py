"""The figures of a timeline: where each one is and what it is doing at any instant.

A `Track` is a list of timed waypoints on the ground; between two the figure moves straight at even speed, and
two equal waypoints in a row keep it standing there. Everything else (a person's gait and pose, a stall being
unpacked, a digger's arm) follows from the time.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from simulators.cameras.second.figures import Look, Pose, StallLook, VehicleLook, excavator_bucket

STRIDE_PER_HEIGHT = 0.82  # a full gait cycle (two steps) covers about 0.82 of a person's height


@dataclass(frozen=True, slots=True)
class Track:
    """Timed waypoints on the ground; the figure exists from the first time to the last."""

    times: tuple[float, ...]
    xs: tuple[float, ...]
    ys: tuple[float, ...]

    @classmethod
    def of(cls, times: list[float], points: list[tuple[float, float]]) -> Track:
        """A track through these points at these times."""
        return cls(tuple(times), tuple(x for x, _ in points), tuple(y for _, y in points))

    @classmethod
    def through(cls, start_s: float, points: list[tuple[float, float]], speeds: list[float],
                waits: dict[int, float] | None = None) -> Track:
        """A track from `start_s` through `points`, reaching point i at `speeds[i - 1]` m/s and standing there
        `waits[i]` seconds."""
        times, stops = [start_s], [points[0]]
        for index, point in enumerate(points):
            if index > 0:
                times.append(times[-1] + math.dist(stops[-1], point) / speeds[index - 1])
                stops.append(point)
            if waits and index in waits:
                times.append(times[-1] + waits[index])
                stops.append(point)
        return cls.of(times, stops)

    @property
    def start_s(self) -> float:
        """When the figure appears."""
        return self.times[0]

    @property
    def end_s(self) -> float:
        """When it is gone."""
        return self.times[-1]

    def at(self, t_s: float) -> tuple[float, float, float, bool, float]:
        """(x, y, heading, moving, metres walked) at time t, clamped to the track's ends."""
        times = self.times
        index = min(max(bisect.bisect_right(times, t_s) - 1, 0), len(times) - 2) if len(times) > 1 else 0
        if len(times) == 1:
            return self.xs[0], self.ys[0], 0.0, False, 0.0
        t0, t1 = times[index], times[index + 1]
        x0, y0, x1, y1 = self.xs[index], self.ys[index], self.xs[index + 1], self.ys[index + 1]
        share = min(max((t_s - t0) / (t1 - t0), 0.0), 1.0) if t1 > t0 else 1.0
        moving = (x0, y0) != (x1, y1) and t0 <= t_s < t1
        heading = self._heading(index)
        walked = self._walked(index) + share * math.dist((x0, y0), (x1, y1))
        return x0 + share * (x1 - x0), y0 + share * (y1 - y0), heading, moving, walked

    def _heading(self, index: int) -> float:
        """Direction of the nearest segment, at or before `index`, that moves (else after it)."""
        order = list(range(index, -1, -1)) + list(range(index + 1, len(self.times) - 1))
        for i in order:
            dx, dy = self.xs[i + 1] - self.xs[i], self.ys[i + 1] - self.ys[i]
            if dx or dy:
                return math.atan2(dy, dx)
        return 0.0

    def _walked(self, index: int) -> float:
        return sum(math.dist((self.xs[i], self.ys[i]), (self.xs[i + 1], self.ys[i + 1])) for i in range(index))


@dataclass(frozen=True, slots=True)
class Person:
    """Someone walking, standing, talking or sitting."""

    look: Look
    track: Track
    still_heading: float | None = None  # faces this way when standing still
    seat_m: float | None = None  # sits when still, on a seat this high
    talks: bool = False
    carrying: tuple[tuple[float, float], ...] = ()  # carries a bundle during these intervals
    bundle: tuple[int, int, int] = (60, 90, 160)

    @property
    def start_s(self) -> float:
        """When they appear."""
        return self.track.start_s

    @property
    def end_s(self) -> float:
        """When they are gone."""
        return self.track.end_s

    def pose(self, t_s: float) -> Pose:
        """Where they are and how they stand at t."""
        x, y, heading, moving, walked = self.track.at(t_s)
        carrying = any(a <= t_s < b for a, b in self.carrying)
        if moving:
            phase = 2 * math.pi * walked / (STRIDE_PER_HEIGHT * self.look.height_m)
            return Pose(x, y, heading, phase, carrying=self.bundle if carrying else None)
        facing = self.still_heading if self.still_heading is not None else heading
        gesture = 0.5 + 0.5 * math.sin(t_s * 2.1 + x) if self.talks and math.sin(t_s * 0.4 + y) > 0 else 0.0
        seat = None if carrying else self.seat_m
        return Pose(x, y, facing + 0.08 * math.sin(t_s * 0.3 + x), None, seat, gesture,
                    self.bundle if carrying else None)


@dataclass(frozen=True, slots=True)
class Stall:
    """A street stall: it comes (pushed, carried, or box by box from a shop), stands, and goes."""

    look: StallLook
    x: float
    y: float
    heading: float
    arrive_s: float  # appears (a cart at the frame's edge; a carried stall is in the vendor's hands until stop_s)
    stop_s: float  # stands still at its spot: the truth's start
    leave_s: float  # starts to pack or move off: the truth's end
    end_s: float  # gone
    setup_s: float  # unpacking after stop_s and packing after leave_s (0 for a cart)
    cart_track: Track | None  # a pushed cart's way in and out
    zone_id: str | None  # the vending zone holding its box's bottom centre, if any
    box: tuple[float, float, float, float]  # its image box while it stands

    @property
    def start_s(self) -> float:
        """When it first shows."""
        return self.arrive_s if self.cart_track is not None else self.stop_s

    def state(self, t_s: float) -> tuple[float, float, float, float] | None:
        """(x, y, heading, how far unpacked 0-1) at t, or None while it is carried or gone."""
        if self.cart_track is not None:
            if not self.cart_track.start_s <= t_s < self.cart_track.end_s:
                return None
            x, y, heading, moving, _ = self.cart_track.at(t_s)
            return x, y, (heading if moving else self.heading), 1.0
        if not self.stop_s <= t_s < self.leave_s + self.setup_s:
            return None
        if t_s < self.stop_s + self.setup_s:
            return self.x, self.y, self.heading, (t_s - self.stop_s) / self.setup_s
        if t_s >= self.leave_s:
            return self.x, self.y, self.heading, 1.0 - (t_s - self.leave_s) / self.setup_s
        return self.x, self.y, self.heading, 1.0


@dataclass(frozen=True, slots=True)
class Vehicle:
    """A car, van, scooter or truck driving by, or parking for a while."""

    look: VehicleLook
    track: Track
    rider: Look | None = None
    parked: tuple[float, float] | None = None  # (stopped, pulls out) if it parks
    zone_id: str | None = None  # the zone holding its box's bottom centre while parked, if any

    @property
    def start_s(self) -> float:
        """When it enters."""
        return self.track.start_s

    @property
    def end_s(self) -> float:
        """When it has left."""
        return self.track.end_s


@dataclass(frozen=True, slots=True)
class Digger:
    """A tracked excavator working in one place: dig, swing, dump, swing back, every `period_s`."""

    x: float
    y: float
    heading: float
    colour: tuple[int, int, int]
    period_s: float
    offset_s: float
    dump_swing: float  # radians the arm swings to dump

    start_s = -math.inf
    end_s = math.inf

    def arm(self, t_s: float) -> tuple[float, float]:
        """(swing, lift) of the arm at t."""
        u = ((t_s + self.offset_s) / self.period_s) % 1.0
        if u < 0.35:  # digging: bucket down and back up a little
            return 0.0, 0.25 + 0.25 * math.cos(u / 0.35 * 2 * math.pi)
        if u < 0.55:
            share = (u - 0.35) / 0.2
            return self.dump_swing * (0.5 - 0.5 * math.cos(share * math.pi)), 0.5 + 0.5 * share
        if u < 0.7:
            return self.dump_swing, 1.0
        share = (u - 0.7) / 0.3
        return self.dump_swing * (0.5 + 0.5 * math.cos(share * math.pi)), 1.0 - 0.5 * share

    def dumps(self, start_s: float, end_s: float) -> list[float]:
        """The moments the bucket empties between these times."""
        cycle = math.ceil((start_s + self.offset_s) / self.period_s - 0.6)
        times = []
        while (t := (cycle + 0.6) * self.period_s - self.offset_s) < end_s:
            times.append(t)
            cycle += 1
        return times

    def dump_point(self) -> tuple[float, float, float]:
        """Where the dust of a dump rises from."""
        return excavator_bucket(self.x, self.y, self.heading, self.dump_swing, 1.0)
