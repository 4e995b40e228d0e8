"""The static layer of a scene: ground, walls and sky traced per pixel once, then lit for the conditions.

Each pixel's ray is followed to what it meets first: the ground, one of the walls, or the sky, and textured in
world units (paving joints, lane paint, soil grain, windows by floor), so the texture shrinks with distance as
the camera's perspective demands. Far detail fades instead of shimmering: a joint or rut is drawn with the
share of the pixel's footprint it covers. Lighting is applied on top: at night a light map of street lamps or
floodlights and lit windows; in clear weather the shadows of façades, fences and furniture, which turn slowly
with the sun and are redrawn every few seconds of scene time (a step too small to see).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from simulators.cameras.second.camera import PoleCamera
from simulators.cameras.second.noise import as_float, fbm
from simulators.cameras.second.params import Kind, Params, Weather
from simulators.cameras.second.shapes import (
    Image,
    Light,
    draw_box,
    draw_mound,
    draw_pole,
    ground_to_image,
    shadow_outline,
)
from simulators.cameras.second.world import Prop, Wall, World

Field = npt.NDArray[np.float32]
SHADOW_STEP_S = 5.0  # static shadows are redrawn this often (the sun turns < 0.2° in between)
SHADOW_STRENGTH = 0.45  # share of the light a hard shadow takes from the ground
LIGHT_STEP = 4  # the night light map is computed on every 4th pixel and smoothly enlarged
SKY, GROUND = 0, 1  # pixel classes; walls are 2, 3, ... in the world's order
WEATHER_LIGHT = {Weather.CLEAR: 1.0, Weather.OVERCAST: 0.86, Weather.RAIN: 0.74}
NIGHT_AMBIENT = np.array([0.2, 0.15, 0.13], np.float32)  # moonlight and sky glow, bluish (BGR)
LAMP_COLOURS = (np.array([0.45, 0.78, 1.0], np.float32), np.array([1.0, 0.97, 0.9], np.float32))  # sodium, LED


def sun_direction(params: Params, t_s: float) -> tuple[float, float] | None:
    """Shadow length and direction on the ground per metre of height at time t, or None without hard shadows."""
    if params.night or params.weather is not Weather.CLEAR:
        return None
    azimuth = math.radians(params.sun_azimuth_deg + params.sun_drift_deg_per_min * t_s / 60.0)
    length = 1.0 / math.tan(math.radians(params.sun_elevation_deg))
    return -math.sin(azimuth) * length, -math.cos(azimuth) * length


class Backdrop:
    """The scene without anything that moves, at any time, and the light a figure gets where it stands."""

    def __init__(self, camera: PoleCamera, world: World, params: Params) -> None:
        self.camera, self.world, self.params = camera, world, params
        rng = np.random.default_rng([params.texture_seed, 0xBAC])
        self.classes, self.base, self._windows = _trace(camera, world, params, rng)
        self.night_light: Field | None = None
        self._emissive: Field | None = None
        if params.night:
            self.night_light, self._emissive = _night_light(camera, world, self.classes, rng)
        self._cached: tuple[int, Image, Field | None] | None = None

    def _bucket(self, t_s: float) -> int:
        return math.floor(t_s / SHADOW_STEP_S) if sun_direction(self.params, t_s) is not None else 0

    def at(self, t_s: float) -> Image:
        """The static frame at time t (shared: copy it before drawing on it)."""
        bucket = self._bucket(t_s)
        if self._cached is None or self._cached[0] != bucket:
            image, mask = self._render(bucket * SHADOW_STEP_S)
            self._cached = (bucket, image, mask)
        return self._cached[1]

    def light_at(self, t_s: float, x: float, y: float) -> Light:
        """The light on a figure standing at image point (x, y): lamps at night, the weather's by day, less in
        the shade of a wall."""
        height, width = self.classes.shape
        col, row = min(max(int(x), 0), width - 1), min(max(int(y), 0), height - 1)
        if self.night_light is not None:
            b, g, r = self.night_light[row // LIGHT_STEP, col // LIGHT_STEP]
            return float(b), float(g), float(r)
        level = WEATHER_LIGHT[self.params.weather]
        self.at(t_s)
        mask = self._cached[2] if self._cached else None
        if mask is not None:
            level *= 1.0 - SHADOW_STRENGTH * float(mask[row, col])
        return level, level, level

    def _render(self, t_s: float) -> tuple[Image, Field | None]:
        params = self.params
        mask: Field | None = None
        if self.night_light is not None and self._emissive is not None:
            gain = cv2.resize(self.night_light, (self.camera.width, self.camera.height), interpolation=cv2.INTER_LINEAR)
            glow = cv2.resize(self._emissive, (self.camera.width, self.camera.height), interpolation=cv2.INTER_LINEAR)
            lit = self.base.astype(np.float32) * gain + glow * 255.0 + self._windows
            image = np.clip(lit, 0, 255).astype(np.uint8)
        else:
            level = WEATHER_LIGHT[params.weather]
            sun = sun_direction(params, t_s)
            if sun is None:
                flat = self.base.astype(np.float32) * level + (1 - level) * 60.0  # flat light lifts the shadows
                image = np.clip(flat, 0, 255).astype(np.uint8)
            else:
                mask = self._shadow_mask(sun)
                gain = 1.0 - SHADOW_STRENGTH * mask
                walls = self.classes >= 2
                gain[walls] = self._wall_light(sun)
                image = np.clip(self.base.astype(np.float32) * gain[..., None], 0, 255).astype(np.uint8)
        self._draw_props(image, t_s)
        return image, mask

    def _wall_light(self, sun: tuple[float, float]) -> float:
        """A façade facing the sun is fully lit, one turned away stands in its own shade."""
        normal = self.world.axes.n
        facing = -(sun[0] * normal[0] + sun[1] * normal[1])
        return 1.0 if facing < 0 else 1.0 - SHADOW_STRENGTH * min(facing * 2.0, 1.0)

    def _shadow_mask(self, sun: tuple[float, float]) -> Field:
        camera, world = self.camera, self.world
        mask = np.zeros(self.classes.shape, np.uint8)
        outlines: list[npt.NDArray[np.float64]] = []
        for wall in world.walls[:1]:
            outlines.extend(_wall_shadows(world, wall, sun))
        for prop in world.props:
            outlines.append(shadow_outline(_footprint(world, prop), prop.height_m, sun))
        for outline in outlines:
            polygon = ground_to_image(camera, outline)
            if polygon is not None:
                cv2.fillPoly(mask, [np.round(polygon * 4).astype(np.int32)], 255, cv2.LINE_AA, 2)
        mask[self.classes != GROUND] = 0
        soft = max(3, (camera.width // 320) | 1)
        return cv2.GaussianBlur(mask, (soft, soft), 0).astype(np.float32) / 255.0

    def _draw_props(self, image: Image, t_s: float) -> None:
        camera, world = self.camera, self.world
        ordered = sorted(world.props, key=lambda p: -float(camera.to_camera(np.array([[*world.axes.world(p.s, p.q),
                                                                                          0.0]]))[0, 2]))
        for prop in ordered:
            x, y = world.axes.world(prop.s, prop.q)
            foot = camera.point(x, y)
            light = self._prop_light(t_s, foot)
            yaw = world.axes.heading(1.0)
            if prop.kind in ("lamp", "mast"):
                draw_pole(image, camera, (x, y, 0.0), (x, y, prop.height_m), 0.08 if prop.kind == "lamp" else 0.15,
                          prop.colour, light)
                head_x, head_y = world.axes.world(prop.s, prop.q - 0.8)
                draw_pole(image, camera, (x, y, prop.height_m), (head_x, head_y, prop.height_m - 0.2), 0.05,
                          prop.colour, light)
                draw_box(image, camera, head_x, head_y, prop.height_m - 0.35, yaw, (0.5, 0.3, 0.18), (200, 200, 200),
                         (1.6, 1.6, 1.6) if self.params.night else light)
            elif prop.kind == "pile":
                a, n = world.axes.a, world.axes.n
                radius = max(prop.length_m, prop.width_m) / 2
                draw_mound(image, camera, x, y, radius * abs(a[0]) + prop.width_m / 2 * abs(n[0]),
                           radius * abs(a[1]) + prop.width_m / 2 * abs(n[1]), prop.height_m, prop.colour, light)
            elif prop.kind == "bench":
                draw_box(image, camera, x, y, 0.4, yaw, (prop.length_m, prop.width_m, 0.06), prop.colour, light)
                back_x, back_y = world.axes.world(prop.s, prop.q + prop.width_m / 2)
                draw_box(image, camera, back_x, back_y, 0.45, yaw, (prop.length_m, 0.06, 0.45), prop.colour, light)
                for end in (-0.4, 0.4):
                    leg_x, leg_y = world.axes.world(prop.s + end * prop.length_m, prop.q)
                    draw_box(image, camera, leg_x, leg_y, 0.0, yaw, (0.06, prop.width_m, 0.4), (50, 50, 55), light)
            else:
                top = (60, 140, 70) if prop.kind == "planter" else None
                draw_box(image, camera, x, y, 0.0, yaw, (prop.length_m, prop.width_m, prop.height_m), prop.colour,
                         light, top)

    def _prop_light(self, t_s: float, foot: tuple[float, float]) -> Light:
        if self.night_light is not None:
            return self.light_at(t_s, *foot)
        level = WEATHER_LIGHT[self.params.weather]
        return level, level, level


def _footprint(world: World, prop: Prop) -> npt.NDArray[np.float64]:
    half_l, half_w = prop.length_m / 2, prop.width_m / 2
    return np.array([world.axes.world(prop.s + ds, prop.q + dq)
                     for ds, dq in ((-half_l, -half_w), (half_l, -half_w), (half_l, half_w), (-half_l, half_w))])


def _wall_shadows(world: World, wall: Wall, sun: tuple[float, float]) -> list[npt.NDArray[np.float64]]:
    """The shadows a wall's buildings cast on the ground in front of it (none if the sun stands in front)."""
    n = world.axes.n
    if sun[0] * n[0] + sun[1] * n[1] >= 0:
        return []
    outlines = []
    for segment in wall.segments:
        base = np.array([world.axes.world(segment.s0, wall.q), world.axes.world(segment.s1, wall.q)])
        tips = base + segment.height_m * np.asarray(sun)
        outlines.append(np.vstack([base, tips[::-1]]))
    return outlines


