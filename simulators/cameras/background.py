"""The static background, rendered once per scene: sky, façades and ground textured in world coordinates.

Every pixel's ray is intersected with the ground and the façade planes, and the nearer hit is textured from
its world coordinates. Textures are box-filtered by the pixel's footprint on the surface, so that paving
joints and windows fade into their average colour towards the horizon instead of flickering into moiré.
"""

from __future__ import annotations

from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from simulators.cameras.actors import Colour, Point
from simulators.cameras.draw import draw_prop
from simulators.cameras.effects import blur_tileable
from simulators.cameras.geometry import FloatArray, View
from simulators.cameras.layout import Facade, Layout
from simulators.cameras.spec import SceneKind

HAZE: Colour = (205, 200, 195)
SHADOW_GAIN = 0.55  # ground in a building's shadow gets this share of the light
FAR = 1e4


def _coverage(coord: FloatArray, period: float, width: float, footprint: FloatArray) -> FloatArray:
    """How much of each pixel lines `width` wide every `period` metres cover, given the pixel's footprint."""
    d = np.abs((coord / period + 0.5) % 1.0 - 0.5) * period
    overlap = np.clip(np.minimum(d + footprint / 2, width / 2) - np.maximum(d - footprint / 2, -width / 2), 0, None)
    near = np.minimum(overlap / footprint, 1.0)
    averaged = np.clip(footprint / period - 0.5, 0.0, 1.0)  # beyond half a period, only the mean is visible
    return cast(FloatArray, near * (1 - averaged) + (width / period) * averaged)


def _band(coord: FloatArray, low: float, high: float, footprint: FloatArray) -> FloatArray:
    """How much of each pixel lies between `low` and `high`, given the pixel's footprint."""
    overlap = np.minimum(coord + footprint / 2, high) - np.maximum(coord - footprint / 2, low)
    return np.clip(overlap / footprint, 0.0, 1.0)


def _hash(a: FloatArray, b: FloatArray, salt: int) -> FloatArray:
    """A repeatable pseudo-random value in [0, 1] per integer cell (a, b): per-tile and per-window variation."""
    x = (np.floor(a).astype(np.int64) * 73856093) ^ (np.floor(b).astype(np.int64) * 19349663) ^ salt
    x = (x ^ (x >> 13)) * 1274126177
    return ((x >> 11) & 0xFFFF).astype(np.float64) / 65535.0


