"""The static world under the pole camera: bands of ground, walls, street furniture, and the camera's zones.

Both scenes are laid out along an axis `a` on the ground with `n` across it, pointing away from the camera;
a place is (s, q): s metres along the axis and q metres across it from the foot of the pole. A street is, in q,
the near kerb, the carriageway, the far pavement and the shopfronts' façade; a site is the access track, the
bare soil and the hoarding with the city behind it. Zones are rectangles in (s, q) on the ground, which the
camera sees as quadrilaterals; they are laid out where the camera sees them, with room around them for things
that happen outside every zone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from domain.registry import Zone, ZoneKind
from simulators.cameras.second.camera import PoleCamera
from simulators.cameras.second.params import Kind, Params

Colour = tuple[int, int, int]  # BGR
DUST_DWELL_S = 30.0  # dust that stays 30 s over a site makes a 0302 case
SPAN_LIMIT_M = 90.0  # nothing is laid out further along the axis than this


def hsv(rng: np.random.Generator, hue: tuple[int, int], sat: tuple[int, int], val: tuple[int, int]) -> Colour:
    """A random BGR colour from ranges of OpenCV hue (0-180), saturation and value."""
    pixel = np.array([[[rng.integers(*hue), rng.integers(*sat), rng.integers(*val)]]], dtype=np.uint8)
    b, g, r = (int(c) for c in cv2.cvtColor(pixel, cv2.COLOR_HSV2BGR)[0, 0])
    return b, g, r


@dataclass(frozen=True, slots=True)
class Axes:
    """The layout's axis on the ground: `a` along, `n` across (away from the camera)."""

    a: tuple[float, float]
    n: tuple[float, float]

    def world(self, s: float, q: float) -> tuple[float, float]:
        """World (X, Y) of the place (s, q)."""
        return s * self.a[0] + q * self.n[0], s * self.a[1] + q * self.n[1]

    def local(self, x: float, y: float) -> tuple[float, float]:
        """(s, q) of the world point (X, Y)."""
        return x * self.a[0] + y * self.a[1], x * self.n[0] + y * self.n[1]

    def heading(self, along: float, across: float = 0.0) -> float:
        """World yaw (radians, from +X towards +Y) of a direction given in (s, q)."""
        x, y = self.world(along, across)
        return math.atan2(y, x)


@dataclass(frozen=True, slots=True)
class Segment:
    """One building (or hoarding panel run) of a wall, from s0 to s1."""

    s0: float
    s1: float
    height_m: float
    wall: Colour
    trim: Colour  # window frames, signboard, panel print
    shop: bool  # a shopfront with a signboard on the ground floor


@dataclass(frozen=True, slots=True)
class Wall:
    """A vertical plane q = `q`: a row of façades, the site's hoarding, or the skyline behind it."""

    q: float
    segments: tuple[Segment, ...]
    style: str  # "facade" | "hoarding" | "skyline"

    def segment_at(self, s: float) -> Segment | None:
        """The segment standing at s, if any."""
        for segment in self.segments:
            if segment.s0 <= s < segment.s1:
                return segment
        return None


@dataclass(frozen=True, slots=True)
class Prop:
    """A static object standing on the ground: lamp, bollard, bench, planter, pile, rebar stack, container, mast."""

    kind: str
    s: float
    q: float
    length_m: float  # along the axis
    width_m: float  # across it
    height_m: float
    colour: Colour


@dataclass(frozen=True, slots=True)
class Band:
    """A strip of ground between q0 and q1 with one surface."""

    q0: float
    q1: float
    surface: str  # "tiles" | "kerb" | "asphalt" | "soil" | "track"


@dataclass(frozen=True, slots=True)
class Area:
    """A zone as a rectangle on the ground, (s0..s1) × (q0..q1), and the polygon the camera sees."""

    zone: Zone
    s0: float
    s1: float
    q0: float
    q1: float


