"""What the second generator renders: scene kind, seed, and every parameter the seed draws (each overridable).

Conditions are drawn from the seed with these probabilities, independently of one another:
night 0.25, camera shake 0.3, weather clear 0.5 / overcast 0.3 / rain 0.2, auto-exposure pumping 0.3,
blocky compression 0.25, dropped frames 0.2. Overrides name a field and give its value as text:
`night=1`, `weather=rain`, `compression=blocky`, `stalls_per_hour=60`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

NIGHT_P = 0.25
SHAKE_P = 0.3
WEATHER_P = {"clear": 0.5, "overcast": 0.3, "rain": 0.2}
PUMPING_P = 0.3
BLOCKY_P = 0.25
DROPPED_P = 0.2


class ParamError(ValueError):
    """A parameter override the second generator cannot use; the message says which and why."""


class Kind(StrEnum):
    """The scenes the second generator renders."""

    STREET = "street"  # 街道: pavement, road, shopfronts, vendors, parked cars
    CONSTRUCTION = "construction"  # 工地: bare soil, machines, workers, dust


class Weather(StrEnum):
    """Sky and light: hard moving shadows, flat light, or flat light with rain streaks and wet ground."""

    CLEAR = "clear"
    OVERCAST = "overcast"
    RAIN = "rain"


class Compression(StrEnum):
    """How the camera's encoder treats the picture."""

    NORMAL = "normal"
    BLOCKY = "blocky"  # a heavy JPEG re-encode: 8×8 blocks and ringing


@dataclass(frozen=True, slots=True)
class Params:
    """Everything about a scene that varies between seeds."""

    # the camera on its pole, looking down
    camera_height_m: float
    pitch_deg: float  # below the horizon
    fov_deg: float  # horizontal
    yaw_deg: float  # street: angle between the view and the street's axis; site: orientation of the fence
    roll_deg: float
    # the static world
    texture_seed: int
    pavement_m: float  # street: width of the far pavement
    road_m: float  # street: width of the carriageway
    dark_soil: bool  # site: dark soil (and dark dust) rather than light
    zone_count: int  # vending zones on a street (2-3), construction zones on a site (1-2)
    dwell_s: float  # vending zones' dwell time; construction zones always use 30 s
    # activity, per minute or hour of clip
    walkers_per_min: float
    groups_per_hour: float  # people who stand and talk for 30-120 s
    sitters_per_hour: float  # people who sit on a bench or the kerb for minutes
    vehicles_per_min: float  # cars, vans and scooters driving by
    parked_cars_per_hour: float  # cars that park for minutes, half of them on the pavement in a zone
    stalls_per_hour: float  # stalls that stay in a vending zone for longer than its dwell time
    short_stalls_per_hour: float  # stalls that leave a zone before its dwell time (distractors)
    outside_stalls_per_hour: float  # stalls outside every vending zone (distractors)
    workers: int  # site workers walking between jobs
    plumes_per_hour: float  # dust plumes over a construction zone that last 30 s or more
    short_puffs_per_hour: float  # dust that lasts less than 30 s (distractors)
    outside_plumes_per_hour: float  # plumes from outside every construction zone (distractors)
    wind_mps: float
    warmup_s: float  # no stall, parked car, group, sitter or dust before this
    # conditions
    night: bool
    shake: bool
    weather: Weather
    exposure_pumping: bool
    compression: Compression
    dropped_frames: bool
    # how strong each condition is
    sun_azimuth_deg: float
    sun_elevation_deg: float
    sun_drift_deg_per_min: float  # shadows turn with the sun, faster than the real one so that a clip shows it
    light_changes_per_hour: float  # clouds over the sun, lights switched: steps the exposure control must follow
    noise_sigma: float  # sensor noise in grey levels (doubled at night)
    jpeg_quality: int  # of the blocky re-encode
    shake_px: float  # jitter amplitude at 640 px width (scaled with the frame)
    bumps_per_hour: float  # knocks on the pole: a few pixels, ringing out in a second
    drops_per_min: float  # freezes of 1-4 frames, then a jump back to real time

    def conditions(self) -> dict[str, Any]:
        """The conditions as they appear in the truth document."""
        return {"night": self.night, "shake": self.shake, "weather": self.weather.value,
                "exposure_pumping": self.exposure_pumping, "compression": self.compression.value,
                "dropped_frames": self.dropped_frames}

    def as_json(self) -> dict[str, Any]:
        """Every field, with enums as their names."""
        return {f.name: (value.value if isinstance(value := getattr(self, f.name), StrEnum) else value)
                for f in dataclasses.fields(self)}


