"""The device and camera registry: what is installed where, and what it measures."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

from domain.cells import CellIndex
from domain.components import ComponentId, ComponentIdError, parse_component_id


class RegistryError(ValueError):
    """A malformed or inconsistent registry entry."""


class DeviceKind(StrEnum):
    """Kinds of IoT device; the value is the `{kind}` segment of the MQTT topic."""

    RAIN = "rain"  # 雨量计 tipping-bucket rain gauge
    CROWD = "crowd"  # 客流计数器 crowd counter
    MANHOLE = "manhole"  # 井盖传感器 manhole-cover sensor


@dataclass(frozen=True, slots=True)
class Device:
    """One registered device, placed in a grid cell."""

    id: str
    kind: DeviceKind
    grid_code: str
    lon: float
    lat: float
    report_interval_s: int
    battery_floor_v: float | None = None
    component_id: ComponentId | None = None  # manhole sensors: the cover they watch
    well_depth_cm: float | None = None  # manhole sensors: cover to well bottom
    zone_area_m2: float | None = None  # crowd counters: the area they count


class ZoneKind(StrEnum):
    """What a camera zone watches for."""

    NO_VENDING = "no_vending"
    SHOPFRONT = "shopfront"
    CONSTRUCTION = "construction"


@dataclass(frozen=True, slots=True)
class Zone:
    """A polygon in a camera's image (source pixels) with the rule that applies there."""

    id: str
    kind: ZoneKind
    polygon: tuple[tuple[float, float], ...]
    dwell_s: float


# The frame a camera's zones are drawn on unless it says otherwise: the simulator's, and the demo city's cameras'.
FRAME_WIDTH, FRAME_HEIGHT = 640, 360


Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Ground:
    """A camera's ground calibration: four points on the ground in the image (source pixels) and where they are,
    in metres on a plan of the ground (any origin and orientation), as an installer marks and measures them."""

    image: tuple[Point, ...]  # four of each
    metres: tuple[Point, ...]


@dataclass(frozen=True, slots=True)
class Camera:
    """One camera: its source (file, RTSP/HTTP URL or simulator), cell, processing rate and zones, the size
    of the frame (source pixels) its zones are drawn on, and its ground calibration where it has one."""

    id: str
    source: str
    grid_code: str
    fps: float
    zones: tuple[Zone, ...]
    width: int = FRAME_WIDTH
    height: int = FRAME_HEIGHT
    ground: Ground | None = None


class Registry:
    """Devices and cameras by id."""

    def __init__(self, devices: Iterable[Device], cameras: Iterable[Camera] = ()) -> None:
        self.devices: dict[str, Device] = {}
        for device in devices:
            if device.id in self.devices:
                raise RegistryError(f"device id {device.id} appears twice")
            self.devices[device.id] = device
        self.cameras: dict[str, Camera] = {}
        for camera in cameras:
            if camera.id in self.cameras:
                raise RegistryError(f"camera id {camera.id} appears twice")
            self.cameras[camera.id] = camera

    def __iter__(self) -> Iterator[Device]:
        return iter(self.devices.values())

    def __len__(self) -> int:
        return len(self.devices)

    def check_against(self, cells: CellIndex) -> None:
        """Raise if a device or camera names an unknown cell, or a device's position lies in another cell."""
        for device in self.devices.values():
            if cells.get(device.grid_code) is None:
                raise RegistryError(f"device {device.id}: unknown grid cell {device.grid_code}")
            located = cells.locate(device.lon, device.lat)
            if located is None or located.code.digits != device.grid_code:
                where = located.code.digits if located else "outside every cell"
                raise RegistryError(
                    f"device {device.id}: position ({device.lon}, {device.lat}) is in {where}, "
                    f"not in its grid cell {device.grid_code}"
                )
        for camera in self.cameras.values():
            if cells.get(camera.grid_code) is None:
                raise RegistryError(f"camera {camera.id}: unknown grid cell {camera.grid_code}")


_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def device_from_row(row: Mapping[str, str]) -> Device:
    """Build a device from a CSV row; kind-specific fields are required for their kind."""
    device_id = (row.get("id") or "").strip()
    if not device_id or not set(device_id) <= _ID_CHARS or len(device_id) > 64:
        raise RegistryError(f"device id {device_id!r} must be 1-64 characters of [A-Za-z0-9_-]")
    where = f"device {device_id}"
    try:
        kind = DeviceKind((row.get("kind") or "").strip())
    except ValueError:
        raise RegistryError(f"{where}: kind {row.get('kind')!r} must be rain, crowd or manhole") from None
    component: ComponentId | None = None
    if kind is DeviceKind.MANHOLE:
        try:
            component = parse_component_id(row.get("component_id") or "")
        except ComponentIdError as exc:
            raise RegistryError(f"{where}: {exc}") from exc
    device = Device(
        id=device_id,
        kind=kind,
        grid_code=(row.get("grid_code") or "").strip(),
        lon=_number(row, "lon", where),
        lat=_number(row, "lat", where),
        report_interval_s=_whole(_number(row, "report_interval_s", where, minimum=1), "report_interval_s", where),
        battery_floor_v=_optional_number(row, "battery_floor_v", where),
        component_id=component,
        well_depth_cm=_number(row, "well_depth_cm", where, minimum=1) if kind is DeviceKind.MANHOLE else None,
        zone_area_m2=_number(row, "zone_area_m2", where, minimum=1) if kind is DeviceKind.CROWD else None,
    )
    return device


def _number(row: Mapping[str, str], key: str, where: str, minimum: float | None = None) -> float:
    value = row.get(key)
    text = "" if value is None else str(value).strip()
    try:
        number = float(text)
    except ValueError:
        raise RegistryError(f"{where}: {key} {text!r} is not a number") from None
    if not math.isfinite(number):
        raise RegistryError(f"{where}: {key} must be a finite number, not {text!r}")
    if minimum is not None and number < minimum:
        raise RegistryError(f"{where}: {key} must be at least {minimum}")
    return number


def _whole(number: float, key: str, where: str) -> int:
    if not number.is_integer():
        raise RegistryError(f"{where}: {key} must be a whole number, not {number}")
    return int(number)


def _optional_number(row: Mapping[str, str], key: str, where: str) -> float | None:
    return _number(row, key, where) if (row.get(key) or "").strip() else None
