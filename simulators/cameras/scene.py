"""A synthetic camera scene: any frame at any time, and the ground truth for any stretch of it."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import cached_property, partial
from typing import Any

import cv2
import numpy as np

from domain.registry import Camera, Ground, Zone
from simulators.cameras.actors import LightEvent
from simulators.cameras.background import render_background
from simulators.cameras.clip import marked_ground
from simulators.cameras.draw import Image, blend_haze, cast_shadow, draw_person, draw_stall
from simulators.cameras.effects import DustTextures, Lighting, SensorNoise, compress
from simulators.cameras.geometry import View
from simulators.cameras.layout import plan_layout, sun_vector
from simulators.cameras.schedule import EPOCH_S, Epoch, Planner
from simulators.cameras.spec import SceneSpec, parse_sim_url
from simulators.cameras.truth import TruthEvent, truth_events
from simulators.cameras.zones import default_zones

NEAREST_DUST_M = 1.0  # a plume whose foot has drifted nearer the camera than this is not drawn
SHADOW_STRENGTH = 0.45  # how much light an object's shadow takes from the ground in full sun


class Scene:
    """A deterministic street or construction-site scene: the same spec, zones and size give the same frames."""

    def __init__(self, spec: SceneSpec, zones: tuple[Zone, ...] | None = None, *, fps: float = 5.0,
                 width: int = 640, height: int = 360, camera_id: str = "sim") -> None:
        if fps <= 0 or width < 32 or height < 32:
            raise ValueError(f"a scene needs a positive fps and at least 32x32 pixels, not {fps} fps {width}x{height}")
        self.spec = spec
        self.params = spec.params
        self.zones = default_zones(spec.kind, width, height) if zones is None else tuple(zones)
        self.fps = fps
        self.width, self.height = width, height
        self.camera_id = camera_id
        p = self.params
        self.view = View.build(width, height, p.horizon, p.fov_deg, p.camera_height_m, p.yaw_deg)
        self.layout = plan_layout(spec.kind, self.view, self.zones, p.texture_seed)
        self.sun = sun_vector(p.sun_azimuth_deg, p.sun_elevation_deg)
        self.background = render_background(self.view, self.layout, self.sun, p.texture_seed)
        self.planner = Planner(spec.kind, p, self.view, self.layout, self.zones, spec.seed)
        self.lighting = Lighting(spec.seed, p.light_drift)
        self.noise = SensorNoise(spec.seed, p.noise_sigma, width, height)
        self._epochs: dict[int, Epoch] = {}

    @cached_property
    def dust(self) -> DustTextures:
        """The billow patterns of this scene's dust plumes, made when the first plume shows."""
        return DustTextures(self.spec.seed)

    @property
    def ground(self) -> Ground:
        """The ground calibration of this view (for the camera YAML of a clip); rows near or above the horizon
        show no ground."""
        view = self.view

        def to_ground(x: float, y: float) -> tuple[float, float] | None:
            return view.to_ground(x, y) if y >= view.horizon_y + 0.1 * self.height else None

        return marked_ground(self.width, self.height, to_ground)

    @classmethod
    def for_camera(cls, camera: Camera, width: int = 640, height: int = 360) -> Scene:
        """The scene of a camera whose source is a `sim://` URL, with the camera's id, zones and fps."""
        return cls(parse_sim_url(camera.source), camera.zones, fps=camera.fps, width=width, height=height,
                   camera_id=camera.id)

    def epoch(self, index: int) -> Epoch:
        """The planned epoch `index` (planned once, in order, then kept)."""
        if index not in self._epochs:
            previous = self.epoch(index - 1) if index > 0 else None
            self._epochs[index] = self.planner.plan(index, previous)
            self._epochs.pop(index - 3, None)  # a live scene runs for days: keep only what frames still need
        return self._epochs[index]

    def _epochs_at(self, t_s: float) -> list[Epoch]:
        index = max(int(t_s // EPOCH_S), 0)
        return [self.epoch(i) for i in (index - 1, index) if i >= 0]

    def frame_at(self, t_s: float) -> Image:
        """The frame the camera delivers at t seconds from the scene's start, as BGR uint8."""
        epochs = self._epochs_at(t_s)
        lights: list[LightEvent] = [e for epoch in epochs for e in epoch.lights if e.start_s <= t_s < e.end_s]
        clouds = self.lighting.clouds(t_s, lights)
        frame = self.background.copy()
        self._draw_actors(frame, t_s, epochs, clouds)
        self._draw_dust(frame, t_s, epochs)
        frame = self.lighting.apply(frame, self.lighting.gains(t_s, lights), clouds)
        frame = self.noise.apply(frame, round(t_s * 1000) + self.spec.seed * 7919)
        return compress(frame, self.params.jpeg_quality)

    def _sunlit(self, clouds: np.ndarray[Any, Any] | None, x: float, y: float) -> float:
        if clouds is None:
            return 1.0
        rows, cols = clouds.shape
        row = min(max(int(y / self.height * rows), 0), rows - 1)
        col = min(max(int(x / self.width * cols), 0), cols - 1)
        return float(np.clip((clouds[row, col] - 0.55) / 0.45, 0, 1))

    def _draw_actors(self, frame: Image, t_s: float, epochs: list[Epoch],
                     clouds: np.ndarray[Any, Any] | None) -> None:
        view = self.view
        standing: list[tuple[float, Callable[[], None]]] = []  # (row, draw): nearer things over farther ones
        for epoch in epochs:
            for person in epoch.pedestrians:
                if person.start_s <= t_s < person.end_s:
                    pose = person.pose(t_s)
                    x, y = view.to_image(*pose.ground)
                    if view.box_on_screen(x, y, 0.4, person.look.height_m):
                        cast_shadow(frame, view, pose.ground, 0.22, person.look.height_m, self.sun,
                                    SHADOW_STRENGTH * self._sunlit(clouds, x, y))
                        standing.append((y, partial(draw_person, frame, x, y, view.ppm(y), person.look,
                                                    pose.stride_phase)))
            for stall in epoch.stalls:
                if stall.arrive_s <= t_s < stall.end_s:
                    ground, moving = stall.position(t_s)
                    x, y = view.to_image(*ground)
                    if not view.box_on_screen(x, y, stall.width_m, stall.height_m):
                        continue
                    ppm = view.ppm(y)
                    cast_shadow(frame, view, ground, stall.width_m / 2, stall.height_m, self.sun,
                                SHADOW_STRENGTH * self._sunlit(clouds, x, y))
                    standing.append((y, partial(draw_stall, frame, x, y, ppm, stall)))
                    vendor_x = x + (stall.width_m / 2 + 0.35) * ppm
                    phase = t_s * 1.6 if moving else None
                    standing.append((y - 0.01, partial(draw_person, frame, vendor_x, y, ppm, stall.vendor, phase)))
        for _, draw in sorted(standing, key=lambda item: item[0]):
            draw()

    def _draw_dust(self, frame: Image, t_s: float, epochs: list[Epoch]) -> None:
        for epoch in epochs:
            for plume in epoch.plumes:
                opacity = plume.opacity(t_s) if plume.start_s <= t_s < plume.end_s else 0.0
                if opacity < 0.01:
                    continue
                centre = plume.centre(t_s)
                if centre[1] < NEAREST_DUST_M:  # blown onto or behind the lens: its patch would be unbounded
                    continue
                x, y = self.view.to_image(*centre)
                radius = plume.radius(t_s) * self.view.ppm(y)
                half_w, half_h = max(int(radius), 2), max(int(radius * 0.75), 2)
                top = int(y - 0.5 * half_h) - half_h  # dust hugs the ground: the foot of the plume is low in its cloud
                if x + half_w < 0 or x - half_w > self.width or top > self.height or top + 2 * half_h < 0:
                    continue  # off the frame (drifted past the camera's side, where its patch can be huge)
                alpha = cv2.resize(self.dust.patch(plume.texture, t_s), (2 * half_w, 2 * half_h)) * opacity
                blend_haze(frame, int(x) - half_w, top, alpha, plume.colour)

    def frames(self, start_s: float = 0.0, count: int | None = None) -> Iterator[tuple[float, Image]]:
        """(t, frame) at the scene's fps from `start_s`, `count` of them or endlessly."""
        first = math.ceil(start_s * self.fps - 1e-9)
        index = first
        while count is None or index < first + count:
            t_s = index / self.fps
            yield t_s, self.frame_at(t_s)
            index += 1

    def truth(self, duration_s: float) -> list[TruthEvent]:
        """The true stall and dust events within the first `duration_s` seconds (see `truth` module)."""
        epochs = [self.epoch(i) for i in range(int(duration_s // EPOCH_S) + 1)]
        return truth_events(self.planner, epochs, self.zones, self.camera_id, duration_s)

    def truth_document(self, duration_s: float) -> dict[str, Any]:
        """The truth JSON: camera id, the scene's spec and parameters, the zones' dwell times, the conditions it
        shows, and the events."""
        return {
            "camera_id": self.camera_id,
            "scene": {"source": self.spec.url, "kind": self.spec.kind.value, "seed": self.spec.seed,
                      "width": self.width, "height": self.height, "fps": self.fps, "duration_s": duration_s,
                      "params": {name: getattr(self.params, name) for name in self.params.__slots__}},
            "dwell_s": {zone.id: zone.dwell_s for zone in self.zones},
            # What `gridhub detect eval` breaks its figures down by; this generator renders day scenes from a
            # fixed camera in clear weather, with slow light drift and sudden cloud shadows.
            "conditions": {"generator": "first", "fps": self.fps, "resolution": f"{self.width}x{self.height}",
                           "night": False, "shake": False, "weather": "clear", "exposure_pumping": False,
                           "compression": "normal", "dropped_frames": False},
            "events": [event.to_json() for event in self.truth(duration_s)],
        }
