"""Who and what appears when: the scene's timeline, planned in 15-minute epochs drawn from the seed.

Each epoch is drawn from its own random stream (seed, epoch, kind of actor), so an endless live scene plans
its future lazily and any epoch comes out the same however the scene got there. Actors may run on into the
next epoch; nothing lasts longer than an epoch, so a frame only ever needs the current and the previous one.

On top of the seed's random events a scene may have cued ones (`first_event_s`, `event_every_s`): at each cue a
stall stops in a vending zone and a heavy plume rises over a construction zone (the zones take turns), each
lasting a little past its dwell time, from streams of their own. Without cues nothing here changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from domain.registry import Zone, ZoneKind
from simulators.cameras.actors import (
    LightEvent,
    LightKind,
    Look,
    Pedestrian,
    Plume,
    Point,
    Stall,
    StallShape,
)
from simulators.cameras.draw import Box, standing_box
from simulators.cameras.geometry import View
from simulators.cameras.layout import FAR_M, Layout, hsv_colour
from simulators.cameras.spec import SceneKind, SceneParams
from simulators.cameras.zones import DUST_DWELL_S, VENDING_KINDS, clear_of, signed_distance

EPOCH_S = 900.0
ZONE_MARGIN = 12.0 / 360  # stalls and plumes keep this share of the frame height from zone edges, inside or out
DWELL_MARGIN_S = 15.0  # stays are this much longer or shorter than the dwell time, never borderline
PLUME_PEAK_ALPHA = (0.55, 0.9)  # a plume worth a 0302 case is dense at its core; fainter ones no one could see
# Cued plumes are the heavy end of that (earthworks in full swing) and near the camera: the dust detector misses
# many plumes that look small in the image, and a cue must be something the demo's detector shows.
HEAVY_PLUME_ALPHA = (0.75, 0.9)
HEAVY_PLUME_RADIUS_M = (7.0, 10.0)
HEAVY_PLUME_MIN_RADIUS = 0.3  # of the frame height, from the moment the plume is visible
PLUME_LIFT = 50  # a plume's colour is at least this much brighter (HSV value) than the bare ground under it
CUED_EXTRA_S = 30.0  # cued stalls and plumes last up to this much longer than the shortest true event
MAX_TRAVEL_M = 25.0  # a stall wheeled in from further than this appears at this distance


@dataclass(frozen=True, slots=True)
class Epoch:
    """Everything that starts within one epoch of the scene."""

    index: int
    pedestrians: tuple[Pedestrian, ...]
    stalls: tuple[Stall, ...]
    plumes: tuple[Plume, ...]
    lights: tuple[LightEvent, ...]


def _person(rng: np.random.Generator, site: bool) -> Look:
    child = rng.random() < 0.08 and not site
    height = float(rng.uniform(1.0, 1.35)) if child else float(np.clip(rng.normal(1.69, 0.08), 1.5, 1.92))
    skin = hsv_colour(rng, (8, 16), (60, 140), (120, 220))
    hat = (0, 215, 255) if site and rng.random() < 0.5 else (
        hsv_colour(rng, (0, 180), (0, 255), (150, 255)) if site else None)
    vest = (hsv_colour(rng, (10, 35), (200, 255), (200, 255)) if site and rng.random() < 0.6 else None)
    return Look(height, float(rng.uniform(0.22, 0.3)), hsv_colour(rng, (0, 180), (20, 230), (50, 240)),
                hsv_colour(rng, (90, 130), (0, 120), (25, 110)), skin, hsv_colour(rng, (0, 20), (0, 80), (10, 60)),
                hat, vest)


class Planner:
    """Plans the epochs of one scene: pedestrians, stalls, dust plumes and sudden light changes."""

    def __init__(self, kind: SceneKind, params: SceneParams, view: View, layout: Layout,
                 zones: tuple[Zone, ...], seed: int) -> None:
        self.kind = kind
        self.params = params
        self.view = view
        self.layout = layout
        self.seed = seed
        self.vending = tuple(z for z in zones if z.kind in VENDING_KINDS)
        self.sites = tuple(z for z in zones if z.kind is ZoneKind.CONSTRUCTION)
        self.nearest_row = view.horizon_y + 0.08 * (view.height - view.horizon_y)
        self.margin_px = ZONE_MARGIN * view.height  # so that zone membership is never a matter of a pixel

    # -- placing things on the visible ground

    def _in_band(self, ground: Point) -> bool:
        q = self.view.street_coords(*ground)[1]
        return 0.5 < ground[1] < FAR_M and self.layout.walk_q[0] <= q <= self.layout.walk_q[1]

    def _exit(self, start: Point, direction: Point, half_width_m: float, height_m: float) -> Point | None:
        """Where an object going from `start` along `direction` leaves sight: off the frame, too far away to
        see, or through a doorway in a façade; None if that takes longer than a walk across the view."""
        steps = np.arange(0.4, MAX_TRAVEL_M * 3, 0.4)
        x_m, z_m = start[0] + direction[0] * steps, start[1] + direction[1] * steps
        view = self.view
        nx, nz = view.across
        q = nx * x_m + nz * z_m
        depth = np.maximum(z_m, 1e-3)
        x = view.width / 2 + view.focal_px * x_m / depth
        y = view.horizon_y + view.focal_px * view.camera_height_m / depth
        ppm = np.maximum(y - view.horizon_y, 0) / view.camera_height_m
        on_screen = (x + half_width_m * ppm > 0) & (x - half_width_m * ppm < view.width) & (
            y - height_m * ppm < view.height)
        in_sight = (z_m > 0.5) & (z_m < FAR_M) & (q >= self.layout.walk_q[0]) & (q <= self.layout.walk_q[1]) & (
            ppm * height_m >= 4) & on_screen
        gone = np.flatnonzero(~in_sight)
        return (float(x_m[gone[0]]), float(z_m[gone[0]])) if gone.size else None

    def _visible_ground(self, rng: np.random.Generator) -> Point | None:
        for _ in range(10):
            x = float(rng.uniform(0, self.view.width))
            y = float(rng.uniform(max(self.nearest_row, 0), self.view.height))
            ground = self.view.to_ground(x, y)
            if self._in_band(ground):
                return ground
        return None

    def _image_point(self, ground: Point) -> tuple[float, float]:
        return self.view.to_image(*ground)

    def _sample_in(self, rng: np.random.Generator, zone: Zone, margin_px: float) -> tuple[float, float] | None:
        xs, ys = zip(*zone.polygon, strict=True)
        for _ in range(40):
            x = float(rng.uniform(min(xs), max(xs)))
            y = float(rng.uniform(max(min(ys), self.nearest_row), max(max(ys), self.nearest_row + 1)))
            if signed_distance(zone, x, y) >= margin_px and 0 <= x < self.view.width and y < self.view.height:
                return x, y
        return None

    # -- people

    def _pedestrians(self, rng: np.random.Generator, begin: float) -> tuple[Pedestrian, ...]:
        count = rng.poisson(self.params.pedestrians_per_min * EPOCH_S / 60)
        people = []
        for start_s in np.sort(rng.uniform(begin, begin + EPOCH_S, count)):
            look = _person(rng, self.kind is SceneKind.CONSTRUCTION)
            middle = self._visible_ground(rng)
            if rng.random() < 0.7:
                sign = 1.0 if rng.random() < 0.5 else -1.0
                wobble = float(rng.normal(0, 0.15))
                ax, az = self.view.axis
                direction = (sign * (ax * math.cos(wobble) - az * math.sin(wobble)),
                             sign * (ax * math.sin(wobble) + az * math.cos(wobble)))
            else:
                angle = float(rng.uniform(0, 2 * math.pi))
                direction = (math.cos(angle), math.sin(angle))
            pause = rng.random() < self.params.pause_share
            pause_at, pause_s = float(rng.uniform(0.2, 0.8)), float(rng.uniform(2, 20))
            speed = float(rng.uniform(0.8, 1.7)) * (0.7 if look.height_m < 1.4 else 1.0)
            if middle is None:
                continue
            ends = [self._exit(middle, (d * direction[0], d * direction[1]), 0.4, look.height_m) for d in (-1, 1)]
            origin, destination = ends
            if origin is None or destination is None:
                continue
            people.append(Pedestrian(float(start_s), origin, destination, speed, look,
                                     pause_at if pause else 0.0, pause_s if pause else 0.0))
        return tuple(people)

    # -- stalls

    def _stall_look(self, rng: np.random.Generator) -> tuple[StallShape, float, float]:
        shape = StallShape(str(rng.choice([s.value for s in StallShape])))
        if shape is StallShape.TABLE:
            return shape, float(rng.uniform(1.2, 2.0)), 1.05
        if shape is StallShape.UMBRELLA:
            return shape, float(rng.uniform(1.8, 2.6)), float(rng.uniform(2.1, 2.5))
        return shape, float(rng.uniform(1.4, 1.9)), float(rng.uniform(1.9, 2.1)) if rng.random() < 0.5 else 1.2

    def _stall(self, rng: np.random.Generator, stop_s: float, stay_s: float, zone: Zone | None,
               others: list[Stall]) -> Stall | None:
        shape, width, height = self._stall_look(rng)
        for _ in range(30):
            if zone is None:
                ground = self._visible_ground(rng)
                if ground is None:
                    continue
                x, y = self._image_point(ground)
                if not clear_of(self.vending, x, y, self.margin_px):
                    continue
            else:
                point = self._sample_in(rng, zone, self.margin_px)
                if point is None or not clear_of(tuple(z for z in self.vending if z is not zone), *point,
                                                 self.margin_px):
                    continue
                x, y = point
                ground = self.view.to_ground(x, y)
            box = standing_box(width, height, x, y, self.view.ppm(y))
            if box[0] < 0 or box[0] + box[2] > self.view.width or box[1] < 0 or not self._in_band(ground):
                continue
            if any(_overlaps(box, self.spot_box(other)) for other in others
                   if other.arrive_s < stop_s + stay_s + 60 and stop_s - 60 < other.end_s):
                continue
            routes = [self._exit(ground, d, width / 2 + 0.5, height) for d in self._directions()]
            exits = [r for r in routes if r is not None]
            if not exits:
                continue
            origin, leave_to = exits[int(rng.integers(len(exits)))], exits[int(rng.integers(len(exits)))]
            speed = float(rng.uniform(0.5, 0.9))
            travel = math.hypot(origin[0] - ground[0], origin[1] - ground[1]) / speed
            goods = tuple(hsv_colour(rng, (0, 180), (80, 255), (80, 255)) for _ in range(int(rng.integers(3, 7))))
            return Stall(stop_s - travel, stop_s, stop_s + stay_s, origin, ground, leave_to, shape, width, height,
                         hsv_colour(rng, (0, 180), (60, 255), (90, 250)),
                         hsv_colour(rng, (0, 180), (60, 255), (90, 250)),
                         goods, _person(rng, False), zone.id if zone else None)
        return None

    def spot_box(self, stall: Stall) -> Box:
        """The stall's box in pixels while it stands at its spot."""
        x, y = self._image_point(stall.spot)
        return standing_box(stall.width_m, stall.height_m, x, y, self.view.ppm(y))

    def _directions(self) -> list[Point]:
        ax, az = self.view.axis
        nx, nz = self.view.across
        return [(ax, az), (-ax, -az), (nx, nz), (-nx, -nz)]

    def _stalls(self, rng: np.random.Generator, cued: np.random.Generator, begin: float,
                previous: tuple[Stall, ...]) -> tuple[Stall, ...]:
        p = self.params
        start = max(begin, p.warmup_s)
        kinds: list[tuple[float, str]] = []
        for rate, label in ((p.stalls_per_hour, "long"), (p.short_stalls_per_hour, "short"),
                            (p.outside_stalls_per_hour, "outside")):
            kinds += [(t, label) for t in _arrivals(rng, rate, start, begin + EPOCH_S)]
        stalls = list(previous) + self._cued_stalls(cued, begin, previous)  # the seed's own stalls keep clear of them
        for stop_s, label in sorted(kinds):
            zone = self.vending[int(rng.integers(len(self.vending)))] if self.vending and label != "outside" else None
            if label == "outside":
                stay = float(rng.uniform(20, 400))
            elif zone is None:
                continue
            elif label == "long":
                shortest = max(zone.dwell_s + DWELL_MARGIN_S, 60.0)
                stay = float(rng.uniform(shortest, max(shortest + 60, 400.0)))
            elif zone.dwell_s >= 2 * DWELL_MARGIN_S:
                stay = float(rng.uniform(DWELL_MARGIN_S / 2, zone.dwell_s - DWELL_MARGIN_S))
            else:
                continue
            stall = self._stall(rng, stop_s, min(stay, EPOCH_S - 120), zone, stalls)
            if stall is not None:
                stalls.append(stall)
        return tuple(stalls[len(previous):])

    # -- dust

    def _plume_footprint(self, plume: Plume, t_s: float) -> tuple[float, float, float]:
        x, y = self._image_point(plume.centre(t_s))
        return x, y, plume.radius(t_s) * self.view.ppm(y)

    def _plume(self, rng: np.random.Generator, visible_start: float, visible_s: float, zone: Zone | None,
               heavy: bool = False) -> Plume | None:
        rise, fade = float(rng.uniform(6, 25)), float(rng.uniform(8, 40))
        if visible_s < 20:
            rise, fade = float(rng.uniform(3, 8)), float(rng.uniform(3, 8))
        hold = max(visible_s - rise / 2 - fade / 2, 0.0)
        life = rise + hold + fade
        radius = float(rng.uniform(*HEAVY_PLUME_RADIUS_M) if heavy else rng.uniform(4, 10))
        peak_alpha = HEAVY_PLUME_ALPHA if heavy else PLUME_PEAK_ALPHA
        growth = min(float(rng.uniform(0.02, 0.1)), (18 - radius) / life)
        # Sunlit dust scatters light: a plume is a veil clearly lighter than the ground it rises from.
        ground_value = max(self.layout.pavement)  # HSV value is the largest channel
        colour = hsv_colour(rng, (10, 22), (25, 80), (min(max(165, ground_value + PLUME_LIFT), 235), 256))
        for _ in range(25):
            if zone is None:
                ground = self._visible_ground(rng)
                if ground is None:
                    continue
            else:
                point = self._sample_in(rng, zone, self.margin_px)
                if point is None:
                    continue
                ground = self.view.to_ground(*point)
            heading, speed = float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0.05, 0.5))
            plume = Plume(visible_start - rise / 2, rise, hold, fade, ground,
                          (math.cos(heading) * speed, math.sin(heading) * speed), radius, growth,
                          float(rng.uniform(*peak_alpha)), colour, int(rng.integers(0, 4)),
                          zone.id if zone else None)
            moments = (plume.visible_s[0], sum(plume.visible_s) / 2, plume.visible_s[1])
            spots = [self._plume_footprint(plume, t) for t in moments]
            if zone is None:
                if all(clear_of(self.sites, x, y, self.margin_px + 1.2 * r) and r > 3 for x, y, r in spots):
                    return plume
            elif all(signed_distance(zone, x, y) >= self.margin_px for x, y, _ in spots) and all(
                    clear_of(tuple(z for z in self.sites if z is not zone), x, y, self.margin_px) for x, y, _ in spots
            ) and (not heavy or all(r >= HEAVY_PLUME_MIN_RADIUS * self.view.height for _, _, r in spots)):
                return plume
        return None

    def _plumes(self, rng: np.random.Generator, cued: np.random.Generator, begin: float) -> tuple[Plume, ...]:
        p = self.params
        start = max(begin, p.warmup_s + 10)
        plumes = []
        for number, visible_start in self._cues(begin) if self.sites else ():
            visible = self._cued_length(cued, DUST_DWELL_S + DWELL_MARGIN_S)
            plume = self._plume(cued, visible_start, visible, self.sites[number % len(self.sites)], heavy=True)
            if plume is not None:
                plumes.append(plume)
        for rate, label in ((p.plumes_per_hour, "long"), (p.short_plumes_per_hour, "short"),
                            (p.outside_plumes_per_hour, "outside")):
            for visible_start in _arrivals(rng, rate, start, begin + EPOCH_S):
                zone = None if label == "outside" or not self.sites else self.sites[int(rng.integers(len(self.sites)))]
                if zone is None and label != "outside":
                    continue
                visible = float(rng.uniform(DUST_DWELL_S + DWELL_MARGIN_S, 300.0)) if label == "long" else (
                    float(rng.uniform(5.0, DUST_DWELL_S - DWELL_MARGIN_S)) if label == "short" else
                    float(rng.uniform(10, 300)))
                plume = self._plume(rng, visible_start, visible, zone)
                if plume is not None:
                    plumes.append(plume)
        return tuple(sorted(plumes, key=lambda plume: plume.start_s))

    # -- cued events

    def _cues(self, begin: float) -> list[tuple[int, float]]:
        """The cued events of the epoch from `begin`: (their number counted from the scene's start, start time)."""
        p = self.params
        if p.first_event_s <= 0:
            return []
        numbers = range(1)
        if p.event_every_s > 0:
            low = max(math.floor((begin - p.first_event_s) / p.event_every_s), 0)
            numbers = range(low, low + math.ceil(EPOCH_S / p.event_every_s) + 2)
        # The same expression in every epoch: a cue on an epoch's edge belongs to exactly one of the two.
        times = [(number, p.first_event_s + number * p.event_every_s) for number in numbers]
        return [(number, t) for number, t in times if begin <= t < begin + EPOCH_S]

    def _cued_stalls(self, rng: np.random.Generator, begin: float, previous: tuple[Stall, ...]) -> list[Stall]:
        """The cued stalls of the epoch from `begin`, one a cue, the vending zones taking turns."""
        stalls: list[Stall] = []
        for number, stop_s in self._cues(begin) if self.vending else ():
            zone = self.vending[number % len(self.vending)]
            stay = self._cued_length(rng, max(zone.dwell_s + DWELL_MARGIN_S, 60.0))
            stall = self._stall(rng, stop_s, min(stay, EPOCH_S - 120), zone, [*previous, *stalls])
            if stall is not None:
                stalls.append(stall)
        return stalls

    def _cued_length(self, rng: np.random.Generator, shortest: float) -> float:
        """How long a cued stall stays or a cued plume stays visible: a little past the dwell time, when a detector
        reports it but is not yet sure of it; the quiet until the next cue is the time to deal with its case."""
        return float(rng.uniform(shortest, shortest + CUED_EXTRA_S))

    # -- light

    def _lights(self, rng: np.random.Generator, begin: float) -> tuple[LightEvent, ...]:
        events = []
        for start in np.sort(rng.uniform(begin, begin + EPOCH_S, rng.poisson(
                self.params.sudden_lights_per_hour * EPOCH_S / 3600))):
            if rng.random() < 0.6:
                events.append(LightEvent(
                    LightKind.CLOUD, float(start), float(rng.uniform(15, 120)), float(rng.uniform(1.5, 5)),
                    float(rng.uniform(0.55, 0.8)), (float(rng.uniform(-0.2, 1.2)), float(rng.uniform(-0.2, 1.2))),
                    (float(rng.normal(0, 0.004)), float(rng.normal(0, 0.002))), float(rng.uniform(0.4, 1.0))))
            else:
                gain = float(rng.uniform(0.7, 0.85)) if rng.random() < 0.5 else float(rng.uniform(1.15, 1.35))
                events.append(LightEvent(LightKind.EXPOSURE, float(start), float(rng.uniform(20, 240)),
                                         float(rng.uniform(0.2, 1.5)), gain, (0.5, 0.5), (0.0, 0.0), 0.0))
        return tuple(events)

    def plan(self, index: int, previous: Epoch | None) -> Epoch:
        """Epoch `index`, given the one before it (its stalls may still stand where new ones would go)."""
        begin = index * EPOCH_S

        def stream(kind: int) -> np.random.Generator:
            return np.random.default_rng([self.seed, index, kind])

        return Epoch(
            index,
            self._pedestrians(stream(1), begin),
            self._stalls(stream(2), stream(5), begin, previous.stalls if previous else ()),
            self._plumes(stream(3), stream(6), begin),
            self._lights(stream(4), begin),
        )


def _arrivals(rng: np.random.Generator, per_hour: float, begin: float, end: float) -> list[float]:
    """Times at this hourly rate, one in each of equal slots: every clip of a few minutes gets its share."""
    expected = per_hour * max(end - begin, 0.0) / 3600
    count = int(expected + rng.random())
    slot = (end - begin) / max(count, 1)
    return [float(begin + (i + rng.random()) * slot) for i in range(count)]


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
