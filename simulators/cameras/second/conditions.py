"""What the camera and the weather do to a rendered frame: exposure, shake, rain, sensor noise, the encoder, and
frames the link drops. Each is a pure function of the scene's seed and the time (or frame number), so that any
frame can be rendered on its own and is the same every time.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np
import numpy.typing as npt

from simulators.cameras.second.shapes import Image, as_image

CHUNK_S = 600.0  # random events (light steps, bumps, dropouts) are drawn per chunk of this many seconds
AE_DELAY_S = 0.3  # the exposure control reacts after this
PUMP_DAMPING, PUMP_PERIOD_S = 0.25, 2.4  # an under-damped control overshoots by about 45 % and rings
SMOOTH_TAU_S = 0.8  # a well-behaved control follows within a second, without overshoot
DROP_BLOCK = 600  # frames whose freezes are drawn together


class Exposure:
    """The scene's light steps (a cloud over the sun, a light switched) and the auto-exposure following them.

    The picture's brightness is the scene's brightness times the camera's gain; the gain chases the inverse of
    the scene's brightness. A well-behaved control leaves a brief dip or flash after each step; a pumping one
    overshoots and rings for a few seconds, brightening the whole frame after it darkens and vice versa.
    """

    def __init__(self, seed: int, per_hour: float, pumping: bool) -> None:
        self.seed, self.per_hour, self.pumping = seed, per_hour, pumping

    def gain(self, t_s: float) -> float:
        """The picture's brightness relative to a steady scene under a settled exposure."""
        chunk = math.floor(t_s / CHUNK_S)
        residual = 0.0
        for index in (chunk - 1, chunk):
            if index < 0:
                continue
            previous = _level_before(self.seed, self.per_hour, index)
            for start, level, ramp in _light_steps(self.seed, self.per_hour, index):
                change, previous = level - previous, level
                age = t_s - start
                if 0 <= age <= 40:
                    scene = min(age / ramp, 1.0)
                    residual += change * (scene - self._response(age - ramp / 2 - AE_DELAY_S))
        return math.exp(residual)

    def _response(self, age: float) -> float:
        """How far the control has followed a unit step in the scene's (log) brightness, `age` s after it."""
        if age <= 0:
            return 0.0
        if not self.pumping:
            return 1 - math.exp(-age / SMOOTH_TAU_S)
        zeta, omega = PUMP_DAMPING, 2 * math.pi / PUMP_PERIOD_S
        damped = omega * math.sqrt(1 - zeta * zeta)
        return 1 - math.exp(-zeta * omega * age) * (math.cos(damped * age)
                                                     + zeta / math.sqrt(1 - zeta * zeta) * math.sin(damped * age))

    @staticmethod
    def apply(image: Image, gain: float) -> Image:
        """The image with every level times `gain`, clipped."""
        if abs(gain - 1.0) < 0.004:
            return image
        table = np.clip(np.arange(256, dtype=np.float32) * gain, 0, 255).astype(np.uint8)
        return as_image(cv2.LUT(image, table))


@lru_cache(maxsize=64)
def _light_steps(seed: int, per_hour: float, chunk: int) -> tuple[tuple[float, float, float], ...]:
    """(time, log brightness after it, ramp seconds) of the light steps in a chunk."""
    rng = np.random.default_rng([seed, 0xE7, chunk])
    count = int(rng.poisson(per_hour * CHUNK_S / 3600))
    times = np.sort(rng.uniform(chunk * CHUNK_S, (chunk + 1) * CHUNK_S, count))
    return tuple((float(t), float(rng.uniform(-0.5, 0.3)), float(rng.uniform(0.3, 2.5))) for t in times)


def _level_before(seed: int, per_hour: float, chunk: int) -> float:
    """The log brightness the scene has when a chunk begins: the last step's before it, else 0."""
    for earlier in range(chunk - 1, -1, -1):
        steps = _light_steps(seed, per_hour, earlier)
        if steps:
            return steps[-1][1]
    return 0.0


class Shake:
    """A pole camera's movement: a fine tremble all the time and, now and then, a knock that rings out."""

    def __init__(self, seed: int, width: int, amplitude_px: float, bumps_per_hour: float) -> None:
        rng = np.random.default_rng([seed, 0x5A4E])
        self.scale = width / 640.0
        self.amplitude = amplitude_px * self.scale
        self.waves = rng.uniform([0.6, 0.0], [6.0, 2 * math.pi], size=(2, 3, 2))  # (axis, wave, (Hz, phase))
        self.seed, self.bumps_per_hour = seed, bumps_per_hour

    def offset(self, t_s: float, frame: int) -> tuple[float, float, float]:
        """(dx, dy) in pixels and a roll in degrees at this time and frame."""
        shift = [0.0, 0.0]
        for axis in (0, 1):
            for hz, phase in self.waves[axis]:
                shift[axis] += self.amplitude / 2 * math.sin(2 * math.pi * hz * t_s + phase)
        jitter = np.random.default_rng([self.seed, 0x717, frame]).normal(0, 0.35 * self.amplitude, 2)
        shift[0] += float(jitter[0])
        shift[1] += float(jitter[1])
        chunk = math.floor(t_s / CHUNK_S)
        roll = 0.0
        for index in (chunk - 1, chunk):
            for start, size, direction, hz, decay in (_bumps(self.seed, self.bumps_per_hour, index)
                                                      if index >= 0 else ()):
                age = t_s - start
                if 0 <= age < 6 * decay:
                    swing = size * self.scale * math.exp(-age / decay) * math.sin(2 * math.pi * hz * age)
                    shift[0] += swing * math.cos(direction)
                    shift[1] += swing * math.sin(direction)
                    roll += 0.05 * swing / self.scale
        return shift[0], shift[1], roll

    def apply(self, image: Image, t_s: float, frame: int) -> Image:
        """The image as the shaking camera sees it."""
        dx, dy, roll = self.offset(t_s, frame)
        height, width = image.shape[:2]
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), roll, 1.0)
        matrix[:, 2] += np.array([dx, dy])
        return as_image(cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REPLICATE))


