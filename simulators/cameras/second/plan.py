"""The scene's timeline: who comes, where they go and how long they stay, planned from the seed chunk by chunk.

Chunks are planned in order, each from its own random stream and from what earlier chunks left standing, so a
clip of any length (or an endless stream) has the same first minutes for the same seed. Nothing that stays
(stall, parked car, group, sitter, dust) starts before the warm-up is over. Stalls, parked cars, groups and
sitters claim their patch of ground for their stay so that no two stand in one place; dust plumes in one zone
keep 15 s apart, so that each true plume is one event.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from domain.registry import ZoneKind
from simulators.cameras.second.actors import Digger, Person, Stall, Track, Vehicle
from simulators.cameras.second.camera import PoleCamera
from simulators.cameras.second.dust import Plume, Puff
from simulators.cameras.second.figures import Look, StallLook, stall_box, stall_look, vehicle_look
from simulators.cameras.second.params import Kind, Params
from simulators.cameras.second.shapes import Colour, box_corners
from simulators.cameras.second.world import Area, World

CHUNK_S = 300.0
LEAD_S = 60.0  # walkers and traffic are already under way when the clip starts
PREROLL_S = 120.0  # a figure may come into view this long before the time it was planned for (a cart pushed in)
ZONE_GAP_S = 15.0  # between plumes over one zone
Figure = Person | Stall | Vehicle | Digger | Plume
SKIN = ((150, 185, 225), (125, 160, 205), (95, 125, 170), (70, 95, 135))
HAIR = ((22, 22, 26), (35, 35, 40), (40, 60, 90), (150, 150, 155))
HATS = ((0, 210, 245), (235, 235, 235), (40, 40, 200), (200, 110, 30))
VESTS = ((0, 140, 255), (60, 250, 200))


@dataclass(frozen=True, slots=True)
class _Claim:
    s0: float
    s1: float
    q0: float
    q1: float
    t0: float
    t1: float

    def overlaps(self, other: _Claim) -> bool:
        return (self.s0 < other.s1 and other.s0 < self.s1 and self.q0 < other.q1 and other.q0 < self.q1
                and self.t0 < other.t1 and other.t0 < self.t1)


def arrivals(rng: np.random.Generator, per_hour: float, start_s: float, end_s: float) -> list[float]:
    """Times in [start, end) about 3600/per_hour apart, each gap between half and one and a half of that."""
    if per_hour <= 0 or end_s <= start_s:
        return []
    gap = 3600.0 / per_hour
    times, t = [], start_s + float(rng.uniform(0, 1)) * gap
    while t < end_s:
        times.append(t)
        t += gap * float(rng.uniform(0.5, 1.5))
    return times


def person_look(rng: np.random.Generator, worker: bool = False) -> Look:
    """A passer-by (now and then a child) or a site worker in hard hat and hi-vis vest."""
    child = not worker and rng.random() < 0.08
    height = float(rng.uniform(1.05, 1.35)) if child else float(np.clip(rng.normal(1.68, 0.08), 1.5, 1.92))
    top = _colour(rng.integers(25, 235, 3))
    trousers = ((40, 40, 45), (110, 70, 40), (90, 120, 140), (30, 30, 90))[int(rng.integers(0, 4))]
    return Look(height, SKIN[int(rng.integers(0, 4))], HAIR[int(rng.integers(0, 4))], top, trousers,
                HATS[int(rng.integers(0, 4))] if worker else None, VESTS[int(rng.integers(0, 2))] if worker else None)


def _colour(values: npt.NDArray[np.int64]) -> Colour:
    b, g, r = (int(v) for v in values)
    return b, g, r


def duration(points: list[tuple[float, float]], speeds: list[float]) -> float:
    """Seconds to walk or drive through these points at these speeds."""
    return sum(math.dist(a, b) / v for a, b, v in zip(points, points[1:], speeds, strict=False))


class Timeline:
    """Every figure of a scene, planned lazily, and the ones on stage at any instant."""

    def __init__(self, kind: Kind, params: Params, world: World, camera: PoleCamera, seed: int) -> None:
        self.kind, self.params, self.world, self.camera, self.seed = kind, params, world, camera, seed
        self.stalls: list[Stall] = []
        self.vehicles: list[Vehicle] = []
        self.people: list[Person] = []
        self.plumes: list[Plume] = []
        self._active: dict[int, list[Figure]] = defaultdict(list)
        self._claims: list[_Claim] = []
        self._planned = -1
        self._lanes: dict[int, tuple[float, float]] = {}
        self._zone_busy: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.margin_px = 0.02 * camera.width
        rng = np.random.default_rng([seed, 0x71E])
        wind_angle = float(rng.uniform(0, 2 * math.pi))
        self.wind = (math.cos(wind_angle), math.sin(wind_angle))
        self.diggers: tuple[Digger, ...] = self._diggers(rng) if kind is Kind.CONSTRUCTION else ()
        self._workers = [(person_look(rng, worker=True), self._site_point(rng), -LEAD_S)
                         for _ in range(params.workers if kind is Kind.CONSTRUCTION else 0)]
        self._truck_free_s = -LEAD_S

    def plan_until(self, t_s: float) -> None:
        """Plan every chunk up to the one holding t."""
        while self._planned < math.floor(t_s / CHUNK_S):
            self._planned += 1
            self._plan(self._planned)

    def active(self, t_s: float) -> list[Figure]:
        """The figures that may show at t (planned far enough ahead to hold those already on their way)."""
        self.plan_until(t_s + PREROLL_S)
        return [*self.diggers, *(f for f in self._active[math.floor(t_s / CHUNK_S)]
                                 if f.start_s <= t_s < f.end_s)]

    def _add(self, figure: Figure) -> None:
        start, end = figure.start_s, figure.end_s
        for chunk in range(math.floor(start / CHUNK_S), math.floor(end / CHUNK_S) + 1):
            self._active[chunk].append(figure)
        if isinstance(figure, Stall):
            self.stalls.append(figure)
        elif isinstance(figure, Vehicle):
            self.vehicles.append(figure)
        elif isinstance(figure, Person):
            self.people.append(figure)
        elif isinstance(figure, Plume):
            self.plumes.append(figure)

    def _claim(self, claim: _Claim) -> bool:
        """Claim a patch of ground for a while, unless something else has it then."""
        if any(claim.overlaps(other) for other in self._claims):
            return False
        self._claims.append(claim)
        return True

    def _plan(self, chunk: int) -> None:
        rng = np.random.default_rng([self.seed, 0xC4A, chunk])
        start, end = chunk * CHUNK_S, (chunk + 1) * CHUNK_S
        lead = start - LEAD_S if chunk == 0 else start
        settled = max(start, self.params.warmup_s)
        self._claims = [c for c in self._claims if c.t1 > start - CHUNK_S]
        if self.kind is Kind.STREET:
            self._plan_street(rng, lead, settled, end)
        else:
            self._plan_site(rng, lead, settled, end)

    # --- the street -------------------------------------------------------------------------------------------

    def _plan_street(self, rng: np.random.Generator, lead: float, settled: float, end: float) -> None:
        p = self.params
        for t in arrivals(rng, p.walkers_per_min * 60, lead, end):
            self._walker(rng, t)
        lanes = self.world.lanes
        for lane in range(len(lanes)):
            for t in arrivals(rng, p.vehicles_per_min * 60 / len(lanes), lead, end):
                self._drive_by(rng, t, lane)
        for t in arrivals(rng, p.groups_per_hour, settled, end):
            self._group(rng, t)
        for t in arrivals(rng, p.sitters_per_hour, settled, end):
            self._sitter(rng, t)
        for t in arrivals(rng, p.parked_cars_per_hour, settled, end):
            self._park(rng, t)
        first_stop = max(settled, p.warmup_s + 25.0)  # a stall pushed in is on its way for a while before it stops
        for mode, per_hour in (("true", p.stalls_per_hour), ("short", p.short_stalls_per_hour),
                               ("outside", p.outside_stalls_per_hour)):
            for t in arrivals(rng, per_hour, first_stop, end):
                self._stall(rng, t, mode)

    def _sq(self, s: float, q: float) -> tuple[float, float]:
        return self.world.axes.world(s, q)

    def _ends(self, rng: np.random.Generator) -> tuple[float, float]:
        """s just beyond either end of what the camera sees, as (entry, exit)."""
        low, high = self.world.span[0] - 8.0, self.world.span[1] + 8.0
        return (low, high) if rng.random() < 0.5 else (high, low)

    def _walker(self, rng: np.random.Generator, t: float) -> None:
        world = self.world
        entry, exit_ = self._ends(rng)
        speed = float(rng.uniform(1.0, 1.6))
        if rng.random() < 0.12:  # crossing the road
            cross = float(rng.uniform(*world.span))
            near_q = float(rng.uniform(*world.near_q))
            far_q = float(rng.uniform(*world.pavement_q))
            points = [self._sq(cross - 10, near_q), self._sq(cross, near_q), self._sq(cross + 1, far_q),
                      self._sq(exit_, far_q)]
        else:
            band = world.pavement_q if rng.random() < 0.75 else world.near_q
            q = float(rng.uniform(band[0] + 0.3, band[1] - 0.3))
            middle = float(rng.uniform(*world.span))
            points = [self._sq(entry, q), self._sq(middle, q), self._sq(exit_, q)]
        waits = {1: float(rng.uniform(2, 6))} if rng.random() < 0.2 else None
        self._add(Person(person_look(rng), Track.through(t, points, [speed] * 3, waits)))

    def _drive_by(self, rng: np.random.Generator, t: float, lane: int) -> None:
        world = self.world
        forward = lane == 0 if len(world.lanes) > 1 else rng.random() < 0.5
        low, high = world.span[0] - 45.0, world.span[1] + 45.0
        entry, exit_ = (low, high) if forward else (high, low)
        kind = str(rng.choice(["car", "van", "scooter"], p=[0.72, 0.14, 0.14]))
        speed = float(rng.uniform(5, 12)) if kind != "scooter" else float(rng.uniform(4, 8))
        length = abs(high - low)
        last_entry, last_exit = self._lanes.get(lane, (-math.inf, -math.inf))
        t = max(t, last_entry + 2.0)
        speed = min(speed, length / max(last_exit + 2.0 - t, 1e-3)) if last_exit + 2.0 > t + length / speed else speed
        track = Track.through(t, [self._sq(entry, world.lanes[lane]), self._sq(exit_, world.lanes[lane])], [speed])
        self._lanes[lane] = (t, track.end_s)
        rider = person_look(rng) if kind == "scooter" else None
        self._add(Vehicle(vehicle_look(rng, kind), track, rider))

    def _group(self, rng: np.random.Generator, t: float) -> None:
        world = self.world
        s = float(rng.uniform(*world.span))
        q = float(rng.uniform(world.pavement_q[0] + 0.8, world.pavement_q[1] - 0.8))
        stand = float(rng.uniform(30, 120))
        size = int(rng.integers(2, 5))
        if not self._claim(_Claim(s - 1.2, s + 1.2, q - 1.2, q + 1.2, t, t + stand + 30)):
            return
        entry, exit_ = self._ends(rng)
        radius = float(rng.uniform(0.5, 0.8))
        for member in range(size):
            angle = 2 * math.pi * member / size + float(rng.uniform(-0.3, 0.3))
            ms, mq = s + radius * math.cos(angle), q + radius * math.sin(angle)
            points = [self._sq(entry, mq), self._sq(ms, mq), self._sq(exit_, mq)]
            walk = duration(points[:2], [1.1])
            track = Track.through(t - walk + 0.7 * member, points, [1.1, 1.1], {1: stand - 0.7 * member})
            facing = world.axes.heading(-math.cos(angle), -math.sin(angle))
            self._add(Person(person_look(rng), track, still_heading=facing, talks=True))

    def _sitter(self, rng: np.random.Generator, t: float) -> None:
        world = self.world
        benches = [prop for prop in world.props if prop.kind == "bench"]
        sit = float(rng.uniform(120, 480))
        if benches and rng.random() < 0.6:  # on a bench, come to from the road side
            bench = benches[int(rng.integers(0, len(benches)))]
            s, q, seat, approach = bench.s + float(rng.choice([-0.45, 0.45])), bench.q, 0.45, bench.q - 0.7
        else:  # on the kerb, come to from the pavement
            s, q, seat = float(rng.uniform(*world.span)), world.pavement_q[0] - 0.1, 0.14
            approach = q + 0.6
        if not self._claim(_Claim(s - 0.3, s + 0.3, q - 0.3, q + 0.3, t, t + sit)):
            return
        entry, exit_ = self._ends(rng)
        points = [self._sq(entry, approach), self._sq(s, approach), self._sq(s, q), self._sq(s, approach),
                  self._sq(exit_, approach)]
        walk = duration(points[:3], [1.2, 0.6])
        track = Track.through(t - walk, points, [1.2, 0.6, 0.6, 1.2], {2: sit})
        self._add(Person(person_look(rng), track, still_heading=world.axes.heading(0.0, -1.0), seat_m=seat))

    def _park(self, rng: np.random.Generator, t: float) -> None:
        world, camera = self.world, self.camera
        look = vehicle_look(rng, "van" if rng.random() < 0.2 else "car")
        stay = float(rng.uniform(60, 420))
        lane = world.lanes[-1]
        heading = world.axes.heading(1.0)
        kerbside = [area for area in world.areas if area.zone.kind is ZoneKind.NO_VENDING]
        on_pavement = bool(kerbside) and rng.random() < 0.6  # many drivers pull up onto the pavement
        for _ in range(20):
            area = kerbside[int(rng.integers(0, len(kerbside)))] if on_pavement else None
            if area is not None:
                s = _inside(rng, area.s0 + 0.3 * look.length, area.s1 - 0.3 * look.length)
                q = _inside(rng, area.q0 + look.width / 2, area.q1 - look.width / 2)
            else:
                s, q = float(rng.uniform(world.span[0] - 4, world.span[1] + 4)), world.pavement_q[0] - 1.3
            x, y = self._sq(s, q)
            xy, depth = camera.project(box_corners(x, y, 0.0, heading, look.length, look.width, 1.5))
            if (depth < 1.0).any():
                continue
            foot_x, foot_y = float(xy[:, 0].mean()), float(xy[:, 1].max())
            zone = world.zone_at(foot_x, foot_y, self.margin_px)
            if zone == "" or (area is not None and zone != area.zone.id):
                continue
            half_l, half_w = look.length / 2 + 0.5, look.width / 2 + 0.5
            if not self._claim(_Claim(s - half_l, s + half_l, q - half_w, q + half_w, t - 4, t + stay + 4)):
                continue
            entry, exit_ = world.span[0] - 45.0, world.span[1] + 45.0
            points = [self._sq(entry, lane), self._sq(s - 8, lane), self._sq(s - 2, q), self._sq(s, q),
                      self._sq(s + 7, lane), self._sq(exit_, lane)]
            arrive = duration(points[:4], [7.0, 2.0, 1.0])
            track = Track.through(t - arrive, points, [7.0, 2.0, 1.0, 2.0, 7.0], {3: stay})
            self._add(Vehicle(look, track, parked=(t, t + stay), zone_id=zone))
            return

    def _stall(self, rng: np.random.Generator, stop: float, mode: str) -> None:
        world, camera = self.world, self.camera
        for _ in range(20):
            area: Area | None = None
            if mode != "outside":
                if not world.areas:
                    return
                area = world.areas[int(rng.integers(0, len(world.areas)))]
            shopfront = area is None or area.zone.kind is ZoneKind.SHOPFRONT
            kind = str(rng.choice(["cart", "mat", "rack", "spill"], p=[0.3, 0.25, 0.2, 0.25] if shopfront
                                  else [0.4, 0.35, 0.25, 0.0]))
            look = stall_look(rng, kind)
            length, width, _ = look.extent
            facade = world.walls[0].q
            if kind == "spill":
                q = facade - 0.3 - width / 2
            elif area is not None:
                q = _inside(rng, area.q0 + width / 2 + 0.15, area.q1 - width / 2 - 0.15)
            else:
                q = _inside(rng, world.pavement_q[0] + 0.6 + width / 2, world.pavement_q[1] - width / 2)
            s = (_inside(rng, area.s0 + length / 2 + 0.2, area.s1 - length / 2 - 0.2) if area is not None
                 else float(rng.uniform(world.span[0] - 1, world.span[1] + 1)))
            entry, exit_ = self._ends(rng)
            heading = world.axes.heading(1.0 if s > entry else -1.0)
            x, y = self._sq(s, q)
            box = stall_box(camera, x, y, heading, look)
            if box is None:
                continue
            foot_x, foot_y = box[0] + box[2] / 2, box[1] + box[3]
            if not (self.margin_px < foot_x < camera.width - self.margin_px
                    and self.margin_px < foot_y < camera.height - self.margin_px):
                continue
            zone = world.zone_at(foot_x, foot_y, self.margin_px)
            if (area is not None and zone != area.zone.id) or (area is None and zone is not None):
                continue
            dwell = area.zone.dwell_s if area is not None else 0.0
            stay = {"true": dwell + float(rng.uniform(15, 200)), "short": dwell * float(rng.uniform(0.2, 0.7)),
                    "outside": float(rng.uniform(60, 300))}[mode]
            setup = 0.0 if kind == "cart" else float(rng.uniform(6, 12)) if kind == "spill" else float(
                rng.uniform(3, 6))
            half_l, half_w = length / 2 + 0.7, width / 2 + 0.7
            if not self._claim(_Claim(s - half_l, s + half_l, q - half_w, q + half_w, stop - 2,
                                      stop + stay + setup + 2)):
                continue
            self._place_stall(rng, look, s, q, heading, stop, stop + stay, setup, entry, exit_, zone, box)
            return

    def _place_stall(self, rng: np.random.Generator, look: StallLook, s: float, q: float, heading: float,
                     stop: float, leave: float, setup: float, entry: float, exit_: float, zone: str | None,
                     box: tuple[float, float, float, float]) -> None:
        """The stall and its vendor: in, set up, stand, pack, out."""
        world = self.world
        width = look.extent[1]
        side_q = q - width / 2 - 0.45 if q - width / 2 - 0.45 > world.pavement_q[0] else q + width / 2 + 0.45
        beside = self._sq(s, side_q)
        facing = world.axes.heading(0.0, -1.0)
        seat = 0.42 if rng.random() < 0.4 else None
        vendor_look = person_look(rng)
        x, y = self._sq(s, q)
        if look.kind == "cart":
            into, out_of = (1.0 if s > entry else -1.0), (1.0 if exit_ > s else -1.0)
            arrive = stop - abs(s - entry) / 0.9
            end = leave + abs(exit_ - s) / 0.9
            cart = Track.of([arrive, stop, leave, end], [self._sq(entry, q), (x, y), (x, y), self._sq(exit_, q)])
            step = min(2.0, (leave - stop) / 2)  # the vendor steps round from behind the cart, and back
            vendor = Track.of([arrive, stop, stop + step, leave - step, leave, end],
                              [self._sq(entry - 1.4 * into, q), self._sq(s - 1.4 * into, q), beside, beside,
                               self._sq(s - 1.4 * out_of, q), self._sq(exit_ - 1.4 * out_of, q)])
            self._add(Person(vendor_look, vendor, facing, seat))
            self._add(Stall(look, x, y, heading, arrive, stop, leave, end, 0.0, cart, zone, box))
            return
        if look.kind == "spill":
            door = self._sq(s, world.walls[0].q - 0.1)
            vendor = Track.through(stop - 3.0, [door, beside, door], [0.6, 0.6], {1: leave + setup - stop})
            carrying: tuple[tuple[float, float], ...] = ((stop - 3.0, stop),)
        else:
            walk_in = [self._sq(entry, side_q), beside]
            walk_out = [beside, self._sq(exit_, side_q)]
            arrive = stop - duration(walk_in, [1.2])
            vendor = Track.through(arrive, [*walk_in, walk_out[1]], [1.2, 1.2], {1: leave + setup - stop})
            carrying = ((arrive, stop), (leave + setup, vendor.end_s))
        end = vendor.end_s
        self._add(Person(vendor_look, vendor, facing, seat, carrying=carrying, bundle=look.cover))
        self._add(Stall(look, x, y, heading, stop, stop, leave, end, setup, None, zone, box))

    # --- the site ---------------------------------------------------------------------------------------------

    def _site_point(self, rng: np.random.Generator) -> tuple[float, float]:
        world = self.world
        return self._sq(float(rng.uniform(world.span[0] - 3, world.span[1] + 3)),
                        float(rng.uniform(*world.pavement_q)))

    def _diggers(self, rng: np.random.Generator) -> tuple[Digger, ...]:
        diggers = []
        for area in self.world.areas:
            for _ in range(30):
                s, q = _inside(rng, area.s0 + 2, area.s1 - 2), _inside(rng, area.q0 + 2, area.q1 - 2)
                x, y = self._sq(s, q)
                digger = Digger(x, y, float(rng.uniform(0, 2 * math.pi)),
                                (0, 200, 240) if rng.random() < 0.7 else (30, 120, 230), float(rng.uniform(6, 9)),
                                float(rng.uniform(0, 9)), float(rng.uniform(1.2, 2.2)) * float(rng.choice([-1, 1])))
                dump = digger.dump_point()
                if self._zone_of_ground(x, y) == area.zone.id == self._zone_of_ground(dump[0], dump[1]):
                    diggers.append(digger)
                    break
        return tuple(diggers)

    def _zone_of_ground(self, x: float, y: float) -> str | None:
        """The zone a ground point lies clearly in ("" near an edge, None clearly outside, or out of view)."""
        if not self.camera.in_view(x, y, 0.0, self.margin_px):
            return ""
        return self.world.zone_at(*self.camera.point(x, y), self.margin_px)

    def _plan_site(self, rng: np.random.Generator, lead: float, settled: float, end: float) -> None:
        p = self.params
        self._plan_workers(rng, end)
        while self._truck_free_s < end:
            self._truck_free_s = self._truck(rng, self._truck_free_s + float(rng.uniform(60, 200)))
        for mode, per_hour in (("true", p.plumes_per_hour), ("short", p.short_puffs_per_hour),
                               ("outside", p.outside_plumes_per_hour)):
            for t in arrivals(rng, per_hour, settled + 5, end):
                self._plume(rng, t, mode)

    def _plan_workers(self, rng: np.random.Generator, end: float) -> None:
        for index, (look, (x, y), t) in enumerate(self._workers):
            points, speeds, waits = [(x, y)], [], {}
            clock = t
            while clock < end:
                target = self._site_point(rng)
                speed = float(rng.uniform(0.9, 1.3))
                clock += math.dist(points[-1], target) / speed
                points.append(target)
                speeds.append(speed)
                pause = float(rng.uniform(5, 40))
                waits[len(points) - 1] = pause
                clock += pause
            track = Track.through(t, points, speeds, waits)
            self._add(Person(look, track))
            self._workers[index] = (look, points[-1], track.end_s)

    def _truck(self, rng: np.random.Generator, t: float) -> float:
        world = self.world
        low, high = world.span[0] - 45.0, world.span[1] + 45.0
        entry, exit_ = (low, high) if rng.random() < 0.5 else (high, low)
        lane = world.lanes[0]
        middle = float(rng.uniform(*world.span))
        stop = float(rng.uniform(30, 90)) if rng.random() < 0.5 else 0.0
        points = [self._sq(entry, lane), self._sq(middle, lane), self._sq(exit_, lane)]
        track = Track.through(t, points, [5.0, 5.0], {1: stop} if stop else None)
        self._add(Vehicle(vehicle_look(rng, "truck"), track, parked=(track.times[1], track.times[2]) if stop else None))
        return track.end_s

    def _plume(self, rng: np.random.Generator, t: float, mode: str) -> None:
        world = self.world
        for _ in range(20):
            area = world.areas[int(rng.integers(0, len(world.areas)))] if world.areas else None
            if mode == "outside" or area is None:
                area = None
                s = float(rng.uniform(world.span[0] - 6, world.span[1] + 6))
                q = float(rng.uniform(world.near_q[0] - 4, world.pavement_q[1]))
            else:
                s, q = float(rng.uniform(area.s0 + 1, area.s1 - 1)), float(rng.uniform(area.q0 + 1, area.q1 - 1))
            diggers = [d for d in self.diggers if area is not None and self._zone_of_ground(d.x, d.y) == area.zone.id]
            style = str(rng.choice(["column", "sheared", "digger"] if diggers and mode != "outside"
                                   else ["column", "sheared"]))
            x, y = self._sq(s, q)
            source_z = 0.0
            if style == "digger":
                x, y, source_z = diggers[0].dump_point()
            zone = self._zone_of_ground(x, y)
            if (area is None and zone is not None) or (area is not None and zone != area.zone.id):
                continue
            emit = float(rng.uniform(45, 150)) if mode != "short" else float(rng.uniform(4, 14))
            plume = self._make_plume(rng, style, x, y, source_z, zone, t, emit,
                                     diggers[0] if style == "digger" else None)
            runs = plume.visible() if plume.puffs else ()
            if not runs:
                continue
            longest = max(b - a for a, b in runs)
            if (mode == "short" and longest >= 25.0) or (mode != "short" and longest < 35.0):
                continue
            if zone is not None:
                busy = self._zone_busy[zone]
                span = (plume.start_s - ZONE_GAP_S, plume.end_s + ZONE_GAP_S)
                if any(a < span[1] and span[0] < b for a, b in busy):
                    continue
                busy.append((plume.start_s, plume.end_s))
            self._add(plume)
            return

    def _make_plume(self, rng: np.random.Generator, style: str, x: float, y: float, source_z: float,
                    zone: str | None, start: float, emit: float, digger: Digger | None) -> Plume:
        p = self.params
        if digger is not None:
            puffs = tuple(Puff(t, float(rng.uniform(1.5, 2.5)), float(rng.uniform(0.8, 1.0)))
                          for t in digger.dumps(start, start + emit))
        else:
            pieces = int(rng.integers(1, 4))
            edges = np.linspace(start, start + emit, pieces + 1)
            puffs = tuple(Puff(float(a), float(b - a) + 1.0, float(rng.uniform(0.75, 1.0)))
                          for a, b in itertools.pairwise(edges))
        # dust scatters daylight: a veil lighter than the soil it came from, grey-brown from dark soil
        colour = _colour(rng.integers([95, 105, 115], [120, 130, 140]) if p.dark_soil
                         else rng.integers([195, 210, 220], [225, 235, 245]))
        wind = max(p.wind_mps, 3.0) if style == "sheared" else p.wind_mps * (0.15 if style == "column" else 0.5)
        return Plume(
            x, y, source_z, zone, style, puffs, colour,
            (self.wind[0] * wind, self.wind[1] * wind),
            0.35 if style == "sheared" else 0.05,
            float(rng.uniform(0.4, 0.8)) if style == "sheared" else float(rng.uniform(0.9, 1.8)),
            float(rng.uniform(1.0, 1.8)) if style == "digger" else float(rng.uniform(1.8, 3.2)),
            float(rng.uniform(0.5, 1.1)),
            float(rng.uniform(2.0, 3.5)) if style == "digger" else float(rng.uniform(3.0, 6.0)),
            int(rng.integers(0, 4)),
        )


def _inside(rng: np.random.Generator, low: float, high: float) -> float:
    """A random value in [low, high], or their middle if the range is empty."""
    return float(rng.uniform(low, high)) if high > low else (low + high) / 2
