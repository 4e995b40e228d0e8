"""What happens to the whole frame: light that drifts and jumps, dust billows, sensor noise and compression."""

from __future__ import annotations

import math
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from simulators.cameras.actors import LightEvent, LightKind
from simulators.cameras.draw import Image

CLOUD_GRID = (45, 80)  # cloud shadows are soft: compute them coarsely and stretch them over the frame


class Lighting:
    """The global light: a slow drift of gain and colour (sun and thin cloud) plus sudden events."""

    def __init__(self, seed: int, drift: float) -> None:
        rng = np.random.default_rng([seed, 0x119])
        self.drift = drift
        self.periods = rng.uniform(90, 600, 3)
        self.phases = rng.uniform(0, 2 * math.pi, 3)
        self.tint = rng.uniform(-0.03, 0.03, 3)
        rows, cols = CLOUD_GRID
        self.grid_y, self.grid_x = np.mgrid[0:rows, 0:cols].astype(np.float32)
        self.grid_y /= rows
        self.grid_x /= cols

    def gains(self, t_s: float, events: list[LightEvent]) -> tuple[float, float, float]:
        """Per-channel (B, G, R) gain at time t, from the slow drift and any exposure jumps."""
        waves = np.sin(2 * math.pi * t_s / self.periods + self.phases)
        gain = 1.0 + self.drift * (0.7 * waves[0] + 0.3 * waves[1])
        for event in events:
            if event.kind is LightKind.EXPOSURE:
                gain *= 1 + (event.gain - 1) * event.strength(t_s)
        warmth = waves[2] * self.tint
        return gain * (1 + warmth[0]), gain * (1 + warmth[1]), gain * (1 + warmth[2])

    def clouds(self, t_s: float, events: list[LightEvent]) -> npt.NDArray[np.float32] | None:
        """The light kept under cloud shadows on a coarse grid (1: full sun), or None without clouds."""
        kept: npt.NDArray[np.float32] | None = None
        for event in events:
            strength = event.strength(t_s) if event.kind is LightKind.CLOUD else 0.0
            if strength <= 0:
                continue
            age = t_s - event.start_s
            cx, cy = event.centre[0] + event.velocity[0] * age, event.centre[1] + event.velocity[1] * age
            aspect = CLOUD_GRID[0] / CLOUD_GRID[1]
            distance = np.hypot(self.grid_x - cx, (self.grid_y - cy) * aspect) / event.radius
            cover = np.clip(1.3 - distance, 0, 1) * strength
            layer = (1 - cover * (1 - event.gain)).astype(np.float32)
            kept = layer if kept is None else np.minimum(kept, layer)
        return kept

    def apply(self, frame: Image, gains: tuple[float, float, float], clouds: npt.NDArray[np.float32] | None,
              ) -> Image:
        """The frame under this light."""
        if clouds is None:
            ramp = np.arange(256, dtype=np.float32)[:, None] * np.array(gains, dtype=np.float32)
            table = np.clip(ramp, 0, 255).astype(np.uint8).reshape(1, 256, 3)
            return cast(Image, cv2.LUT(frame, table))
        height, width = frame.shape[:2]
        light = cv2.resize(clouds, (width, height), interpolation=cv2.INTER_LINEAR)
        scaled = frame.astype(np.float32) * light[..., None] * np.array(gains, dtype=np.float32)
        return cast(Image, np.clip(scaled, 0, 255).astype(np.uint8))


class SensorNoise:
    """Per-frame sensor noise: a few noise fields, picked and shifted per frame so no two frames share noise."""

    PAD = 64

    def __init__(self, seed: int, sigma: float, width: int, height: int) -> None:
        rng = np.random.default_rng([seed, 0x0015E])
        self.width, self.height = width, height
        self.raised: list[Image] = []
        self.lowered: list[Image] = []
        for _ in range(3):
            shape = (height + self.PAD, width + self.PAD)
            luminance = rng.standard_normal((*shape, 1), dtype=np.float32)
            grain = sigma * (luminance + 0.5 * rng.standard_normal((*shape, 3), dtype=np.float32))
            self.raised.append(np.clip(grain, 0, 255).astype(np.uint8))
            self.lowered.append(np.clip(-grain, 0, 255).astype(np.uint8))

    def apply(self, frame: Image, frame_key: int) -> Image:
        """The frame with noise added; the same key gives the same noise."""
        pick = np.random.default_rng([frame_key, 0xF00]).integers(0, [3, self.PAD, self.PAD])
        which, dx, dy = (int(v) for v in pick)
        window = np.s_[dy:dy + self.height, dx:dx + self.width]
        noisy = cv2.add(frame, np.ascontiguousarray(self.raised[which][window]))
        return cast(Image, cv2.subtract(noisy, np.ascontiguousarray(self.lowered[which][window])))


def blur_tileable(texture: npt.NDArray[np.float32], sigma: float) -> npt.NDArray[np.float32]:
    """Gaussian blur that wraps around the edges, so the texture still tiles seamlessly."""
    pad = min(int(3 * sigma) + 1, min(texture.shape[:2]))
    padded = np.pad(texture, pad, mode="wrap")
    return cast(npt.NDArray[np.float32], cv2.GaussianBlur(padded, (0, 0), sigma)[pad:-pad, pad:-pad])


def compress(frame: Image, quality: int) -> Image:
    """The frame after a JPEG round trip, with the blocking and ringing a real camera's encoder leaves."""
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a frame as JPEG")
    return cast(Image, cv2.imdecode(encoded, cv2.IMREAD_COLOR))


class DustTextures:
    """Billowing alpha patterns for dust plumes: soft blobs modulated by drifting fractal noise."""

    SIZE = 128

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng([seed, 0xD057])
        self.fields = []
        for _ in range(4):
            field = np.zeros((2 * self.SIZE, 2 * self.SIZE), np.float32)
            for scale, weight in ((24, 0.5), (10, 0.3), (4, 0.2)):
                layer = rng.normal(0, 1, field.shape).astype(np.float32)
                layer = blur_tileable(layer, scale)
                field += weight * layer / max(float(layer.std()), 1e-6)
            self.fields.append(np.clip(0.5 + 0.3 * field, 0, 1))
        ys, xs = np.mgrid[0:self.SIZE, 0:self.SIZE].astype(np.float32)
        centre = (self.SIZE - 1) / 2
        radius = np.hypot((xs - centre) / centre, (ys - centre) / centre)
        self.falloff = np.clip(1.0 - radius, 0, 1) ** 0.8

    def patch(self, texture: int, t_s: float) -> npt.NDArray[np.float32]:
        """The plume's alpha pattern (peak 1) at time t; its billows drift slowly."""
        field = self.fields[texture % len(self.fields)]
        dx, dy = int(t_s * 3) % self.SIZE, int(t_s * 2) % self.SIZE
        billows = field[dy:dy + self.SIZE, dx:dx + self.SIZE]
        return cast(npt.NDArray[np.float32], (self.falloff * (0.45 + 0.55 * billows)).astype(np.float32))