@dataclass(frozen=True)
class World:
    """Everything that stands still in a scene."""

    kind: Kind
    axes: Axes
    bands: tuple[Band, ...]  # ordered by q; ground beyond the last band has the last band's surface
    walls: tuple[Wall, ...]  # nearest first
    props: tuple[Prop, ...]
    areas: tuple[Area, ...]
    span: tuple[float, float]  # the stretch of s the camera sees well on the main ground (pavement, site)
    ground: Colour  # main surface colour: pavement tiles or soil
    road: Colour  # carriageway or access track
    lanes: tuple[float, ...]  # street: q of the driving lanes' centres; site: the track's centre
    pavement_q: tuple[float, float]  # where people walk and stalls stand (street), or the soil (site)
    near_q: tuple[float, float]  # the near pavement (street) or the track (site)

    @property
    def zones(self) -> tuple[Zone, ...]:
        """The camera's zones."""
        return tuple(area.zone for area in self.areas)

    def zone_at(self, x: float, y: float, margin_px: float) -> str | None:
        """The zone whose polygon holds image point (x, y) by at least `margin_px`; "" if it is that close to any
        edge (neither clearly in nor clearly out), None if it is clearly outside every zone."""
        for area in self.areas:
            distance = signed_distance(area.zone, x, y)
            if distance >= margin_px:
                return area.zone.id
            if distance > -margin_px:
                return ""
        return None


def signed_distance(zone: Zone, x: float, y: float) -> float:
    """Pixels from (x, y) to the zone's edge, positive inside."""
    contour = np.asarray(zone.polygon, dtype=np.float32).reshape(-1, 1, 2)
    return float(cv2.pointPolygonTest(contour, (float(x), float(y)), True))


def _axes(camera: PoleCamera, yaw_deg: float) -> tuple[Axes, float]:
    """The layout's axes, and how far across them the centre of the view lands on the ground."""
    yaw = math.radians(yaw_deg)
    a = (math.sin(yaw), math.cos(yaw))
    n = (-math.cos(yaw), math.sin(yaw))
    centre = camera.to_ground(camera.width / 2, camera.height / 2) or (0.0, 10.0)
    if centre[0] * n[0] + centre[1] * n[1] < 0:
        n = (-n[0], -n[1])
    axes = Axes(a, n)
    return axes, axes.local(*centre)[1]


def _span(camera: PoleCamera, axes: Axes, q: float, margin: float) -> tuple[float, float] | None:
    """The stretch of s along the line q that the camera sees at least `margin` pixels inside the frame."""
    seen = [s for s in np.arange(-SPAN_LIMIT_M, SPAN_LIMIT_M, 0.25)
            if camera.in_view(*axes.world(float(s), q), margin=margin)]
    return (float(min(seen)), float(max(seen))) if len(seen) >= 8 else None


def _polygon(camera: PoleCamera, axes: Axes, s0: float, s1: float, q0: float, q1: float
             ) -> tuple[tuple[float, float], ...] | None:
    """The image polygon of a ground rectangle, cut to the frame; None if little of it shows."""
    corners = np.array([[*axes.world(s, q), 0.0] for s, q in ((s0, q0), (s1, q0), (s1, q1), (s0, q1))])
    xy, depth = camera.project(corners)
    if (depth < 1.0).any():
        return None
    quad = xy.astype(np.float32)
    frame = np.array([[0, 0], [camera.width, 0], [camera.width, camera.height], [0, camera.height]], np.float32)
    area, cut = cv2.intersectConvexConvex(quad, frame)
    if cut is None or area < 0.01 * camera.width * camera.height:
        return None
    points: list[tuple[float, float]] = []
    for x, y in cut.reshape(-1, 2):
        point = (round(min(max(float(x), 0.0), camera.width), 1), round(min(max(float(y), 0.0), camera.height), 1))
        if not points or point != points[-1]:
            points.append(point)
    if len(points) > 1 and points[0] == points[-1]:
        points.pop()
    return tuple(points) if len(points) >= 3 else None


def _walls(rng: np.random.Generator, q: float, span: tuple[float, float], style: str) -> Wall:
    segments: list[Segment] = []
    s = span[0] - 60.0
    while s < span[1] + 60.0:
        if style == "facade":
            width, height = float(rng.uniform(5, 16)), float(rng.uniform(7, 30))
            wall = hsv(rng, (0, 30), (10, 80), (110, 220)) if rng.random() < 0.6 else hsv(rng, (80, 130), (5, 50),
                                                                                            (120, 210))
            trim = hsv(rng, (0, 180), (120, 255), (110, 240))
        elif style == "hoarding":
            width, height = float(rng.uniform(10, 30)), 2.5
            wall = hsv(rng, (95, 110), (120, 220), (120, 210)) if rng.random() < 0.6 else hsv(rng, (55, 75), (60, 150),
                                                                                               (80, 150))
            trim = (235, 235, 235)
        else:
            width, height = float(rng.uniform(12, 35)), float(rng.uniform(15, 70))
            wall = hsv(rng, (90, 120), (5, 40), (120, 200))
            trim = hsv(rng, (90, 120), (20, 60), (60, 110))
        segments.append(Segment(s, s + width, height, wall, trim, style == "facade" and rng.random() < 0.8))
        s += width
    return Wall(q, tuple(segments), style)


