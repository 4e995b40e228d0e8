"""`sim://` sources: what they name, and the clear refusal of anything else."""

from __future__ import annotations

import pytest

from simulators.cameras import SceneKind, SceneSpec, SimUrlError, parse_sim_url
from simulators.cameras.spec import draw_params


def test_a_sim_url_names_the_scene_kind_seed_and_parameter_overrides() -> None:
    spec = parse_sim_url("sim://construction?seed=303&plumes_per_hour=20&jpeg_quality=70")
    assert spec == SceneSpec(SceneKind.CONSTRUCTION, 303, (("plumes_per_hour", 20.0), ("jpeg_quality", 70.0)))
    assert spec.params.plumes_per_hour == 20.0
    assert spec.params.jpeg_quality == 70


def test_a_specs_url_parses_back_to_the_same_spec() -> None:
    spec = parse_sim_url("sim://street?seed=101&noise_sigma=2.5")
    assert parse_sim_url(spec.url) == spec


def test_the_seed_defaults_to_zero() -> None:
    assert parse_sim_url("sim://street") == SceneSpec(SceneKind.STREET, 0)


@pytest.mark.parametrize(("url", "reason"), [
    ("rtsp://cam/1", "must start with sim://"),
    ("sim://beach?seed=1", "unknown scene 'beach'"),
    ("sim://street?seed=abc", "seed must be a non-negative whole number"),
    ("sim://street?seed=-4", "seed must be a non-negative whole number"),
    ("sim://street?seed=1&wind=3", "unknown scene parameter 'wind'"),
    ("sim://street?seed=1&noise_sigma=loud", "noise_sigma must be a number"),
    ("sim://street?seed=1&noise_sigma=-1", "noise_sigma must be between 0 and inf"),
    ("sim://street?seed=1&jpeg_quality=80.5", "jpeg_quality must be a whole number"),
    ("sim://street?seed=1&seed=2", "seed is given twice"),
    ("sim://street/extra?seed=1", "no path or fragment"),
    ("sim://street?seed", "must be name=value pairs"),
])
def test_a_bad_sim_url_is_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(SimUrlError, match=reason.replace("(", r"\(")):
        parse_sim_url(url)


def test_different_seeds_draw_substantially_different_scenes() -> None:
    drawn = [draw_params(SceneKind.STREET, seed) for seed in range(20)]
    assert len({round(p.camera_height_m, 3) for p in drawn}) == 20
    assert max(p.pedestrians_per_min for p in drawn) > 2 * min(p.pedestrians_per_min for p in drawn)
    assert max(p.yaw_deg for p in drawn) - min(p.yaw_deg for p in drawn) > 60
