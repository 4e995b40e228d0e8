"""A scene of the second generator: frames at any time, and the truth for any stretch of them."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from domain.registry import Ground, Zone
from simulators.cameras.clip import marked_ground
from simulators.cameras.second.actors import Digger, Person, Stall, Vehicle
from simulators.cameras.second.backdrop import Backdrop, sun_direction
from simulators.cameras.second.camera import PoleCamera
from simulators.cameras.second.conditions import Dropouts, Exposure, Rain, SensorNoise, Shake, reencode
from simulators.cameras.second.dust import DustPainter
from simulators.cameras.second.figures import (
    draw_excavator,
    draw_person,
    draw_stall,
    draw_vehicle,
    headlight_beam,
)
from simulators.cameras.second.params import Compression, Kind, Spec, Weather
from simulators.cameras.second.plan import Figure, Timeline
from simulators.cameras.second.shapes import (
    Image,
    Light,
    box_corners,
    brighten,
    darken,
    ground_to_image,
    shadow_outline,
)
from simulators.cameras.second.truth import dust_events, stall_events
from simulators.cameras.second.world import build_world
from simulators.cameras.truth import TruthEvent

SUN_SHADOW = 0.42  # light a figure's shadow takes in full sun
CONTACT_SHADOW = 0.22  # under a figure in flat light
BEAM_REACH_M = 14.0


class SecondScene:
    """A street or construction site under a pole camera: the same spec, fps and size give the same frames."""

    def __init__(self, spec: Spec, *, fps: float = 10.0, width: int = 640, height: int = 360,
                 camera_id: str = "sim2") -> None:
        if fps <= 0 or width < 64 or height < 64:
            raise ValueError(f"a scene needs a positive fps and at least 64x64 pixels, not {fps} fps {width}x{height}")
        self.spec = spec
        self.params = p = spec.params
        self.fps, self.width, self.height, self.camera_id = fps, width, height, camera_id
        self.camera = PoleCamera.build(width, height, p.camera_height_m, p.pitch_deg, p.fov_deg, p.roll_deg)
        self.world = build_world(spec.kind, p, self.camera)
        self.zones: tuple[Zone, ...] = self.world.zones
        self.backdrop = Backdrop(self.camera, self.world, p)
        self.timeline = Timeline(spec.kind, p, self.world, self.camera, spec.seed)
        self.dust = DustPainter(spec.seed, self.camera)
        self.exposure = Exposure(spec.seed, p.light_changes_per_hour, p.exposure_pumping)
        self.shake = Shake(spec.seed, width, p.shake_px, p.bumps_per_hour) if p.shake else None
        self.rain = Rain(spec.seed, width, height, 0.25 * self.timeline.wind[0], p.night) \
            if p.weather is Weather.RAIN else None
        self.noise = SensorNoise(spec.seed, p.noise_sigma * (2.0 if p.night else 1.0), width, height)
        self.dropouts = Dropouts(spec.seed, fps, p.drops_per_min) if p.dropped_frames else None
        self._last: tuple[int, Image] | None = None

    @property
    def ground(self) -> Ground:
        """The ground calibration of this pole camera (for the camera YAML of a clip)."""
        return marked_ground(self.width, self.height, self.camera.to_ground)

    def frames(self, start_s: float = 0.0, count: int | None = None) -> Iterator[tuple[float, Image]]:
        """(t, frame) at the scene's fps from `start_s`, `count` of them or endlessly."""
        first = math.ceil(start_s * self.fps - 1e-9)
        index = first
        while count is None or index < first + count:
            yield index / self.fps, self.frame(index)
            index += 1

    def frame(self, index: int) -> Image:
        """The frame the camera delivers as number `index` (a dropped-out frame repeats an earlier one)."""
        source = self.dropouts.source(index) if self.dropouts is not None else index
        if self._last is None or self._last[0] != source:
            self._last = (source, self.render(source))
        return self._last[1].copy()

    def render(self, index: int) -> Image:
        """Frame number `index` as the scene looked at its time, through the camera, as BGR uint8."""
        t_s = index / self.fps
        p = self.params
        image = self.backdrop.at(t_s).copy()
        figures = self.timeline.active(t_s)
        placed = [(figure, anchor) for figure in figures if (anchor := _anchor(figure, t_s)) is not None]
        self._shadows(image, placed, t_s)
        if p.night:
            self._beams(image, [f for f, _ in placed if isinstance(f, Vehicle)], t_s)
        if placed:
            feet, depth = self.camera.project(np.array([[x, y, 0.0] for _, (x, y) in placed]))
            for order in np.argsort(-depth):  # far to near, so that nearer figures hide farther ones
                light = self.backdrop.light_at(t_s, float(feet[order, 0]), float(feet[order, 1]))
                self._draw(image, placed[order][0], t_s, light)
        if self.rain is not None:
            self.rain.apply(image, t_s)
        image = Exposure.apply(image, self.exposure.gain(t_s))
        if self.shake is not None:
            image = self.shake.apply(image, t_s, index)
        self.noise.apply(image, index)
        if p.compression is Compression.BLOCKY:
            image = reencode(image, p.jpeg_quality)
        return image

    def _draw(self, image: Image, figure: Figure, t_s: float, light: Light) -> None:
        camera = self.camera
        if isinstance(figure, Person):
            draw_person(image, camera, figure.look, figure.pose(t_s), light)
        elif isinstance(figure, Stall):
            state = figure.state(t_s)
            if state is not None:
                draw_stall(image, camera, state[0], state[1], state[2], figure.look, light, state[3])
        elif isinstance(figure, Vehicle):
            x, y, heading, _, _ = figure.track.at(t_s)
            draw_vehicle(image, camera, figure.look, x, y, heading, light, figure.rider, self.params.night)
        elif isinstance(figure, Digger):
            swing, lift = figure.arm(t_s)
            draw_excavator(image, camera, figure.x, figure.y, figure.heading, swing, lift, figure.colour, light)
        else:
            self.dust.draw(image, figure, t_s, light)

    def _shadows(self, image: Image, placed: list[tuple[Figure, tuple[float, float]]], t_s: float) -> None:
        """Each figure's shadow: cast by the sun in clear weather, a soft patch underfoot otherwise."""
        sun = sun_direction(self.params, t_s)
        for figure, (x, y) in placed:
            size = _footprint(figure, t_s)
            if size is None:
                continue
            length, width, height, heading = size
            footprint = box_corners(x, y, 0.0, heading, length, width, 0.0)[:4, :2]
            outline = (shadow_outline(footprint, height, sun) if sun is not None else footprint)
            polygon = ground_to_image(self.camera, outline)
            if polygon is not None:
                darken(image, polygon, SUN_SHADOW if sun is not None else CONTACT_SHADOW)

    def _beams(self, image: Image, vehicles: list[Vehicle], t_s: float) -> None:
        """Headlights sweep the road ahead of every vehicle at night."""
        for vehicle in vehicles:
            x, y, heading, _, _ = vehicle.track.at(t_s)
            for reach, level in ((BEAM_REACH_M, 26), (0.6 * BEAM_REACH_M, 34), (0.3 * BEAM_REACH_M, 40)):
                polygon = headlight_beam(self.camera, x, y, heading, vehicle.look.length, reach)
                if polygon is not None:
                    brighten(image, polygon, level)

    def truth(self, duration_s: float) -> list[TruthEvent]:
        """The true stall and dust events within the first `duration_s` seconds (see `second.truth`)."""
        self.timeline.plan_until(duration_s)
        events = (stall_events(self.timeline.stalls, self.zones, self.camera_id, duration_s, (self.width, self.height))
                  if self.spec.kind is Kind.STREET else dust_events(self.timeline.plumes, self.camera_id, duration_s))
        return sorted(events, key=lambda event: (event.start_s, event.zone_id, event.kind))

    def conditions(self) -> dict[str, Any]:
        """The clip's conditions, as the truth document lists them."""
        return {"generator": "second", "fps": self.fps, "resolution": f"{self.width}x{self.height}",
                **self.params.conditions()}

    def truth_document(self, duration_s: float) -> dict[str, Any]:
        """The truth JSON: who, what scene and generator, the zones' dwell times, the conditions and the events."""
        return {
            "camera_id": self.camera_id,
            "scene": self.spec.kind.value,
            "generator": "second",
            "seed": self.spec.seed,
            "source": self.spec.label,
            "width": self.width, "height": self.height, "fps": self.fps, "duration_s": duration_s,
            "params": self.params.as_json(),
            "dwell_s": {zone.id: zone.dwell_s for zone in self.zones},
            "conditions": self.conditions(),
            "events": [event.to_json() for event in self.truth(duration_s)],
        }


