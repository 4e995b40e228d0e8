"""Writing a scene as an evaluation clip: the video, its ground truth and a camera YAML that points at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt
import orjson
import yaml

from core.city import CityError, load_cameras
from domain.registry import Camera, Ground, Zone

VIDEO_NAME = "clip.avi"
TRUTH_NAME = "truth.json"
CAMERA_NAME = "camera.yaml"
DEFAULT_GRID_CODE = "310104003001002"  # a cell of the demo city, for clips made without a camera YAML


class ClipScene(Protocol):
    """What a clip is written from: a scene of either generator (its rate, size, zones and id, frames, truth)."""

    fps: float
    width: int
    height: int
    zones: tuple[Zone, ...]
    camera_id: str

    @property
    def ground(self) -> Ground: ...

    def frames(self, start_s: float = 0.0, count: int | None = None
               ) -> Iterator[tuple[float, npt.NDArray[np.uint8]]]: ...

    def truth_document(self, duration_s: float) -> dict[str, Any]: ...


class ClipError(Exception):
    """A clip or camera file that cannot be written or read; the message says which and why."""


@dataclass(frozen=True, slots=True)
class ClipFiles:
    """What `write_clip` wrote."""

    video: Path
    truth: Path
    camera: Path
    frames: int
    events: int


def load_camera(path: Path, camera_id: str | None = None) -> Camera:
    """The camera described by a YAML file: one camera mapping, or the one with `camera_id` from a list."""
    try:
        cameras = load_cameras(path)
    except CityError as exc:
        raise ClipError(str(exc)) from exc
    if not cameras:
        raise ClipError(f"{path} holds no camera")
    matching = [camera for camera in cameras if camera_id in (None, camera.id)]
    if len(matching) != 1:
        which = f"no camera {camera_id!r}" if camera_id else "several cameras"
        raise ClipError(f"{path} holds {which}; choose one with --camera-id ({', '.join(c.id for c in cameras)})")
    return matching[0]


def camera_yaml(camera_id: str, source: str, grid_code: str, scene: ClipScene) -> dict[str, Any]:
    """A camera entry of `cameras.yaml` for this scene (its id, rate, frame size, zones and ground calibration),
    reading from `source`."""
    ground = scene.ground
    return {
        "id": camera_id, "source": source, "grid_code": grid_code, "fps": scene.fps,
        "width": scene.width, "height": scene.height,
        "zones": [{"id": zone.id, "kind": zone.kind.value, "polygon": [[x, y] for x, y in zone.polygon],
                   "dwell_s": zone.dwell_s} for zone in scene.zones],
        "ground": {"image": [list(point) for point in ground.image],
                   "metres": [list(point) for point in ground.metres]},
    }


def marked_ground(width: int, height: int, to_ground: Callable[[float, float], tuple[float, float] | None]
                  ) -> Ground:
    """The ground calibration an installer would enter: the corners of an area in the lower part of the frame
    (ground, whatever the camera's tilt) and where they lie in metres."""
    for far in (0.6, 0.7, 0.8):
        image = ((0.25 * width, 0.95 * height), (0.75 * width, 0.95 * height), (0.75 * width, far * height),
                 (0.25 * width, far * height))
        ground = [point for x, y in image if (point := to_ground(x, y)) is not None]
        if len(ground) == 4:
            return Ground(tuple((round(x, 1), round(y, 1)) for x, y in image),
                          tuple((round(x, 3), round(y, 3)) for x, y in ground))
    raise ClipError(f"the lower part of this {width}×{height} view does not show the ground")


def write_clip(scene: ClipScene, seconds: float, out_dir: Path, grid_code: str = DEFAULT_GRID_CODE) -> ClipFiles:
    """Render `seconds` of the scene into out_dir as clip.avi (MJPG), truth.json and camera.yaml."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ClipError(f"cannot create {out_dir}: {exc.strerror or exc}") from exc
    video = (out_dir / VIDEO_NAME).resolve()
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), scene.fps, (scene.width, scene.height))
    if not writer.isOpened():
        raise ClipError(f"cannot write a video to {video}")
    count = round(seconds * scene.fps)
    try:
        for _, frame in scene.frames(0.0, count):
            writer.write(frame)
    finally:
        writer.release()
    document = scene.truth_document(count / scene.fps)
    truth = out_dir / TRUTH_NAME
    camera = out_dir / CAMERA_NAME
    try:
        truth.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        camera.write_text(yaml.safe_dump(camera_yaml(scene.camera_id, str(video), grid_code, scene),
                                         sort_keys=False, allow_unicode=True), encoding="utf-8")
    except OSError as exc:
        raise ClipError(f"cannot write to {out_dir}: {exc.strerror or exc}") from exc
    return ClipFiles(video, truth, camera, count, len(document["events"]))
