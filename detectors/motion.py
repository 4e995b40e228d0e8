"""The motion gate: a cheap mask of what moved, after Frigate's CPU motion detector.

Grayscale, blurred, compared with a running average that forgets in about a second; a pixel moves when it
differs from that average by more than the noise allows. The running average is also the detectors'
short-term background: an object that stopped is absorbed by it within a couple of seconds and no longer
"moves", while the long-term background still knows it was not there.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

Mask = npt.NDArray[np.bool_]
Gray = npt.NDArray[np.float32]

SHORT_TERM_S = 0.8  # time constant of the running average
MIN_THRESHOLD = 10.0  # grey levels; the noise-derived threshold never goes below this
NOISE_FACTOR = 5.0  # threshold = this × the median absolute difference (the noise level of a still scene)


class MotionGate:
    """Per-pixel motion against a running average, and whether anything moved at all."""

    def __init__(self) -> None:
        self._average: Gray | None = None
        self._t: float | None = None

    def update(self, gray: Gray, t: float) -> Mask:
        """Feed a blurred grayscale frame taken at `t` seconds; return the mask of moving pixels."""
        if self._average is None or self._t is None:
            self._average, self._t = gray.copy(), t
            return np.zeros(gray.shape, np.bool_)
        # Follow a global change of brightness (auto exposure, a cloud) at once so it does not read as motion.
        self._average *= np.float32(float(gray.mean()) / max(float(self._average.mean()), 1.0))
        difference = cv2.absdiff(gray, self._average)
        threshold = max(MIN_THRESHOLD, NOISE_FACTOR * float(np.median(difference[::2, ::2])))
        moving = cv2.dilate((difference > threshold).view(np.uint8), _KERNEL).view(np.bool_)
        alpha = 1.0 - math.exp(-max(t - self._t, 1e-3) / SHORT_TERM_S)
        cv2.accumulateWeighted(gray, self._average, alpha)
        self._t = t
        return moving


_KERNEL = np.ones((3, 3), np.uint8)
