"""Tileable fractal noise: the grain of soil and asphalt, the billows of dust."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

Texture = npt.NDArray[np.float32]


def as_float(array: Any) -> Texture:
    """The array as float32 (itself if it already is): OpenCV's results are loosely typed."""
    return np.asarray(array, np.float32)


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> Texture:
    """size × size noise in [0, 1] with `cells` random knots per side, smooth and wrapping at its edges."""
    knots = rng.random((cells, cells)).astype(np.float32)
    tiled = np.tile(knots, (3, 3))
    big = cv2.resize(tiled, (3 * size, 3 * size), interpolation=cv2.INTER_CUBIC)
    return np.clip(big[size:2 * size, size:2 * size], 0.0, 1.0)


def fbm(rng: np.random.Generator, size: int, octaves: int = 4, base_cells: int = 4) -> Texture:
    """Fractal noise: octaves of smooth noise, each twice as fine and half as strong, scaled to [0, 1]."""
    total = np.zeros((size, size), np.float32)
    weight = 1.0
    for octave in range(octaves):
        total += weight * smooth_noise(rng, size, min(base_cells << octave, size // 2))
        weight *= 0.5
    low, high = float(total.min()), float(total.max())
    return (total - low) / max(high - low, 1e-6)
