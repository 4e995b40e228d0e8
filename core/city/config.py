"""The city's YAML files as strict, typed models: `city.yaml`, and camera files (the city's `cameras.yaml`, or the
camera YAML that `gridhub detect` and `gridhub simulate cameras` take).

As in the settings, unknown keys are errors, and an error names the file, the camera (and zone) and the key:
`cameras.yaml: camera cam-hunan-02: fsp: unknown key`. Zones are polygons in source pixels: they must be simple
(no crossing edges) and lie inside the camera's frame, whose size the file gives as `width` and `height`; without
them it is 640×360, the frame the simulator renders (`sim://`) and the demo city's zones are drawn on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import shapely
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from domain.registry import FRAME_HEIGHT, FRAME_WIDTH, Camera, Ground, Zone, ZoneKind


class CityError(Exception):
    """A city or camera file that is missing or wrong, named with the reason."""


class _Strict(BaseModel):
    # Ids and codes are text even when YAML reads them as numbers (`grid_code: 310104003001002`).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, coerce_numbers_to_str=True)


class CityConfig(_Strict):
    """`city.yaml`: the city's name (default: its directory's), county code and length of its grid codes."""

    name: str | None = Field(None, min_length=1)
    county_code: str = Field("", pattern=r"^(\d{6})?$")  # 6 digits (GB/T 2260), e.g. "310104" for Xuhui
    code_length: Literal[15, 14] = 15


class ZoneConfig(_Strict):
    """A zone of a camera: a simple polygon in source pixels, the rule that applies in it, and its dwell time."""

    id: str = Field(min_length=1)
    kind: ZoneKind
    polygon: list[tuple[float, float]] = Field(min_length=3)
    dwell_s: float = Field(60.0, ge=0, le=3600)  # how long a stall stays, or dust persists, before it is reported

    @field_validator("polygon")
    @classmethod
    def _simple(cls, polygon: list[tuple[float, float]]) -> list[tuple[float, float]]:
        shape = shapely.Polygon(polygon)
        if not shape.is_valid:
            raise ValueError(f"must be a simple polygon, without crossing or overlapping edges "
                             f"({shapely.is_valid_reason(shape)})")
        return polygon


class GroundConfig(_Strict):
    """Four points on the ground, in the image (source pixels) and on a plan in metres, in the same order; no three
    in a line on either (they fix the ground's perspective: sizes in metres where an object stands)."""

    image: list[tuple[float, float]] = Field(min_length=4, max_length=4)
    metres: list[tuple[float, float]] = Field(min_length=4, max_length=4)

    @field_validator("image", "metres")
    @classmethod
    def _spread(cls, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for i in range(4):
            (ax, ay), (bx, by), (cx, cy) = (points[j] for j in range(4) if j != i)
            if abs((bx - ax) * (cy - ay) - (by - ay) * (cx - ax)) < 1e-6 * max(1.0, _span(points)) ** 2:
                raise ValueError("three of the four points lie in a line: mark four corners of an area")
        return points


def _span(points: list[tuple[float, float]]) -> float:
    xs, ys = [x for x, _ in points], [y for _, y in points]
    return max(max(xs) - min(xs), max(ys) - min(ys))


class CameraConfig(_Strict):
    """A camera: its source (video file, RTSP/HTTP URL or `sim://` scene), grid cell, rate, frame size and zones."""

    id: str = Field(min_length=1)
    source: str = ""
    grid_code: str = ""
    fps: float = Field(5.0, gt=0, le=60)  # frames analysed per second
    width: int = Field(FRAME_WIDTH, ge=32, le=7680)  # source pixels: the frame the zones are drawn on
    height: int = Field(FRAME_HEIGHT, ge=32, le=4320)
    zones: list[ZoneConfig] = Field(default_factory=list)
    ground: GroundConfig | None = None  # the ground calibration: sizes in metres (a parked car is not a stall)

    @model_validator(mode="after")
    def _zones_fit(self) -> CameraConfig:
        for zone_id, count in Counter(zone.id for zone in self.zones).items():
            if count > 1:
                raise ValueError(f"zone id {zone_id} appears {count} times; zone ids must be unique per camera")
        for zone in self.zones:
            for x, y in zone.polygon:
                if not (0 <= x <= self.width and 0 <= y <= self.height):
                    raise ValueError(
                        f"zone {zone.id}: point ({x:g}, {y:g}) lies outside the {self.width}×{self.height} frame "
                        f"(give the camera's width and height if its frames are larger)"
                    )
        for x, y in self.ground.image if self.ground else ():
            if not (0 <= x <= self.width and 0 <= y <= self.height):
                raise ValueError(f"ground: image point ({x:g}, {y:g}) lies outside the {self.width}×{self.height} "
                                 f"frame")
        return self

    def to_camera(self) -> Camera:
        """The domain's camera."""
        zones = tuple(Zone(zone.id, zone.kind, tuple(zone.polygon), zone.dwell_s) for zone in self.zones)
        ground = Ground(tuple(self.ground.image), tuple(self.ground.metres)) if self.ground is not None else None
        return Camera(self.id, self.source, self.grid_code, self.fps, zones, self.width, self.height, ground)


def read_text(path: Path) -> str:
    """A file's UTF-8 text; raise CityError naming the file when it cannot be read or is not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CityError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CityError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                        f"save the file as UTF-8") from None


def read_yaml(path: Path) -> Any:
    """The YAML document in a file; raise CityError naming the file (and the line) when it is not valid YAML."""
    text = read_text(path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise CityError(f"{path}{line}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None


def load_city_config(path: Path) -> CityConfig:
    """Load `city.yaml` (empty: the defaults); raise CityError naming the file and the key."""
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise CityError(f"{path}: must be a mapping of name, county_code and code_length")
    try:
        return CityConfig.model_validate(data)
    except ValidationError as exc:
        raise CityError(f"{path}: {_explain(exc, data)}") from None


def load_cameras(path: Path) -> list[Camera]:
    """Load a camera file, one camera mapping or a list of them; raise CityError naming the file, camera and key."""
    data = read_yaml(path)
    entries = [] if data is None else data if isinstance(data, list) else [data]
    try:
        return cameras_from_data(entries)
    except CityError as exc:
        raise CityError(f"{path}: {exc}") from None


def cameras_from_data(entries: Sequence[object]) -> list[Camera]:
    """Cameras from their parsed YAML mappings; raise CityError naming the camera and the key."""
    cameras = [_camera(entry, f"camera #{number}") for number, entry in enumerate(entries, start=1)]
    for camera_id, count in Counter(camera.id for camera in cameras).items():
        if count > 1:
            raise CityError(f"camera id {camera_id} appears {count} times; camera ids must be unique")
    return cameras


def camera_from_mapping(data: Mapping[str, Any]) -> Camera:
    """One camera from its parsed YAML mapping; raise CityError naming the camera and the key."""
    return _camera(data, "camera")


def _camera(entry: object, unnamed: str) -> Camera:
    if not isinstance(entry, Mapping):
        raise CityError(f"{unnamed}: must be a mapping of id, source, grid_code, fps, width, height and zones")
    name = entry.get("id")
    where = f"camera {name}" if isinstance(name, str | int) and str(name) else unnamed
    try:
        return CameraConfig.model_validate(entry).to_camera()
    except ValidationError as exc:
        raise CityError(f"{where}: {_explain(exc, entry)}") from None


def _explain(exc: ValidationError, data: Mapping[str, Any]) -> str:
    """The first error as `zone <id>: <key>: <reason>`, with how many more there are."""
    error = exc.errors()[0]
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return ": ".join((*_where(error["loc"], data), _reason(error))) + more


def _where(loc: tuple[int | str, ...], data: Mapping[str, Any]) -> list[str]:
    parts = []
    if len(loc) >= 2 and loc[0] == "zones" and isinstance(loc[1], int):
        zones = data.get("zones")
        zone = zones[loc[1]] if isinstance(zones, list) else None
        name = zone.get("id") if isinstance(zone, Mapping) else None
        parts.append(f"zone {name}" if isinstance(name, str | int) and str(name) else f"zone #{loc[1] + 1}")
        loc = loc[2:]
    if len(loc) >= 2 and loc[0] == "polygon" and isinstance(loc[1], int):
        parts.append(f"polygon point {loc[1] + 1}")
    elif loc:
        parts.append(".".join(str(part) for part in loc))
    return parts


def _reason(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required"
    if error["type"] in ("model_type", "dict_type"):
        return "must be a mapping"
    if error["type"] == "too_short":
        return f"needs at least {error.get('ctx', {}).get('min_length')} entries, not {len(error['input'])}"
    if error["type"] == "enum":
        known = str(error.get("ctx", {}).get("expected", "")).replace("'", "")
        return f"must be {known}, not {error['input']!r}"
    return error["msg"].removeprefix("Value error, ")