def _trace(camera: PoleCamera, world: World, params: Params, rng: np.random.Generator
           ) -> tuple[npt.NDArray[np.uint8], Image, Field]:
    """Pixel classes, the unlit base image and the glow of lit windows at night, by following every pixel's ray."""
    rays = camera.rays().astype(np.float32)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    dx, dy, dz = rays[..., 0], rays[..., 1], rays[..., 2]
    mount = np.float32(camera.mount_m)
    (a0, a1), (n0, n1) = world.axes.a, world.axes.n
    along, across = dx * a0 + dy * a1, dx * n0 + dy * n1
    with np.errstate(divide="ignore"):
        t_hit = np.where(dz < -1e-4, mount / -dz, np.inf).astype(np.float32)
    classes = np.where(np.isfinite(t_hit), GROUND, SKY).astype(np.uint8)
    image = np.zeros((*classes.shape, 3), np.float32)
    windows = np.zeros((*classes.shape, 3), np.float32)
    wall_hits: list[tuple[npt.NDArray[np.bool_], Field, Field]] = []
    for index, wall in enumerate(world.walls):
        with np.errstate(divide="ignore", invalid="ignore"):
            t_wall = np.where(across > 1e-4, np.float32(wall.q) / across, np.inf).astype(np.float32)
        z = mount + dz * t_wall
        s = along * t_wall
        tops = _heights(wall, s)
        claim = (t_wall < t_hit) & (z >= 0) & (z <= tops)
        classes[claim] = 2 + index
        t_hit = np.where(claim, t_wall, t_hit)
        wall_hits.append((claim, s, z))
    ground = classes == GROUND
    t_ground = np.where(ground, t_hit, 0)
    gs, gq = as_float(along * t_ground), as_float(across * t_ground)
    coarse, fine = fbm(rng, 256, 5, 4), fbm(rng, 256, 3, 16)
    grain = as_float(0.82 + 0.3 * _sample(coarse, gs / 0.25, gq / 0.25)
                     + 0.12 * (_sample(fine, gs / 0.03, gq / 0.03) - 0.5))
    footprint = as_float(t_ground[ground] / np.float32(camera.focal_px) / np.maximum(-dz[ground], 0.1))
    image[ground] = _ground_texture(world, rng, gs[ground], gq[ground], footprint, grain[ground])
    for index, (claim, s, z) in enumerate(wall_hits):
        if claim.any():
            image[claim], windows[claim] = _wall_texture(world.walls[index], rng, s[claim], z[claim])
    sky = classes == SKY
    if sky.any():
        image[sky] = _sky(params, dz[sky])
    if params.weather is Weather.RAIN:
        image[ground] *= 0.78  # wet ground is darker
    return classes, np.clip(image, 0, 255).astype(np.uint8), windows


