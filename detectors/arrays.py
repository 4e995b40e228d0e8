"""Array types of the detectors, and views of OpenCV's loosely typed results as them (no copies)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]  # BGR or grey, as decoded
Float = npt.NDArray[np.float32]  # working images and measures
Mask = npt.NDArray[np.bool_]


def f32(array: Any) -> Float:
    """The array as float32 (the same array when it already is)."""
    return np.asarray(array, np.float32)


def u8(array: Any) -> Image:
    """The array as uint8 (the same array when it already is)."""
    return np.asarray(array, np.uint8)
