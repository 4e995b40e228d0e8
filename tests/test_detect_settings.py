"""The detectors' tunables in the settings: `detect.stall.*` and `detect.dust.*`, bounded and consistent."""

from __future__ import annotations

from typing import Any

import pytest

from core.settings import ConfigError, load_settings


def test_a_tunable_can_be_set_from_the_environment() -> None:
    settings = load_settings(environ={"GRIDHUB_DETECT__STALL__STATIONARY_ON_S": "3"})
    assert settings.detect.stall.stationary_on_s == 3.0


@pytest.mark.parametrize(("key", "value", "message"), [
    ("detect.stall.stationary_s", 3, "detect.stall.stationary_s: unknown key"),
    ("detect.stall.min_fill", 1.5, "detect.stall.min_fill: Input should be less than or equal to 1"),
    ("detect.stall.long_term_s", float("nan"), "detect.stall.long_term_s: Input should be a finite number"),
    ("detect.dust.cell_px", 1, "detect.dust.cell_px: Input should be greater than or equal to 2"),
    ("detect.dust.samples", 2.5, "detect.dust.samples: Input should be a valid integer"),
])
def test_a_tunable_out_of_its_bounds_is_refused_by_name(key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^command line: {message}"):
        load_settings(overrides={key: value}, environ={})


@pytest.mark.parametrize(("overrides", "message"), [
    ({"detect.stall.shadow_min": 1.5}, "shadow_min must be below shadow_max"),
    ({"detect.stall.confirmed_grace_s": 2}, "confirmed_grace_s must be at least track_grace_s"),
    ({"detect.dust.score_off": 0.05}, "score_off must not exceed score_on"),
    ({"detect.dust.airlight": 0.3}, "airlight must be below airlight_max"),
])
def test_tunables_that_contradict_each_other_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(overrides=overrides, environ={})