def _anchor(figure: Figure, t_s: float) -> tuple[float, float] | None:
    """The ground point a figure stands on at t (what orders the drawing far to near), or None if it is not out."""
    if isinstance(figure, Person | Vehicle):
        x, y, *_ = figure.track.at(t_s)
        return x, y
    if isinstance(figure, Stall):
        state = figure.state(t_s)
        return (state[0], state[1]) if state is not None else None
    return figure.x, figure.y  # a digger, or a plume's source


def _footprint(figure: Figure, t_s: float) -> tuple[float, float, float, float] | None:
    """(length, width, height, heading) of what casts a figure's shadow."""
    if isinstance(figure, Person):
        pose = figure.pose(t_s)
        height = figure.look.height_m * (0.7 if pose.seat_m is not None else 1.0)
        return 0.35, 0.45, height, pose.heading
    if isinstance(figure, Stall):
        state = figure.state(t_s)
        if state is None:
            return None
        length, width, height = figure.look.extent
        return length * max(state[3], 0.3), width * max(state[3], 0.3), height, state[2]
    if isinstance(figure, Vehicle):
        heading = figure.track.at(t_s)[2]
        tall = {"van": 2.0, "truck": 3.0, "scooter": 1.4}.get(figure.look.kind, 1.45)
        return figure.look.length, figure.look.width, tall, heading
    if isinstance(figure, Digger):
        return 4.0, 3.0, 3.2, figure.heading
    return None