def draw_params(kind: Kind, seed: int) -> Params:
    """The parameters of this kind and seed, from ranges that look like real pole cameras."""
    rng = np.random.default_rng([seed, 0x5EC0D])
    street = kind is Kind.STREET

    def u(low: float, high: float) -> float:
        return float(rng.uniform(low, high))

    pitch = u(20, 60) if street else u(25, 55)
    tilt = math.tan(math.radians(pitch))
    # the centre of the view lands 6-18 m away on a street and 15-40 m on a site: height follows from pitch
    near, far = (6.0, 18.0) if street else (15.0, 40.0)
    low_h, high_h = (4.0, 12.0) if street else (10.0, 25.0)
    height = u(max(low_h, near * tilt), max(min(high_h, far * tilt), max(low_h, near * tilt)))
    weather = Weather(str(rng.choice(list(WEATHER_P), p=list(WEATHER_P.values()))))
    return Params(
        camera_height_m=height,
        pitch_deg=pitch,
        fov_deg=u(50, 80),
        yaw_deg=u(40, 90) * (1 if rng.random() < 0.5 else -1),
        roll_deg=u(-2.0, 2.0),
        texture_seed=int(rng.integers(0, 2**31)),
        pavement_m=u(4.5, 8.0),
        road_m=u(6.0, 12.0),
        dark_soil=bool(rng.random() < 0.5),
        zone_count=int(rng.integers(2, 4)) if street else int(rng.integers(1, 3)),
        dwell_s=float(round(u(20, 60))),
        walkers_per_min=u(4, 20) if street else 0.0,
        groups_per_hour=u(10, 24) if street else 0.0,
        sitters_per_hour=u(6, 14) if street else 0.0,
        vehicles_per_min=u(2, 10) if street else 0.0,
        parked_cars_per_hour=u(8, 16) if street else 0.0,
        stalls_per_hour=u(40, 60) if street else 0.0,
        short_stalls_per_hour=u(12, 24) if street else 0.0,
        outside_stalls_per_hour=u(10, 20) if street else 0.0,
        workers=int(rng.integers(2, 7)) if not street else 0,
        plumes_per_hour=u(16, 26) if not street else 0.0,
        short_puffs_per_hour=u(14, 28) if not street else 0.0,
        outside_plumes_per_hour=u(6, 14) if not street else 0.0,
        wind_mps=u(0.5, 6.0),
        warmup_s=20.0,
        night=bool(rng.random() < NIGHT_P),
        shake=bool(rng.random() < SHAKE_P),
        weather=weather,
        exposure_pumping=bool(rng.random() < PUMPING_P),
        compression=Compression.BLOCKY if rng.random() < BLOCKY_P else Compression.NORMAL,
        dropped_frames=bool(rng.random() < DROPPED_P),
        sun_azimuth_deg=u(-180, 180),
        sun_elevation_deg=u(20, 60),
        sun_drift_deg_per_min=u(0.3, 1.5),
        light_changes_per_hour=u(4, 16),
        noise_sigma=u(1.0, 4.0),
        jpeg_quality=int(rng.integers(5, 16)),
        shake_px=u(0.3, 1.2),
        bumps_per_hour=u(10, 30),
        drops_per_min=u(1, 4),
    )


_LIMITS: dict[str, tuple[float, float]] = {
    "camera_height_m": (2.0, 40.0), "pitch_deg": (10.0, 80.0), "fov_deg": (30.0, 110.0), "yaw_deg": (-90.0, 90.0),
    "roll_deg": (-10.0, 10.0), "pavement_m": (3.0, 15.0), "road_m": (4.0, 25.0), "zone_count": (1, 3),
    "dwell_s": (5.0, 600.0), "sun_azimuth_deg": (-180.0, 180.0), "sun_elevation_deg": (5.0, 85.0),
    "jpeg_quality": (2, 100), "workers": (0, 30),
}
_FIELDS = {f.name: f for f in dataclasses.fields(Params)}
_TRUE, _FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})


def override(name: str, text: str) -> tuple[str, Any]:
    """Check one `name=value` override against its field and return (name, typed value)."""
    field = _FIELDS.get(name)
    if field is None:
        raise ParamError(f"unknown parameter {name!r} of the second generator; known: {', '.join(sorted(_FIELDS))}")
    kind, word = field.type, text.strip().lower()
    if kind == "bool":
        if word not in _TRUE | _FALSE:
            raise ParamError(f"parameter {name} is on or off (1/0, true/false), not {text!r}")
        return name, word in _TRUE
    for choice in (Weather, Compression):
        if kind == choice.__name__:
            try:
                return name, choice(word)
            except ValueError:
                options = "|".join(c.value for c in choice)
                raise ParamError(f"parameter {name} must be one of {options}, not {text!r}") from None
    try:
        value = float(word)
    except ValueError:
        raise ParamError(f"parameter {name} must be a number, not {text!r}") from None
    if not math.isfinite(value):
        raise ParamError(f"parameter {name} must be finite, not {text!r}")
    if kind == "int" and not value.is_integer():
        raise ParamError(f"parameter {name} must be a whole number, not {text!r}")
    low, high = _LIMITS.get(name, (0.0, math.inf))
    if not low <= value <= high:
        raise ParamError(f"parameter {name} must be between {low:g} and {high:g}, not {text}")
    return name, int(value) if kind == "int" else value


@dataclass(frozen=True, slots=True)
class Spec:
    """A scene kind, its seed, and overrides of what the seed draws (as given, in order)."""

    kind: Kind
    seed: int = 0
    overrides: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, kind: str, seed: int = 0, overrides: Iterable[tuple[str, str]] = ()) -> Spec:
        """A spec whose overrides are checked now, so that a bad one fails before anything renders."""
        try:
            scene_kind = Kind(kind)
        except ValueError:
            raise ParamError(f"unknown scene {kind!r}; use street or construction") from None
        if seed < 0:
            raise ParamError(f"seed must be a non-negative whole number, not {seed}")
        pairs = tuple((name.strip(), str(text).strip()) for name, text in overrides)
        for name, text in pairs:
            override(name, text)
        return cls(scene_kind, seed, pairs)

    @property
    def params(self) -> Params:
        """The seed's parameters with the overrides applied."""
        return dataclasses.replace(draw_params(self.kind, self.seed), **dict(override(n, t) for n, t in self.overrides))

    @property
    def label(self) -> str:
        """A short name that says how to make this scene again, e.g. `second:street?seed=7&night=1`."""
        return f"second:{self.kind.value}?seed={self.seed}" + "".join(f"&{n}={t}" for n, t in self.overrides)
