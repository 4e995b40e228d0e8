"""What to render: the scene kind, its seed, and the scene parameters drawn from that seed (or overridden)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qsl, urlsplit

import numpy as np


class SimUrlError(ValueError):
    """A `sim://` source the simulator cannot render; the message says what is wrong."""


class SceneKind(StrEnum):
    """The kinds of scene the simulator renders."""

    STREET = "street"  # 街道: façades, pavement, pedestrians, street vendors
    CONSTRUCTION = "construction"  # 工地: bare ground, workers, dust plumes


@dataclass(frozen=True, slots=True)
class SceneParams:
    """Everything about a scene that varies between seeds; every field can be overridden by name."""

    horizon: float  # horizon row as a share of the frame height (negative: above the frame)
    camera_height_m: float
    fov_deg: float  # horizontal field of view
    yaw_deg: float  # angle between the viewing direction and the street axis (0: looking along it)
    sun_azimuth_deg: float  # where shadows point, relative to the viewing direction
    sun_elevation_deg: float
    texture_seed: int  # façade and ground textures, independent of the event schedule
    pedestrians_per_min: float
    pause_share: float  # share of pedestrians who stop for a few seconds on their way
    stalls_per_hour: float  # stalls that stay in a zone for at least its dwell time
    short_stalls_per_hour: float  # stalls that leave a zone before its dwell time (distractors)
    outside_stalls_per_hour: float  # stalls outside every vending zone (distractors)
    plumes_per_hour: float  # dust plumes visible over a construction zone for at least 30 s
    short_plumes_per_hour: float  # puffs visible for less than 30 s (distractors)
    outside_plumes_per_hour: float  # plumes away from every construction zone (distractors)
    light_drift: float  # amplitude of the slow global gain drift (sun and thin cloud)
    sudden_lights_per_hour: float  # cloud shadows and exposure jumps
    noise_sigma: float  # sensor noise, in grey levels
    jpeg_quality: int
    warmup_s: float  # no stall or dust before this, so that a detector can learn the empty scene
    # Cued events, on top of the seed's random ones (the demo city's cameras use them so that something happens
    # at once and regularly): a stall that outstays its zone's dwell time, or dust over a site, begins at
    # first_event_s (0: none), then one every event_every_s (0: only the first).
    first_event_s: float
    event_every_s: float


_NON_NEGATIVE = frozenset(
    f.name for f in dataclasses.fields(SceneParams) if f.name not in ("horizon", "yaw_deg", "sun_azimuth_deg")
)
_LIMITS: dict[str, tuple[float, float]] = {
    "horizon": (-0.5, 0.6),
    "camera_height_m": (1.5, 60.0),
    "fov_deg": (20.0, 120.0),
    "sun_elevation_deg": (5.0, 90.0),
    "pause_share": (0.0, 1.0),
    "jpeg_quality": (10, 100),
}


def draw_params(kind: SceneKind, seed: int) -> SceneParams:
    """The scene parameters for this kind and seed, drawn from ranges that look like real cameras."""
    rng = np.random.default_rng([seed, 0x5CE4E])
    street = kind is SceneKind.STREET

    def u(low: float, high: float) -> float:
        return float(rng.uniform(low, high))

    def pick(on_street: tuple[float, float], on_site: tuple[float, float]) -> float:
        return u(*(on_street if street else on_site))

    return SceneParams(
        # street cameras hang on poles looking along or across the street; site cameras look down from a height
        horizon=pick((0.22, 0.42), (-0.15, 0.12)),
        camera_height_m=pick((3.5, 7.0), (9.0, 20.0)),
        fov_deg=u(50, 85),
        yaw_deg=pick((-70, 70), (60, 90)) * (1.0 if street or rng.random() < 0.5 else -1.0),
        sun_azimuth_deg=u(-160, 160),
        sun_elevation_deg=u(20, 70),
        texture_seed=int(rng.integers(0, 2**31)),
        pedestrians_per_min=pick((4, 30), (1, 8)),
        pause_share=pick((0.1, 0.4), (0.2, 0.5)),
        stalls_per_hour=pick((8, 20), (0, 0)),
        short_stalls_per_hour=pick((3, 10), (0, 0)),
        outside_stalls_per_hour=pick((3, 10), (0, 0)),
        plumes_per_hour=pick((0, 0), (6, 16)),
        short_plumes_per_hour=pick((0, 0), (3, 10)),
        outside_plumes_per_hour=pick((0, 0), (2, 6)),
        light_drift=u(0.03, 0.2),
        sudden_lights_per_hour=u(2, 12),
        noise_sigma=u(1.0, 5.0),
        jpeg_quality=int(rng.integers(55, 93)),
        warmup_s=20.0,
        first_event_s=0.0,
        event_every_s=0.0,
    )


@dataclass(frozen=True, slots=True)
class SceneSpec:
    """A scene kind, its seed and any parameters that override the seed's draw."""

    kind: SceneKind
    seed: int = 0
    overrides: tuple[tuple[str, float], ...] = ()

    @property
    def params(self) -> SceneParams:
        """The seed's parameters with the overrides applied."""
        params = draw_params(self.kind, self.seed)
        changes = {name: (int(value) if name in _INT_FIELDS else value) for name, value in self.overrides}
        return dataclasses.replace(params, **changes)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        """The `sim://` URL that parses back to this spec."""
        extra = "".join(f"&{name}={_format(value)}" for name, value in self.overrides)
        return f"sim://{self.kind.value}?seed={self.seed}{extra}"