def _heights(wall: Wall, s: Field) -> Field:
    edges = np.array([segment.s0 for segment in wall.segments] + [wall.segments[-1].s1], np.float32)
    heights = np.array([0.0] + [segment.height_m for segment in wall.segments] + [0.0], np.float32)
    return heights[np.searchsorted(edges, s, side="right")]


def _coverage(distance: Field, half_width: float, footprint: Field) -> Field:
    """The share of a pixel (of this footprint, metres) covered by a line of this half width at this distance."""
    fp = np.maximum(footprint, 1e-4)
    return np.clip((half_width + fp / 2 - distance) / fp, 0.0, 1.0)


def _to_fold(value: Field, period: float) -> Field:
    """Distance to the nearest multiple of `period`."""
    phase = np.mod(value, period)
    return np.minimum(phase, period - phase)


def _sample(texture: Field, u: Field, v: Field) -> Field:
    return as_float(cv2.remap(texture, as_float(u), as_float(v), cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP))


def _ground_texture(world: World, rng: np.random.Generator, s: Field, q: Field, footprint: Field,
                    grain: Field) -> Field:
    """Colours of ground pixels (flat arrays of their s, q, footprint and grain), each surface textured only
    where it lies."""
    bands = world.bands
    names = [band.surface for band in bands] + (["roof"] if world.kind is Kind.STREET else ["verge", "roof"])
    code = np.minimum(np.searchsorted(np.array([band.q1 for band in bands]), q, side="right"), len(bands) - 1)
    code[q > world.walls[0].q] = len(bands)
    if world.kind is Kind.CONSTRUCTION:
        code[q > world.walls[1].q] = len(bands) + 1
    tile = (0.6, 0.3) if rng.random() < 0.5 else (0.4, 0.4)
    ruts = _rut_lines(rng, world)
    out = np.empty((s.size, 3), np.float32)
    for index, name in enumerate(names):
        chosen = code == index
        if chosen.any():
            out[chosen] = _surface(world, name, s[chosen], q[chosen], footprint[chosen], grain[chosen], tile, ruts)
    return out


