"""The static world of a scene: where the façades stand, how wide the road is, what lies about the site."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from domain.registry import Zone
from simulators.cameras.actors import Colour, Point
from simulators.cameras.geometry import View
from simulators.cameras.spec import SceneKind
from simulators.cameras.zones import signed_distance

FAR_M = 120.0  # nothing is placed beyond this distance: it would be a few pixels tall


@dataclass(frozen=True, slots=True)
class Facade:
    """A row of buildings whose fronts stand on the plane q = `q`, split along the street at `edges`."""

    q: float
    edges: tuple[float, ...]  # s where one building ends and the next begins
    heights: tuple[float, ...]  # one per building: len(edges) + 1
    walls: tuple[Colour, ...]
    signs: tuple[Colour, ...]  # shop signboards on the ground floor
    hoarding: bool  # a construction site's fence of panels instead of shopfronts


@dataclass(frozen=True, slots=True)
class Prop:
    """A static object standing on the ground: a pile, a stack, a hut, a lamp post or a tree."""

    kind: str
    ground: Point
    width_m: float
    height_m: float
    colour: Colour


@dataclass(frozen=True, slots=True)
class Layout:
    """The static world: façades, the walkable band between them, the road, the ground's look, props."""

    kind: SceneKind
    facades: tuple[Facade, ...]
    walk_q: tuple[float, float]
    road_q: tuple[float, float] | None
    tile_m: float
    pavement: Colour
    road: Colour
    props: tuple[Prop, ...]


def hsv_colour(rng: np.random.Generator, hue: tuple[int, int], sat: tuple[int, int], val: tuple[int, int]) -> Colour:
    """A random colour with OpenCV hue (0-180), saturation and value drawn from these ranges."""
    hsv = np.array([[[rng.integers(*hue), rng.integers(*sat), rng.integers(*val)]]], dtype=np.uint8)
    b, g, r = (int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])
    return b, g, r


def _zone_extent_q(view: View, zones: tuple[Zone, ...]) -> tuple[float, float]:
    qs = [0.0]
    for zone in zones:
        for x, y in zone.polygon:
            if y > view.horizon_y + 2:
                ground_x, ground_z = view.to_ground(x, y)
                if ground_z < FAR_M:
                    qs.append(view.street_coords(ground_x, ground_z)[1])
    return min(qs), max(qs)


def _facade(rng: np.random.Generator, q: float, street: bool, hoarding: bool) -> Facade:
    widths = rng.uniform(7, 25, size=40)
    edges = tuple(float(e) for e in np.cumsum(widths) - 250)
    heights = tuple(float(h) for h in (rng.uniform(6, 36, size=41) if street else rng.uniform(12, 45, size=41)))
    walls = tuple(hsv_colour(rng, (5, 30), (10, 90), (120, 230)) if rng.random() < 0.7
                  else hsv_colour(rng, (90, 120), (5, 60), (140, 230)) for _ in range(41))
    signs = tuple(hsv_colour(rng, (0, 180), (120, 255), (120, 255)) for _ in range(41))
    return Facade(q, edges, heights, walls, signs, hoarding)


