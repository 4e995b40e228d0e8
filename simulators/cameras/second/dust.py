"""Dust plumes as streams of billows: each emitted from the source, rising, growing, drifting and thinning.

A plume is one or more puffs of emission (a steady column, a wind-sheared drift, or a digger's bucket dumping
every few seconds). Every `EMIT_STEP_S` of emission releases a billow whose opacity starts at the emission's
strength and fades as it spreads. The plume's density at an instant is the summed opacity of its billows in the
air: it is what the ground truth thresholds ("visible" = at least half the plume's peak density), and what the
frame shows, as a veil of the dust's colour over whatever lies behind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import numpy.typing as npt

from simulators.cameras.second.camera import NEAR_M, PoleCamera
from simulators.cameras.second.noise import as_float, fbm
from simulators.cameras.second.shapes import Colour, Image, Light

EMIT_STEP_S = 0.8
LIFE_SPAN = 2.5  # a billow is drawn for this many of its fade times
MERGE_GAP_S = 10.0  # visible stretches of one plume closer than this are one event
MAX_OPACITY = 0.85
SPRITE_PX = 64
CLOSEST_M = 4.0  # billows nearer the lens than this are left out
Times = tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class Puff:
    """A stretch of emission: it ramps up, holds and ramps down over `length_s`."""

    start_s: float
    length_s: float
    strength: float

    def at(self, t_s: float) -> float:
        """Emission strength at t (0 outside the puff)."""
        age = t_s - self.start_s
        if not 0.0 <= age < self.length_s:
            return 0.0
        ramp = min(3.0, self.length_s / 3)
        return self.strength * min(1.0, age / ramp, (self.length_s - age) / ramp)


@dataclass(frozen=True, slots=True)
class Plume:
    """A source of dust on the ground and how its dust moves."""

    x: float
    y: float
    source_z: float  # a digger's bucket dumps from a height, a churned site from the ground
    zone_id: str | None
    style: str  # "column" | "sheared" | "digger"
    puffs: tuple[Puff, ...]
    colour: Colour
    wind: tuple[float, float]  # drift, m/s
    shear: float  # how much faster the dust drifts per metre it has risen
    rise_mps: float
    radius_m: float  # of a fresh billow
    spread_mps: float
    fade_s: float
    texture: int

    @property
    def start_s(self) -> float:
        """When the first billow is released."""
        return min(puff.start_s for puff in self.puffs)

    @property
    def end_s(self) -> float:
        """When the last billow has thinned away."""
        last = max(puff.start_s + puff.length_s for puff in self.puffs)
        return last + LIFE_SPAN * self.fade_s

    def emissions(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Release times and strengths of the plume's billows."""
        return _emissions(self)

    def opacity(self, age: npt.NDArray[np.float64], strength: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The opacity of billows of these ages and emission strengths (0 before release and once gone)."""
        alive = (age >= 0) & (age < LIFE_SPAN * self.fade_s)
        safe = np.maximum(age, 0)
        return np.where(alive, strength * np.exp(-safe / self.fade_s) * (1 - np.exp(-safe / 0.3)), 0.0)

    def density(self, times: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The plume's density (summed billow opacity) at these times."""
        released, strengths = self.emissions()
        if released.size == 0:
            return np.zeros_like(times)
        return np.asarray(self.opacity(times[:, None] - released[None, :], strengths[None, :]).sum(axis=1))

    def visible(self) -> Times:
        """The stretches during which the plume is at least half as dense as at its peak, gaps < 10 s bridged."""
        times = np.arange(self.start_s, self.end_s, 0.25)
        density = self.density(times)
        if density.size == 0 or density.max() <= 0:
            return ()
        above = density >= 0.5 * density.max()
        runs: list[tuple[float, float]] = []
        start: float | None = None
        for t, on in zip(times, above, strict=True):
            if on and start is None:
                start = float(t)
            elif not on and start is not None:
                runs.append((start, float(t)))
                start = None
        if start is not None:
            runs.append((start, float(times[-1])))
        return merge(runs, MERGE_GAP_S)


@lru_cache(maxsize=256)
def _emissions(plume: Plume) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Worked out once per plume: frames ask for them many times a second."""
    times = np.arange(plume.start_s, max(p.start_s + p.length_s for p in plume.puffs), EMIT_STEP_S)
    strengths = np.array([sum(p.at(float(t)) for p in plume.puffs) for t in times])
    keep = strengths > 0.02
    return times[keep], np.minimum(strengths[keep], 1.0)


def merge(runs: list[tuple[float, float]], gap_s: float) -> Times:
    """Intervals with those closer than `gap_s` joined, in order."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(runs):
        if merged and start - merged[-1][1] < gap_s:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return tuple(merged)


class DustPainter:
    """Draws plumes; billow patterns are made once per scene."""

    def __init__(self, seed: int, camera: PoleCamera) -> None:
        rng = np.random.default_rng([seed, 0xD057])
        ys, xs = np.mgrid[0:SPRITE_PX, 0:SPRITE_PX].astype(np.float32)
        r2 = ((xs - SPRITE_PX / 2 + 0.5) ** 2 + (ys - SPRITE_PX / 2 + 0.5) ** 2) / (SPRITE_PX / 2) ** 2
        falloff = np.exp(-3.0 * r2)
        self._patterns = [falloff * (0.3 + 0.7 * fbm(rng, SPRITE_PX, 3, 3)) for _ in range(4)]
        self._sized: dict[tuple[int, int], npt.NDArray[np.float32]] = {}
        self.camera = camera
        self.work = max(1, camera.width // 320)  # billows are summed at 1/work of the resolution: dust is soft

    def draw(self, image: Image, plume: Plume, t_s: float, light: Light) -> None:
        """The plume as it stands at t: its billows' opacities summed, then laid over the image as a veil."""
        released, strengths = plume.emissions()
        ages = t_s - released
        opacity = plume.opacity(ages, strengths)
        live = np.nonzero(opacity > 0.01)[0]
        if live.size == 0:
            return
        centres, radii = [], []
        for index in live:
            age = float(ages[index])
            rise = plume.rise_mps * 2.5 * (1 - math.exp(-age / 2.5))
            drift = age * (1 + plume.shear * rise)
            centres.append((plume.x + plume.wind[0] * drift + 0.3 * math.sin(1.7 * age + index),
                            plume.y + plume.wind[1] * drift + 0.3 * math.cos(1.3 * age + index),
                            plume.source_z + rise + plume.radius_m * 0.6))
            radii.append(plume.radius_m + plume.spread_mps * age)
        xy, depth = self.camera.project(np.array(centres))
        pixel_r = np.array(radii) * self.camera.focal_px / np.maximum(depth, NEAR_M)
        good = (depth > CLOSEST_M) & (pixel_r < 0.75 * self.camera.width)  # dust blown onto the lens is not drawn
        if not good.any():
            return
        height, width = image.shape[:2]
        x0 = int(max(np.min(xy[good, 0] - pixel_r[good]), 0))
        y0 = int(max(np.min(xy[good, 1] - pixel_r[good]), 0))
        x1 = int(min(np.max(xy[good, 0] + pixel_r[good]) + 1, width))
        y1 = int(min(np.max(xy[good, 1] + pixel_r[good]) + 1, height))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        k = self.work
        canvas = np.zeros(((y1 - y0) // k + 2, (x1 - x0) // k + 2), np.float32)
        for n, index in enumerate(live):
            if not good[n]:
                continue
            sprite = self._sprite((plume.texture + int(index)) % 4, max(int(2 * pixel_r[n] / k), 2))
            half = sprite.shape[0] // 2
            left, top = int((xy[n, 0] - x0) / k) - half, int((xy[n, 1] - y0) / k) - half
            _add(canvas, sprite * float(opacity[index]), left, top)
        alpha = MAX_OPACITY * (1 - np.exp(-2.0 * canvas))
        alpha = cv2.resize(alpha, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        roi = image[y0:y1, x0:x1]
        veil = cv2.merge([np.full(alpha.shape, min(int(c * level), 255), np.uint8)
                          for c, level in zip(plume.colour, light, strict=True)])
        roi[:] = cv2.blendLinear(roi, veil, 1.0 - alpha, alpha)

    def _sprite(self, texture: int, size: int) -> npt.NDArray[np.float32]:
        """A billow pattern at about this size: sizes are rounded to steps of 10 % and kept, resizing is slow."""
        step = max(2, round(1.1 ** round(math.log(size, 1.1))))
        key = (texture, step)
        if key not in self._sized:
            if len(self._sized) > 400:
                self._sized.clear()
            self._sized[key] = as_float(cv2.resize(self._patterns[texture], (step, step), interpolation=cv2.INTER_AREA))
        return self._sized[key]


def _add(canvas: npt.NDArray[np.float32], patch: npt.NDArray[np.float32], left: int, top: int) -> None:
    """Add a patch onto the canvas at (left, top), cut to the canvas."""
    rows, cols = canvas.shape
    size_y, size_x = patch.shape
    cx0, cy0, cx1, cy1 = max(left, 0), max(top, 0), min(left + size_x, cols), min(top + size_y, rows)
    if cx1 > cx0 and cy1 > cy0:
        canvas[cy0:cy1, cx0:cx1] += patch[cy0 - top:cy1 - top, cx0 - left:cx1 - left]