def _surface(world: World, name: str, s: Field, q: Field, footprint: Field, grain: Field,
             tile: tuple[float, float], ruts: list[tuple[float, float, float, float]]) -> Field:
    """One surface's colours at these places."""
    if name == "tiles":
        tint = _tile_tint(s, q, *tile)
        joints = np.maximum(_coverage(_to_fold(s, tile[0]), 0.006, footprint),
                            _coverage(_to_fold(q, tile[1]), 0.006, footprint))
        fade = np.clip(tile[1] / (3 * np.maximum(footprint, 1e-4)) - 0.3, 0, 1)
        shade = as_float(tint * (1 - 0.35 * joints * fade) * grain)
        base = np.array(world.ground, np.float32)
    elif name == "kerb":
        shade = as_float(grain * (1 - 0.4 * _coverage(_to_fold(s, 1.0), 0.01, footprint)))
        base = np.array([175, 178, 180], np.float32)
    elif name == "asphalt":
        paint = _lane_paint(world, s, q, footprint)[:, None]
        asphalt = np.array(world.road, np.float32) * (0.85 + 0.3 * (grain - 0.82))[:, None]
        return as_float(asphalt * (1 - paint) + np.float32(215) * paint)
    elif name in ("soil", "track"):
        shade = as_float(grain * (1 - (0.25 if name == "soil" else 0.3) * _ruts(ruts, s, q, footprint)))
        base = np.array(world.ground if name == "soil" else world.road, np.float32)
    elif name == "verge":
        shade, base = grain, np.array([95, 120, 110], np.float32)
    else:
        shade, base = grain, np.array([104, 106, 111], np.float32)
    return as_float(base * shade[:, None])