def plan_layout(kind: SceneKind, view: View, zones: tuple[Zone, ...], texture_seed: int) -> Layout:
    """The static world for this view, kept clear of the camera's zones so that they lie on open ground."""
    rng = np.random.default_rng([texture_seed, 0x1A70])
    zone_q = _zone_extent_q(view, zones)
    if kind is SceneKind.STREET:
        left = min(-float(rng.uniform(4, 14)), zone_q[0] - 1.0)
        right = max(float(rng.uniform(4, 14)), zone_q[1] + 1.0)
        sidewalks = rng.uniform(2.5, 6.0, size=2)
        road = (left + sidewalks[0], right - sidewalks[1])
        furniture = _street_furniture(rng, view, zones, road if road[1] - road[0] > 4 else (left + 1.5, right - 1.5))
        return Layout(
            kind, (_facade(rng, left, True, False), _facade(rng, right, True, False)), (left + 0.3, right - 0.3),
            road if road[1] - road[0] > 4 else None, float(rng.uniform(0.3, 0.7)),
            hsv_colour(rng, (5, 25), (10, 60), (150, 215)), hsv_colour(rng, (0, 180), (0, 15), (70, 105)), furniture,
        )
    # the far side of the site is a hoarding with the building going up behind it; place it beyond every zone
    ahead = -1.0 if view.across[1] < 0 else 1.0
    wall_row = view.horizon_y + float(rng.uniform(0.04, 0.15)) * (view.height - view.horizon_y)
    top_of_zones = min((y for zone in zones for _, y in zone.polygon), default=view.height)
    wall_row = max(min(wall_row, top_of_zones - 4), view.horizon_y + 1)
    distance = abs(view.across[1]) * view.to_ground(view.width / 2, wall_row)[1]
    back = ahead * min(max(distance, 20.0), FAR_M * 2)
    walk = (min(back, -back), max(back, -back))
    props: list[Prop] = []
    for _ in range(int(rng.integers(3, 8))):
        x, y = float(rng.uniform(0, view.width)), float(rng.uniform(max(wall_row, 0) + 10, view.height * 1.1))
        ground = view.to_ground(x, y)
        kind_name = str(rng.choice(["pile", "stack", "hut"], p=[0.5, 0.3, 0.2]))
        size = {"pile": (rng.uniform(2, 5), rng.uniform(1, 2.5)), "stack": (rng.uniform(2, 5), rng.uniform(0.4, 1.2)),
                "hut": (rng.uniform(4, 6), rng.uniform(2.4, 2.9))}[kind_name]
        colour = {"pile": hsv_colour(rng, (8, 22), (40, 110), (90, 170)),
                  "stack": hsv_colour(rng, (0, 180), (0, 60), (70, 160)),
                  "hut": hsv_colour(rng, (95, 115), (90, 200), (150, 230))}[kind_name]
        props.append(Prop(kind_name, ground, float(size[0]), float(size[1]), colour))
    return Layout(
        kind, (_facade(rng, back, False, True),), walk, None, 1.0,
        hsv_colour(rng, (10, 22), (35, 90), (100, 165)), (0, 0, 0), tuple(props),
    )


def _street_furniture(rng: np.random.Generator, view: View, zones: tuple[Zone, ...],
                      kerbs: tuple[float, float]) -> tuple[Prop, ...]:
    """Trees and lamp posts along both kerbs, except where they would stand in a zone."""
    ax, az = view.axis
    nx, nz = view.across
    props = []
    for q in (kerbs[0] - 0.6, kerbs[1] + 0.6):
        spacing = float(rng.uniform(8, 16))
        for s in np.arange(float(rng.uniform(-spacing, 0)), FAR_M, spacing):
            x_m, z_m = ax * s + nx * q, az * s + nz * q
            if not 1.0 < z_m < FAR_M:
                continue
            x, y = view.to_image(x_m, z_m)
            if any(_near_zone(zone, x, y) for zone in zones) or not view.box_on_screen(x, y, 2.0, 8.0):
                continue
            tree = rng.random() < 0.6
            props.append(Prop("tree" if tree else "lamp", (x_m, z_m), float(rng.uniform(2.5, 4.5)) if tree else 0.15,
                              float(rng.uniform(4.5, 8.0)), hsv_colour(rng, (35, 75), (80, 200), (50, 130))))
    return tuple(props)


def _near_zone(zone: Zone, x: float, y: float) -> bool:
    """Whether the image point lies inside the zone or near its edge."""
    return signed_distance(zone, x, y) > -10


def sun_vector(azimuth_deg: float, elevation_deg: float) -> Point:
    """Shadow length and direction on the ground per metre of object height, as (X, Z)."""
    length = 1 / math.tan(math.radians(elevation_deg))
    azimuth = math.radians(azimuth_deg)
    return math.sin(azimuth) * length, math.cos(azimuth) * length