class _Noise:
    """Tileable noise textures sampled at world coordinates, fading out where pixels are too coarse to show it."""

    def __init__(self, rng: np.random.Generator) -> None:
        fine = rng.normal(0, 1, (256, 256)).astype(np.float32)
        self.fine = blur_tileable(fine, 0.8)
        coarse = blur_tileable(rng.normal(0, 1, (128, 128)).astype(np.float32), 6)
        self.coarse = coarse / max(float(coarse.std()), 1e-6)

    def sample(self, a: FloatArray, b: FloatArray, scale_m: float, footprint: FloatArray, coarse: bool = False,
               ) -> FloatArray:
        """Noise of unit spread at world position (a, b), `scale_m` metres per texel."""
        texture = self.coarse if coarse else self.fine
        size = texture.shape[0]
        map_x = np.mod(a / scale_m, size).astype(np.float32)
        map_y = np.mod(b / scale_m, size).astype(np.float32)
        values = cv2.remap(texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        fade = np.clip(1.5 - footprint / scale_m / (8 if coarse else 2), 0.0, 1.0)
        return values.astype(np.float64) * fade


def _footprint(*coords: FloatArray) -> FloatArray:
    """Metres of surface one pixel spans, the largest over the surface's coordinates and image axes."""
    spans = [np.abs(np.gradient(c, axis=axis)) for c in coords for axis in (0, 1)]
    return cast(FloatArray, np.clip(np.nan_to_num(np.maximum.reduce(spans), nan=FAR, posinf=FAR), 1e-3, FAR))


def _rgb(colour: Colour) -> npt.NDArray[np.float64]:
    return np.array(colour, dtype=np.float64)


def _facade_texture(facade: Facade, s: FloatArray, up: FloatArray, index: npt.NDArray[np.intp],
                    noise: _Noise) -> npt.NDArray[np.float64]:
    """Walls with windows above a ground floor of shopfronts and signboards, or a site's hoarding."""
    footprint = _footprint(s, up)
    wall = np.array(facade.walls, dtype=np.float64)[index]
    wall *= (1 + 0.05 * noise.sample(s, up, 0.05, footprint) + 0.06 * noise.sample(s, up, 0.8, footprint, True))[
        ..., None]
    window_tint = 0.35 + 0.25 * _hash(s / 2.6, up / 3.2, 7)[..., None]
    windows = (_coverage(s, 2.6, 1.4, footprint) * _coverage(up - 1.6, 3.2, 1.7, footprint))[..., None]
    colour = wall * (1 - windows) + _rgb((95, 80, 70)) * window_tint * 2 * windows
    signs = np.array(facade.signs, dtype=np.float64)[index]
    if facade.hoarding:
        panel = _rgb((165, 120, 50)) * (1 - 0.25 * _coverage(s, 2.0, 0.08, footprint))[..., None]
        stripe = _band(up, 1.9, 2.2, footprint)[..., None]
        panel = panel * (1 - stripe) + _rgb((235, 235, 235)) * stripe
        frame = _rgb((150, 150, 148)) * (1 - 0.6 * (_coverage(up, 3.0, 0.35, footprint)
                                                   + _coverage(s, 6.0, 0.5, footprint)).clip(0, 1))[..., None]
        return np.where((up < 2.5)[..., None], panel, frame)
    glass = _rgb((70, 62, 55)) * (0.7 + 0.6 * _hash(s / 5.0, up * 0, 11))[..., None]
    shopfront = _band(up, 0.3, 2.7, footprint)[..., None] * (1 - _coverage(s, 5.0, 0.5, footprint))[..., None]
    sign = _band(up, 2.8, 3.5, footprint)[..., None]
    ground_floor = (up < 3.8)[..., None]
    lower = wall * (1 - shopfront - sign) + glass * shopfront + signs * sign
    return np.where(ground_floor, lower, colour)


def _ground_texture(layout: Layout, s: FloatArray, q: FloatArray, noise: _Noise) -> npt.NDArray[np.float64]:
    """Paving tiles and asphalt with lane markings on a street; bare earth and gravel on a site."""
    footprint = _footprint(s, q)
    grain = noise.sample(s, q, 0.03, footprint)[..., None]
    blotches = noise.sample(q, s, 1.2, footprint, True)[..., None]
    if layout.kind is SceneKind.CONSTRUCTION:
        earth = _rgb(layout.pavement)
        gravel = earth * 0.8 + 20
        mix = np.clip(0.5 + 0.6 * blotches, 0, 1)
        tracks = (_coverage(s + 0.3 * q, 23.0, 0.45, footprint) + _coverage(s + 0.3 * q - 1.8, 23.0, 0.45, footprint))
        return (earth * (1 - mix) + gravel * mix) * (1 + 0.15 * grain) * (1 - 0.15 * tracks[..., None])
    tile = layout.tile_m
    jitter = (_hash(s / tile, q / tile, 3) - 0.5)[..., None] * np.clip(1.5 - footprint / tile, 0, 1)[..., None]
    joints = np.clip(_coverage(s, tile, 0.03, footprint) + _coverage(q, tile, 0.03, footprint), 0, 1)[..., None]
    paving = _rgb(layout.pavement) * (1 + 0.2 * jitter + 0.06 * grain + 0.05 * blotches) * (1 - 0.45 * joints)
    if layout.road_q is None:
        return paving
    low, high = layout.road_q
    road_share = _band(q, low, high, footprint)[..., None]
    kerb = (_band(q, low - 0.2, low, footprint) + _band(q, high, high + 0.2, footprint))[..., None]
    centre = (low + high) / 2
    dashes = (_band(q, centre - 0.08, centre + 0.08, footprint)
              * np.clip(_band(np.mod(s, 9.0), 0.0, 3.0, footprint) + _band(np.mod(s, 9.0), 9.0, 12.0, footprint),
                        0, 1))[..., None]
    asphalt = _rgb(layout.road) * (1 + 0.08 * grain + 0.06 * blotches)
    asphalt = asphalt * (1 - dashes) + _rgb((215, 215, 210)) * dashes
    return (paving * (1 - road_share - kerb) + asphalt * road_share + _rgb((185, 185, 180)) * kerb).clip(0, 255)


def _sky(v: FloatArray) -> npt.NDArray[np.float64]:
    elevation = np.clip(-v * 3, 0, 1)[..., None]
    return _rgb((215, 210, 205)) * (1 - elevation) + _rgb((225, 180, 140)) * elevation


def _shadowed(layout: Layout, view: View, s: FloatArray, q: FloatArray, sun: Point) -> npt.NDArray[np.bool_]:
    """Ground points from which the way to the sun runs into a façade below its roof."""
    ax, az = view.axis
    nx, nz = view.across
    shadow_s, shadow_q = ax * sun[0] + az * sun[1], nx * sun[0] + nz * sun[1]
    shaded = np.zeros(s.shape, dtype=bool)
    if abs(shadow_q) < 1e-6:
        return shaded
    for facade in layout.facades:
        rise = (q - facade.q) / shadow_q  # metres up the façade where the sun ray from the point meets it
        along = s - shadow_s * rise
        tops = np.array(facade.heights)[np.searchsorted(facade.edges, along)]
        shaded |= (rise > 0) & (rise < tops)
    return shaded


def render_background(view: View, layout: Layout, sun: Point, seed: int) -> npt.NDArray[np.uint8]:
    """The scene without anything that moves, as a BGR image."""
    noise = _Noise(np.random.default_rng([seed, 0xBA5E]))
    u, v = view.ground_grid()
    ax, az = view.axis
    nx, nz = view.across
    along, across = ax * u + az, nx * u + nz
    image = _sky(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(v > 1e-9, view.camera_height_m / v, np.inf)
        ground = np.isfinite(depth)
        for facade in layout.facades:
            t = np.where(np.abs(across) > 1e-9, facade.q / across, -1.0)
            up = view.camera_height_m - t * v
            s = t * along
            index = np.searchsorted(facade.edges, np.nan_to_num(s))
            hit = (t > 0) & (t < depth) & (up >= 0) & (up <= np.array(facade.heights)[index])
            if hit.any():
                lit = facade.q * (view.across[0] * sun[0] + view.across[1] * sun[1]) < 0
                texture = _facade_texture(facade, np.where(hit, s, 0), np.where(hit, up, 0), index, noise)
                image[hit] = texture[hit] * (1.0 if lit else 0.72)
                depth[hit] = t[hit]
                ground &= ~hit
        t = np.where(ground, depth, 1.0)
        s, q = t * along, t * across
    behind = ground & ((q < layout.walk_q[0] - 1) | (q > layout.walk_q[1] + 1))
    floor = ground & ~behind
    texture = _ground_texture(layout, np.where(floor, s, 0), np.where(floor, q, 0), noise)
    light = np.where(_shadowed(layout, view, s, q, sun), SHADOW_GAIN, 1.0)[..., None]
    image[floor] = (texture * light)[floor]
    image[behind] = _rgb(HAZE) * 0.85
    haze = np.where(np.isfinite(depth), 1 - np.exp(-np.minimum(depth, FAR) / 350.0), 0.0)[..., None]
    image = image * (1 - haze) + _rgb(HAZE) * haze
    result: npt.NDArray[np.uint8] = np.clip(image, 0, 255).astype(np.uint8)
    for prop in sorted(layout.props, key=lambda p: -p.ground[1]):
        draw_prop(result, view, prop, sun)
    return result