def _areas(camera: PoleCamera, axes: Axes, span: tuple[float, float], bands: list[tuple[ZoneKind, float, float]],
           dwell_s: float) -> tuple[Area, ...]:
    """Zones side by side along the span, each with its own q band, with gaps between and around them."""
    length = span[1] - span[0]
    count = len(bands)
    gap = 0.08 * length
    each = (length - gap * (count + 1)) / count
    areas: list[Area] = []
    numbers: dict[ZoneKind, int] = {}
    for index, (kind, q0, q1) in enumerate(bands):
        s0 = span[0] + gap * (index + 1) + each * index
        polygon = _polygon(camera, axes, s0, s0 + each, q0, q1)
        if polygon is None:
            continue
        numbers[kind] = numbers.get(kind, 0) + 1
        prefix = {ZoneKind.NO_VENDING: "z-vend", ZoneKind.SHOPFRONT: "z-shop", ZoneKind.CONSTRUCTION: "z-site"}[kind]
        dwell = DUST_DWELL_S if kind is ZoneKind.CONSTRUCTION else dwell_s
        areas.append(Area(Zone(f"{prefix}-{numbers[kind]}", kind, polygon, dwell), s0, s0 + each, q0, q1))
    return tuple(areas)


def build_world(kind: Kind, params: Params, camera: PoleCamera) -> World:
    """The static world this camera looks at, laid out so that its zones are well in view."""
    rng = np.random.default_rng([params.texture_seed, 0x3D1])
    axes, q_c = _axes(camera, params.yaw_deg)
    margin = 0.04 * camera.width
    if kind is Kind.STREET:
        return _street(rng, params, camera, axes, q_c, margin)
    return _site(rng, params, camera, axes, q_c, margin)