def _tile_tint(s: Field, q: Field, length: float, width: float) -> Field:
    i = np.floor(s / length).astype(np.int64)
    j = np.floor(q / width).astype(np.int64)
    mixed = (i * 73856093) ^ (j * 19349663)
    return as_float(0.93 + 0.14 * ((mixed & 1023) / 1023.0))


def _lane_paint(world: World, s: Field, q: Field, footprint: Field) -> Field:
    """White paint: a dashed line between the lanes and solid lines along the kerbs."""
    road = next(band for band in world.bands if band.surface == "asphalt")
    paint = np.maximum(_coverage(np.abs(q - (road.q0 + 0.35)), 0.07, footprint),
                       _coverage(np.abs(q - (road.q1 - 0.35)), 0.07, footprint))
    if len(world.lanes) > 1:
        middle = _coverage(np.abs(q - (road.q0 + road.q1) / 2), 0.07, footprint) * (np.mod(s, 9.0) < 3.0)
        paint = np.maximum(paint, middle)
    return as_float(paint * 0.85)


def _rut_lines(rng: np.random.Generator, world: World) -> list[tuple[float, float, float, float]]:
    """Tyre tracks wandering across the ground: (centre q, swing, wavelength, phase) of each pair of ruts."""
    low, high = world.pavement_q
    return [(float(rng.uniform(low - 4, high)), float(rng.uniform(1, 5)), float(rng.uniform(20, 60)),
             float(rng.uniform(0, 6.3))) for _ in range(int(rng.integers(2, 5)))]


def _ruts(lines: list[tuple[float, float, float, float]], s: Field, q: Field, footprint: Field) -> Field:
    """How much of each place is covered by a rut."""
    out = np.zeros(s.shape, np.float32)
    for centre, swing, wavelength, phase in lines:
        line = centre + swing * np.sin(s / wavelength * 2 * math.pi + phase)
        for side in (-0.9, 0.9):
            out = np.maximum(out, _coverage(np.abs(q - line - side), 0.22, footprint))
    return out


def _wall_texture(wall: Wall, rng: np.random.Generator, s: Field, z: Field) -> tuple[Field, Field]:
    """The colour of wall pixels at (s, z), and the light their windows give off at night."""
    starts = np.array([segment.s0 for segment in wall.segments], np.float32)
    index = np.clip(np.searchsorted(starts, s, side="right") - 1, 0, len(wall.segments) - 1)
    colours = np.array([segment.wall for segment in wall.segments], np.float32)[index]
    trims = np.array([segment.trim for segment in wall.segments], np.float32)[index]
    tops = np.array([segment.height_m for segment in wall.segments], np.float32)[index]
    local = s - starts[index]
    noise = 0.94 + 0.12 * rng.random(s.shape).astype(np.float32)
    out = colours * noise[:, None]
    glow = np.zeros_like(out)
    if wall.style == "hoarding":
        joints = _to_fold(local, 2.0) < 0.05
        out[joints] *= 1.25
        out[(z > tops - 0.3) | (z < 0.2)] = np.array(wall.segments[0].trim, np.float32)
        panel = np.floor(local / 2.0).astype(np.int64) + index * 97
        slogan = ((panel * 2654435761) % 10 < 3) & (z > 0.9) & (z < 1.6) & (_to_fold(local, 2.0) > 0.25)
        out[slogan] = np.array([40, 40, 190], np.float32)
        return out, glow
    floor_m, bay_m = (3.0, 3.2) if wall.style == "facade" else (3.2, 2.4)
    fz, bx = np.mod(z, floor_m), np.mod(local, bay_m)
    upper = z > (3.6 if wall.style == "facade" else 0.0)
    window = upper & (fz > 0.9) & (fz < 2.3) & (bx > 0.8) & (bx < bay_m - 0.8) & (z < tops - 0.6)
    cell = (np.floor(z / floor_m).astype(np.int64) * 7919 + np.floor(local / bay_m).astype(np.int64) * 104729
            + index * 31)
    glass = np.array([95, 82, 70], np.float32) * (0.8 + 0.5 * ((cell * 2654435761 % 1000) / 1000.0))[:, None]
    out[window] = glass[window]
    lit = window & ((cell * 40503) % 100 < 35)
    glow[lit] = np.array([90, 170, 220], np.float32) * (0.6 + 0.4 * noise[lit, None])
    out[upper & (fz < 0.15)] *= 0.85
    out[z > tops - 0.4] *= 0.8
    if wall.style == "facade":
        shops = np.array([segment.shop for segment in wall.segments])[index]
        pillar = (local < 0.4) | (local > (np.array([seg.s1 - seg.s0 for seg in wall.segments], np.float32)[index]
                                           - 0.4))
        shopfront = shops & ~pillar & (z < 2.6)
        out[shopfront] = np.array([70, 60, 55], np.float32) * (0.9 + 0.2 * noise[shopfront, None])
        door = shopfront & (_to_fold(local - 1.5, 6.0) < 0.6)
        out[door] = np.array([45, 40, 38], np.float32)
        sign = shops & ~pillar & (z >= 2.7) & (z < 3.4)
        out[sign] = trims[sign]
        glow[shopfront & ~door] = np.array([150, 200, 230], np.float32)
        glow[sign] = trims[sign] * 0.8
    if wall.style == "skyline":
        out = out * 0.7 + np.float32(0.3) * np.array([200, 190, 180], np.float32)
        glow *= 0.5
    return out, glow