@lru_cache(maxsize=64)
def _bumps(seed: int, per_hour: float, chunk: int) -> tuple[tuple[float, float, float, float, float], ...]:
    """(time, amplitude px, direction, Hz, decay s) of the knocks on the pole in a chunk."""
    rng = np.random.default_rng([seed, 0xB0, chunk])
    count = int(rng.poisson(per_hour * CHUNK_S / 3600))
    return tuple((float(rng.uniform(chunk * CHUNK_S, (chunk + 1) * CHUNK_S)), float(rng.uniform(3, 9)),
                  float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(2.5, 6)), float(rng.uniform(0.3, 1.0)))
                 for _ in range(count))


class Rain:
    """Streaks of falling rain in two layers, near (long, fast) and far (short, slow), added to the light."""

    def __init__(self, seed: int, width: int, height: int, slant: float, night: bool) -> None:
        rng = np.random.default_rng([seed, 0x4A1])
        scale = width / 640.0
        self.height = height
        self.layers: list[tuple[npt.NDArray[np.uint8], float]] = []
        for count, length, brightness, speed in ((260, 16.0, 46, 2.2), (700, 7.0, 28, 1.1)):
            sheet = np.zeros((height, width), np.uint8)
            for _ in range(int(count * scale * scale)):
                x, y = float(rng.uniform(0, width)), float(rng.uniform(0, height))
                size = length * scale * float(rng.uniform(0.6, 1.4))
                end = (round((x + slant * size) * 4), round((y + size) * 4))
                level = int(brightness * (0.5 if night else 1.0) * float(rng.uniform(0.6, 1.3)))
                cv2.line(sheet, (round(x * 4), round(y * 4)), end, level, max(1, round(scale)), cv2.LINE_AA, 2)
            tiled = np.vstack([sheet, sheet])
            self.layers.append((as_image(cv2.merge([tiled, tiled, tiled])), speed * height))

    def apply(self, image: Image, t_s: float) -> None:
        """Add the streaks falling at time t, in place."""
        for layer, speed in self.layers:
            top = self.height - 1 - int(t_s * speed) % self.height
            cv2.add(image, layer[top:top + self.height], dst=image)


class SensorNoise:
    """Grain: a fixed field of Gaussian noise, shifted by a different random amount every frame."""

    MARGIN = 32

    def __init__(self, seed: int, sigma: float, width: int, height: int) -> None:
        rng = np.random.default_rng([seed, 0x9015E])
        field = rng.normal(0.0, sigma, (height + self.MARGIN, width + self.MARGIN, 3)).astype(np.float32)
        self.up = np.clip(field, 0, 255).astype(np.uint8)
        self.down = np.clip(-field, 0, 255).astype(np.uint8)
        self.seed, self.width, self.height = seed, width, height

    def apply(self, image: Image, frame: int) -> None:
        """Add this frame's grain, in place."""
        dx, dy = np.random.default_rng([self.seed, 0x6A1, frame]).integers(0, self.MARGIN, 2)
        window = np.s_[int(dy):int(dy) + self.height, int(dx):int(dx) + self.width]
        cv2.add(image, self.up[window], dst=image)
        cv2.subtract(image, self.down[window], dst=image)


def reencode(image: Image, quality: int) -> Image:
    """The image after a JPEG round trip at this quality: at low quality, 8×8 blocks and ringing."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return as_image(cv2.imdecode(data, cv2.IMREAD_COLOR))


class Dropouts:
    """A link that now and then freezes for 1-4 frames, then jumps back to real time (skipping what it missed)."""

    def __init__(self, seed: int, fps: float, per_min: float) -> None:
        self.seed, self.fps, self.per_min = seed, fps, per_min

    def source(self, frame: int) -> int:
        """Which rendered frame the link delivers as frame number `frame`."""
        for start, length in _freezes(self.seed, self.per_min * DROP_BLOCK / self.fps / 60, frame // DROP_BLOCK):
            if start < frame <= start + length:
                return start
        return frame


@lru_cache(maxsize=64)
def _freezes(seed: int, expected: float, block: int) -> tuple[tuple[int, int], ...]:
    """(first frame, frames it is held for) of the freezes in a block of frames."""
    rng = np.random.default_rng([seed, 0xD40, block])
    starts = np.sort(rng.integers(block * DROP_BLOCK, (block + 1) * DROP_BLOCK - 5, int(rng.poisson(expected))))
    return tuple((int(start), int(rng.integers(1, 5))) for start in starts)