def _street(rng: np.random.Generator, p: Params, camera: PoleCamera, axes: Axes, q_c: float, margin: float) -> World:
    pave = p.pavement_m
    road = min(max(q_c - 0.5 * pave - 1.0, 4.0), p.road_m)  # a steep camera sees less of the carriageway
    near_kerb = min(q_c - 0.5 * pave - road, 6.0)
    far_kerb = near_kerb + road
    facade_q = far_kerb + pave
    span = _span(camera, axes, far_kerb + 0.5 * pave, margin) or (-6.0, 6.0)
    count = max(1, min(p.zone_count, int((span[1] - span[0]) // 6)))
    kinds = [ZoneKind.SHOPFRONT, ZoneKind.NO_VENDING, ZoneKind.NO_VENDING][:count]
    rng.shuffle(kinds)
    shop_depth = min(2.4, 0.45 * pave)
    bands: list[tuple[ZoneKind, float, float]] = [
        (k, facade_q - shop_depth, facade_q - 0.25) if k is ZoneKind.SHOPFRONT else (k, far_kerb + 0.9, facade_q - 0.3)
        for k in kinds]
    areas = _areas(camera, axes, span, bands, p.dwell_s)
    props = _street_props(rng, span, near_kerb, far_kerb, facade_q, areas)
    lanes = (near_kerb + 0.27 * road, near_kerb + 0.73 * road) if road >= 6 else (near_kerb + 0.5 * road,)
    return World(
        Kind.STREET, axes,
        (Band(-1e9, near_kerb - 0.2, "tiles"), Band(near_kerb - 0.2, near_kerb, "kerb"),
         Band(near_kerb, far_kerb, "asphalt"), Band(far_kerb, far_kerb + 0.2, "kerb"),
         Band(far_kerb + 0.2, 1e9, "tiles")),
        (_walls(rng, facade_q, span, "facade"),), props, areas, span,
        hsv(rng, (0, 25), (5, 60), (140, 205)), hsv(rng, (100, 120), (0, 20), (60, 95)), lanes,
        (far_kerb + 0.25, facade_q - 0.25), (min(near_kerb - 4.0, -1.0), near_kerb - 0.25),
    )


def _street_props(rng: np.random.Generator, span: tuple[float, float], near_kerb: float, far_kerb: float,
                  facade_q: float, areas: tuple[Area, ...]) -> tuple[Prop, ...]:
    props: list[Prop] = []
    steel = (60, 64, 70)
    for q in (near_kerb - 0.45, far_kerb + 0.45):
        spacing = float(rng.uniform(16, 28))
        for s in np.arange(span[0] - 40 + float(rng.uniform(0, spacing)), span[1] + 40, spacing):
            props.append(Prop("lamp", float(s), q, 0.2, 0.2, float(rng.uniform(6, 8)), steel))
    for s in np.arange(span[0] - 10, span[1] + 10, float(rng.uniform(1.6, 3.0))):
        if rng.random() < 0.5:
            props.append(Prop("bollard", float(s), far_kerb + 0.4, 0.2, 0.2, 0.8, (90, 90, 95)))
    bench_s = float(rng.uniform(span[0] + 1, span[1] - 3))
    props.append(Prop("bench", bench_s, far_kerb + 1.1, 1.8, 0.5, 0.45, hsv(rng, (5, 20), (80, 160), (70, 140))))
    if rng.random() < 0.6:
        s = float(rng.uniform(span[0], span[1]))
        props.append(Prop("planter", s, facade_q - 0.6, 1.2, 0.6, 0.7, hsv(rng, (35, 70), (90, 200), (60, 140))))
    return tuple(prop for prop in props if prop.kind in ("lamp", "bollard") or not any(
        area.s0 - 1 < prop.s < area.s1 + 1 and area.q0 - 0.5 < prop.q < area.q1 + 0.5 for area in areas))


def _site(rng: np.random.Generator, p: Params, camera: PoleCamera, axes: Axes, q_c: float, margin: float) -> World:
    track_q = q_c - float(rng.uniform(0.35, 0.6)) * q_c
    far_rows = [q for q in np.arange(q_c, q_c + 200, 1.0) if camera.in_view(*axes.world(0.0, float(q)), margin=margin)]
    top_q = max(far_rows) if far_rows else q_c + 10
    fence_q = q_c + float(rng.uniform(0.55, 0.85)) * (top_q - q_c) + 4.0
    span = _span(camera, axes, 0.5 * (track_q + fence_q), margin) or (-10.0, 10.0)
    count = max(1, min(p.zone_count, 2, int((span[1] - span[0]) // 10)))
    q0, q1 = track_q + 4.0, fence_q - 3.0
    bands = [(ZoneKind.CONSTRUCTION, q0, q1)] * count
    areas = _areas(camera, axes, span, bands, p.dwell_s)
    soil = (hsv(rng, (8, 16), (40, 90), (30, 60)) if p.dark_soil else hsv(rng, (12, 22), (50, 110), (140, 200)))
    props: list[Prop] = []
    for _ in range(int(rng.integers(3, 7))):
        kind = str(rng.choice(["pile", "rebar", "container"], p=[0.55, 0.25, 0.2]))
        s, q = float(rng.uniform(*span)), float(rng.uniform(q0, q1))
        if kind == "pile":
            colour = hsv(rng, (10, 25), (30, 120), (50, 200))
            props.append(Prop(kind, s, q, float(rng.uniform(3, 7)), float(rng.uniform(3, 6)),
                              float(rng.uniform(1, 3)), colour))
        elif kind == "rebar":
            props.append(Prop(kind, s, q, 6.0, 1.5, 0.4, (50, 60, 80)))
        else:
            props.append(Prop(kind, s, q, 6.0, 2.4, 2.6, hsv(rng, (100, 115), (120, 220), (140, 220))))
    for s in np.arange(span[0] - 20, span[1] + 20, float(rng.uniform(25, 40))):
        props.append(Prop("mast", float(s), fence_q - 1.0, 0.3, 0.3, float(rng.uniform(9, 14)), (70, 70, 75)))
    return World(
        Kind.CONSTRUCTION, axes,
        (Band(-1e9, track_q - 3.0, "soil"), Band(track_q - 3.0, track_q + 3.0, "track"),
         Band(track_q + 3.0, 1e9, "soil")),
        (_walls(rng, fence_q, span, "hoarding"), _walls(rng, fence_q + float(rng.uniform(20, 60)), span, "skyline")),
        tuple(props), areas, span, soil, hsv(rng, (10, 20), (10, 40), (90, 140)), (track_q,),
        (q0, q1), (track_q - 2.5, track_q + 2.5),
    )