def _sky(params: Params, elevation: Field) -> Field:
    """Sky colour by how far above the horizon the ray points."""
    if params.night:
        low, high = np.array([60, 50, 45], np.float32), np.array([25, 15, 10], np.float32)
    elif params.weather is Weather.CLEAR:
        low, high = np.array([235, 215, 195], np.float32), np.array([215, 160, 110], np.float32)
    elif params.weather is Weather.OVERCAST:
        low, high = np.array([222, 222, 218], np.float32), np.array([200, 200, 196], np.float32)
    else:
        low, high = np.array([175, 172, 168], np.float32), np.array([140, 138, 135], np.float32)
    mix = np.clip(elevation / 0.5, 0, 1)[:, None]
    return as_float(low * (1 - mix) + high * mix)


def _night_light(camera: PoleCamera, world: World, classes: npt.NDArray[np.uint8], rng: np.random.Generator
                 ) -> tuple[Field, Field]:
    """The light falling on every place at night (a gain per BGR channel) and what glows by itself (lamp heads,
    lit windows), both at a quarter of the resolution."""
    rays = camera.rays(LIGHT_STEP).astype(np.float32)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    rows, cols = rays.shape[:2]
    small = cv2.resize(classes, (cols, rows), interpolation=cv2.INTER_NEAREST)
    mount = np.float32(camera.mount_m)
    with np.errstate(divide="ignore"):
        t = np.where(rays[..., 2] < -1e-4, mount / -rays[..., 2], 60.0).astype(np.float32)
    across = rays[..., 0] * world.axes.n[0] + rays[..., 1] * world.axes.n[1]
    for index, wall in enumerate(world.walls):
        hit = small == 2 + index
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(hit, np.float32(wall.q) / np.maximum(across, 1e-4), t)
    points = rays * t[..., None] + np.array([0, 0, mount], np.float32)
    gain = np.broadcast_to(NIGHT_AMBIENT, (rows, cols, 3)).copy()
    emissive = np.zeros((rows, cols, 3), np.float32)
    colour = LAMP_COLOURS[int(rng.integers(0, 2))]
    ys, xs = np.mgrid[0:rows, 0:cols].astype(np.float32)
    for prop in world.props:
        if prop.kind not in ("lamp", "mast"):
            continue
        reach = 0.6 * prop.height_m if prop.kind == "lamp" else 0.9 * prop.height_m
        strength = 1.1 if prop.kind == "lamp" else 1.0
        head = np.array([*world.axes.world(prop.s, prop.q - 0.8), prop.height_m], np.float32)
        distance2 = ((points - head) ** 2).sum(axis=-1)
        falloff = np.exp(-distance2 / (2 * reach * reach)).astype(np.float32)
        gain += strength * falloff[..., None] * colour
        hx, hy = camera.point(*head)
        if -20 < hx < camera.width + 20 and -20 < hy < camera.height + 20:
            radius = max(0.6 * camera.scale(*head) / LIGHT_STEP, 1.0)
            blob = np.exp(-(((xs + 0.5) * LIGHT_STEP - hx) ** 2 + ((ys + 0.5) * LIGHT_STEP - hy) ** 2)
                          / (2 * (radius * LIGHT_STEP) ** 2))
            emissive += blob[..., None] * colour
    return gain, np.clip(emissive, 0, 1.5)
