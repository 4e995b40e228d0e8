"""Short synthetic camera clips for the detector tests: a textured street or site, walkers, a stall, a dust plume,
a digger's swinging arm.

Deliberately simpler than the camera simulator and drawn differently, so that the detectors are not tuned to
one renderer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Walker:
    """A pedestrian crossing at constant speed (px/s), optionally pausing at `pause_x` for `pause_s`."""

    start_s: float
    y: int
    speed: float
    colour: tuple[int, int, int]
    height: int = 40
    pause_x: float | None = None
    pause_s: float = 0.0

    def x(self, t: float, width: int) -> float | None:
        """Horizontal position at `t`, or None when off screen."""
        if t < self.start_s:
            return None
        moving = t - self.start_s
        if self.pause_x is not None:
            reach = (self.pause_x + 20) / self.speed
            if moving > reach:
                moving = max(reach, moving - self.pause_s)
        x = -20 + moving * self.speed
        return x if x < width + 20 else None


@dataclass(frozen=True)
class Stall:
    """A table with an umbrella that is carried in at `arrive_s`, set down, and carried off at `leave_s`."""

    arrive_s: float
    leave_s: float
    x: int
    y: int  # bottom edge
    colour: tuple[int, int, int] = (40, 60, 200)
    width: int = 70


@dataclass(frozen=True)
class Plume:
    """A dust plume that grows from `start_s`, holds, and fades out by `end_s`."""

    start_s: float
    end_s: float
    centre: tuple[int, int]
    radius: int
    density: float = 0.7
    colour: tuple[int, int, int] = (150, 170, 185)  # BGR grey-brown
    drift_px_s: float = 0.5  # the wind carries it to the right


@dataclass(frozen=True)
class Light:
    """A pool of light (a parked car's headlights, a lamp) switched on at `on_s` over a box, soft-edged: it
    multiplies what it falls on by `gain` and stays on."""

    on_s: float
    box: tuple[int, int, int, int]  # x, y, width, height
    gain: float = 2.0


@dataclass(frozen=True)
class Arm:
    """A digger's arm from `pivot`: it holds at one angle (degrees) for `hold_s`, swings to the other in
    `swing_s[0]` seconds, holds there, and swings back in `swing_s[1]`, over and over."""

    pivot: tuple[int, int]
    length: int
    angles: tuple[float, float]
    hold_s: float = 12.0
    colour: tuple[int, int, int] = (20, 190, 235)  # BGR yellow
    swing_s: tuple[float, float] = (2.0, 2.0)

    def angle(self, t: float) -> float:
        """The arm's angle at `t`."""
        there, back = self.swing_s
        phase = t % (2 * self.hold_s + there + back)
        a, b = self.angles
        if phase < self.hold_s:
            return a
        if phase < self.hold_s + there:
            return a + (b - a) * (phase - self.hold_s) / there
        if phase < 2 * self.hold_s + there:
            return b
        return b + (a - b) * (phase - 2 * self.hold_s - there) / back


@dataclass
class Scene:
    """What happens in a clip."""

    seconds: float
    fps: float = 5.0
    size: tuple[int, int] = (320, 180)
    walkers: list[Walker] = field(default_factory=list)
    stalls: list[Stall] = field(default_factory=list)
    plumes: list[Plume] = field(default_factory=list)
    arms: list[Arm] = field(default_factory=list)
    lights: list[Light] = field(default_factory=list)
    gain: list[tuple[float, float]] = field(default_factory=list)  # (from_s, gain) steps of global lighting
    seed: int = 0
    texture: float = 1.0  # of the ground: 1 is paving, 0 bare flat ground (sensor noise only)


def ground(size: tuple[int, int], seed: int, texture: float = 1.0) -> Image:
    """Paving: tiles with joints, stains and fine grain (all × `texture`), darker towards the top (distance)."""
    width, height = size
    rng = np.random.default_rng(seed)
    grain = rng.normal(0, 1, (height, width)).astype(np.float32)
    grain = np.asarray(cv2.GaussianBlur(grain, (0, 0), 1.2), np.float32) * 18
    blotches = cv2.resize(rng.normal(0, 1, (6, 10)).astype(np.float32), (width, height)) * 12
    base = np.empty((height, width, 3), np.float32)
    base[:] = (118, 128, 136)
    base += (texture * (grain + blotches))[..., None]
    tile = max(8, width // 20)
    base[::tile, :, :] -= 35 * texture
    base[:, ::tile, :] -= 35 * texture
    base *= np.linspace(0.75, 1.05, height, dtype=np.float32)[:, None, None]
    return np.clip(base, 0, 255).astype(np.uint8)


def render(scene: Scene, t: float, background: Image, rng: np.random.Generator) -> Image:
    """One frame of the scene at `t` seconds."""
    width = scene.size[0]
    frame = background.copy()
    for stall in scene.stalls:
        _draw_stall(frame, stall, t)
    for arm in scene.arms:
        angle = np.radians(arm.angle(t))
        tip = (int(arm.pivot[0] + arm.length * np.cos(angle)), int(arm.pivot[1] - arm.length * np.sin(angle)))
        cv2.line(frame, arm.pivot, tip, arm.colour, 9)
        cv2.line(frame, arm.pivot, tip, (10, 60, 80), 2)
    for walker in scene.walkers:
        x = walker.x(t, width)
        if x is not None:
            top = walker.y - walker.height
            cv2.rectangle(frame, (int(x), top + walker.height // 4), (int(x) + walker.height // 4, walker.y),
                          walker.colour, -1)
            cv2.circle(frame, (int(x) + walker.height // 8, top + walker.height // 8), walker.height // 8,
                       (90, 120, 170), -1)
    image = frame.astype(np.float32)
    for plume in scene.plumes:
        alpha = _plume_alpha(plume, t, scene.size)
        if alpha is not None:
            image = image * (1 - alpha[..., None]) + np.array(plume.colour, np.float32) * alpha[..., None]
    for light in scene.lights:
        if t >= light.on_s:
            image = image * _light_gain(light, scene.size)[..., None]
    gain = 1.0
    for since, value in scene.gain:
        if t >= since:
            gain = value
    image = image * gain + rng.normal(0, 2.5, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_clip(scene: Scene, path: Path) -> Path:
    """Render the scene to an MJPEG AVI file (JPEG artefacts included) and return its path."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), scene.fps, scene.size)
    rng = np.random.default_rng(scene.seed + 1)
    background = ground(scene.size, scene.seed, scene.texture)
    for index in range(int(scene.seconds * scene.fps)):
        writer.write(render(scene, index / scene.fps, background, rng))
    writer.release()
    return path


def _draw_stall(frame: Image, stall: Stall, t: float) -> None:
    carry_s = 3.0
    if t < stall.arrive_s - carry_s or t > stall.leave_s + carry_s:
        return
    if t < stall.arrive_s:  # carried in from the left
        offset = -(stall.arrive_s - t) / carry_s * (stall.x + stall.width)
    elif t > stall.leave_s:  # carried off to the right
        offset = (t - stall.leave_s) / carry_s * (frame.shape[1] - stall.x)
    else:
        offset = 0.0
    x = int(stall.x + offset)
    w, bottom = stall.width, stall.y
    cv2.rectangle(frame, (x, bottom - w // 2), (x + w, bottom), stall.colour, -1)
    cv2.rectangle(frame, (x + 4, bottom - w // 2 + 4), (x + w - 4, bottom - w // 2 + 10), (230, 230, 230), -1)
    cv2.line(frame, (x + w // 2, bottom - w // 2), (x + w // 2, bottom - w), (30, 30, 30), 2)
    canopy = np.array([[x - 6, bottom - w + 4], [x + w // 2, bottom - w - 14], [x + w + 6, bottom - w + 4]])
    cv2.fillPoly(frame, [canopy], (30, 190, 230))


def _light_gain(light: Light, size: tuple[int, int]) -> npt.NDArray[np.float32]:
    pool = np.zeros((size[1], size[0]), np.float32)
    x, y, w, h = light.box
    pool[y:y + h, x:x + w] = 1
    pool = np.asarray(cv2.GaussianBlur(pool, (0, 0), 2.0), np.float32)
    return np.asarray(1 + (light.gain - 1) * pool, np.float32)


def _plume_alpha(plume: Plume, t: float, size: tuple[int, int]) -> npt.NDArray[np.float32] | None:
    if not plume.start_s <= t <= plume.end_s:
        return None
    duration = plume.end_s - plume.start_s
    grow = min(1.0, (t - plume.start_s) / min(20.0, duration / 3))
    fade = min(1.0, (plume.end_s - t) / min(10.0, duration / 3))
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    drift = (t - plume.start_s) * plume.drift_px_s
    cx, cy = plume.centre[0] + drift, plume.centre[1]
    radius = plume.radius * (0.5 + 0.5 * grow)
    shape = np.exp(-(((xx - cx) / radius) ** 2 + ((yy - cy) / (radius * 0.7)) ** 2))
    return np.asarray(shape * plume.density * min(grow, fade), np.float32)