_FIELDS = {f.name for f in dataclasses.fields(SceneParams)}
_INT_FIELDS = frozenset({"texture_seed", "jpeg_quality"})


def _format(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def override(name: str, text: str) -> tuple[str, float]:
    """Check one `name=value` parameter override and return it as a pair."""
    if name not in _FIELDS:
        raise SimUrlError(f"unknown scene parameter {name!r}; known: {', '.join(sorted(_FIELDS))}")
    try:
        value = float(text)
    except ValueError:
        raise SimUrlError(f"scene parameter {name} must be a number, not {text!r}") from None
    if not math.isfinite(value):
        raise SimUrlError(f"scene parameter {name} must be finite, not {text!r}")
    if name in _INT_FIELDS and not value.is_integer():
        raise SimUrlError(f"scene parameter {name} must be a whole number, not {text!r}")
    low, high = _LIMITS.get(name, (0.0 if name in _NON_NEGATIVE else -math.inf, math.inf))
    if not low <= value <= high:
        raise SimUrlError(f"scene parameter {name} must be between {low:g} and {high:g}, not {text}")
    return name, value


def parse_sim_url(url: str) -> SceneSpec:
    """Parse `sim://street?seed=101` (or `construction`, plus optional `name=value` parameter overrides)."""
    parts = urlsplit(url)
    if parts.scheme != "sim":
        raise SimUrlError(f"{url!r} is not a simulator source: it must start with sim://")
    try:
        kind = SceneKind(parts.netloc)
    except ValueError:
        raise SimUrlError(f"{url!r}: unknown scene {parts.netloc!r}; use sim://street or sim://construction") from None
    if parts.path not in ("", "/") or parts.fragment:
        raise SimUrlError(f"{url!r}: a simulator source has no path or fragment, only ?seed=N&name=value")
    seed = 0
    overrides: list[tuple[str, float]] = []
    seen: set[str] = set()
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise SimUrlError(f"{url!r}: the query must be name=value pairs joined by &") from None
    for name, text in pairs:
        if name in seen:
            raise SimUrlError(f"{url!r}: {name} is given twice")
        seen.add(name)
        if name == "seed":
            if not text.isdigit():
                raise SimUrlError(f"{url!r}: seed must be a non-negative whole number, not {text!r}")
            seed = int(text)
        else:
            overrides.append(override(name, text))
    return SceneSpec(kind, seed, tuple(overrides))
