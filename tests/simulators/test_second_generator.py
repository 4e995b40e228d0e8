"""The second scene generator: deterministic, every condition at every size, honest truth, clips via the CLI,
and independent of the first generator's drawing and planning code."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import cv2
import numpy as np
import orjson
import pytest
import yaml
from click.testing import CliRunner

from core.city.config import camera_from_mapping
from domain.registry import ZoneKind
from gridhub.cli import EXIT_CONFIG, cli
from simulators.cameras.second import Kind, ParamError, SecondScene, Spec, draw_params
from simulators.cameras.second.dust import Plume, Puff
from simulators.cameras.second.world import signed_distance

PACKAGE = Path(__file__).parents[2] / "simulators" / "cameras" / "second"
SIZES = [(640, 360), (1280, 720), (1920, 1080)]
ALL_ON = {"night": "1", "weather": "rain", "shake": "1", "exposure_pumping": "1", "compression": "blocky",
          "dropped_frames": "1", "bumps_per_hour": "600", "light_changes_per_hour": "300"}
QUIET = {"night": "0", "shake": "0", "exposure_pumping": "0", "compression": "normal", "dropped_frames": "0"}
NOTHING_STAYS = {"stalls_per_hour": "0", "short_stalls_per_hour": "0", "outside_stalls_per_hour": "0",
                 "parked_cars_per_hour": "0", "groups_per_hour": "0", "sitters_per_hour": "0"}


def scene(kind: str, seed: int, width: int = 320, height: int = 180, fps: float = 10.0,
          **overrides: str) -> SecondScene:
    return SecondScene(Spec.of(kind, seed, overrides.items()), fps=fps, width=width, height=height)


@pytest.mark.parametrize("kind", ["street", "construction"])
def test_the_same_seed_overrides_fps_and_size_give_the_same_frames_and_truth(kind: str) -> None:
    first, second = (scene(kind, 21, **ALL_ON) for _ in range(2))
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(first.frames(100.0, 3), second.frames(100.0, 3),
                                                              strict=True))
    assert first.truth_document(300) == second.truth_document(300)
    other = scene(kind, 22, **ALL_ON)
    assert not np.array_equal(first.frame(1000), other.frame(1000))


def test_a_frame_does_not_depend_on_what_was_asked_of_the_scene_before() -> None:
    fresh = scene("street", 23, stalls_per_hour="60")
    planned = scene("street", 23, stalls_per_hour="60")
    planned.truth(1200)
    planned.frame(100)
    assert all(np.array_equal(fresh.frame(index), planned.frame(index)) for index in (2990, 2999, 3000))


@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.parametrize("kind", ["street", "construction"])
@pytest.mark.parametrize("conditions", [ALL_ON, {**QUIET, "weather": "clear"}, {**QUIET, "weather": "overcast"}],
                         ids=["night-rain-shake-pumping-blocky-dropped", "clear-hard-shadows", "overcast"])
def test_every_condition_renders_at_each_size(kind: str, width: int, height: int, conditions: dict[str, str]) -> None:
    frames = list(scene(kind, 5, width, height, **conditions).frames(150.0, 2))
    assert [frame.shape for _, frame in frames] == [(height, width, 3)] * 2
    assert all(frame.dtype == np.uint8 for _, frame in frames)


def test_zones_and_true_boxes_scale_with_the_frame() -> None:
    small, large = scene("street", 3, 640, 360), scene("street", 3, 1280, 720)
    for zone, bigger in zip(small.zones, large.zones, strict=True):
        assert zone.id == bigger.id
        assert np.allclose(np.array(zone.polygon) * 2, bigger.polygon, atol=0.5)
    events, bigger_events = small.truth(300), large.truth(300)
    assert [(e.zone_id, e.start_s, e.end_s) for e in events] == [(e.zone_id, e.start_s, e.end_s) for e in bigger_events]
    assert all(np.allclose(np.array(e.bbox) * 2, f.bbox, atol=2) for e, f in zip(events, bigger_events, strict=True))


@pytest.mark.parametrize("fps", [5.0, 10.0, 25.0])
def test_frames_come_at_the_scene_fps(fps: float) -> None:
    times = [t for t, _ in scene("street", 3, 160, 90, fps).frames(10.0, 4)]
    assert times == pytest.approx([10.0 + i / fps for i in range(4)])


def test_night_is_darker_than_day() -> None:
    day = scene("street", 8, **{**QUIET, "weather": "overcast"}).frame(600)
    night = scene("street", 8, **{**QUIET, "night": "1", "weather": "overcast"}).frame(600)
    assert night.mean() < 0.6 * day.mean()


def test_dropped_frames_repeat_an_earlier_frame_and_only_when_on() -> None:
    def repeats(**overrides: str) -> int:
        frames = [frame for _, frame in scene("street", 4, 160, 90, **{**QUIET, **overrides}).frames(30.0, 120)]
        return sum(np.array_equal(a, b) for a, b in itertools.pairwise(frames))

    assert repeats(dropped_frames="1", drops_per_min="60") > 0
    assert repeats() == 0


@pytest.fixture(scope="module")
def busy_streets() -> list[SecondScene]:
    return [scene("street", seed, stalls_per_hour="60", short_stalls_per_hour="30", outside_stalls_per_hour="30")
            for seed in range(30, 34)]


def test_true_stalls_stand_in_their_zone_for_at_least_its_dwell_time(busy_streets: list[SecondScene]) -> None:
    checked = 0
    for street in busy_streets:
        zones = {zone.id: zone for zone in street.zones}
        for event in street.truth(600):
            assert event.kind == "stall" and event.bbox is not None
            zone = zones[event.zone_id]
            x, y, w, h = event.bbox
            assert zone.kind in (ZoneKind.NO_VENDING, ZoneKind.SHOPFRONT)
            assert signed_distance(zone, x + w / 2, y + h) > 0
            assert event.end_s - event.start_s >= zone.dwell_s
            checked += 1
    assert checked >= 12


def test_nothing_stays_before_the_warm_up_is_over(busy_streets: list[SecondScene]) -> None:
    for street in busy_streets:
        street.truth(600)
        timeline = street.timeline
        assert min(stall.stop_s for stall in timeline.stalls) >= street.params.warmup_s
        assert all(vehicle.parked[0] >= street.params.warmup_s for vehicle in timeline.vehicles if vehicle.parked)


def test_a_true_stall_names_the_shape_of_its_stall_as_its_cause() -> None:
    causes = set()
    for seed in range(40, 44):
        street = scene("street", seed, stalls_per_hour="30")
        events = street.truth(600)
        stalls = {(stall.zone_id, stall.stop_s): stall.look.kind for stall in street.timeline.stalls}
        for event in events:
            assert event.cause == stalls[(event.zone_id, event.start_s)]
            causes.add(event.cause)
    assert len(causes) >= 2


def test_short_stalls_and_stalls_outside_the_zones_are_never_truth() -> None:
    short = outside = 0
    for seed in range(40, 43):
        street = scene("street", seed, stalls_per_hour="0", short_stalls_per_hour="40", outside_stalls_per_hour="40")
        assert street.truth(600) == []
        dwell = {zone.id: zone.dwell_s for zone in street.zones}
        for stall in street.timeline.stalls:
            if stall.zone_id is None:
                outside += 1
            else:
                assert stall.leave_s - stall.stop_s < dwell[stall.zone_id]
                short += 1
    assert short >= 5 and outside >= 5


def test_a_car_parked_in_a_vending_zone_for_longer_than_its_dwell_is_never_truth() -> None:
    parked = []
    for seed in range(50, 54):
        street = scene("street", seed, **{**NOTHING_STAYS, "parked_cars_per_hour": "40"})
        assert street.truth(600) == []
        dwell = {zone.id: zone.dwell_s for zone in street.zones}
        parked += [car for car in street.timeline.vehicles if car.parked and car.zone_id
                   and car.parked[1] - car.parked[0] > dwell[car.zone_id]]
    assert len(parked) >= 3


def test_people_sitting_or_standing_in_groups_for_minutes_are_never_truth() -> None:
    sitters = groups = 0
    for seed in range(60, 63):
        street = scene("street", seed, **{**NOTHING_STAYS, "sitters_per_hour": "30", "groups_per_hour": "30"})
        assert street.truth(600) == []
        people = street.timeline.people
        sitters += sum(person.seat_m is not None and person.end_s - person.start_s > 120 for person in people)
        groups += sum(person.talks for person in people)
    assert sitters >= 5 and groups >= 10


@pytest.fixture(scope="module")
def dusty_sites() -> list[SecondScene]:
    return [scene("construction", seed, plumes_per_hour="30", short_puffs_per_hour="30",
                  outside_plumes_per_hour="20") for seed in range(70, 74)]


def test_true_dust_rises_from_a_construction_zone_for_at_least_30_s(dusty_sites: list[SecondScene]) -> None:
    checked = 0
    for site in dusty_sites:
        zones = {zone.id: zone for zone in site.zones}
        for event in site.truth(600):
            assert (event.kind, event.bbox, zones[event.zone_id].kind) == ("dust", None, ZoneKind.CONSTRUCTION)
            assert event.end_s - event.start_s >= 30.0
            sources = [p for p in site.timeline.plumes if p.zone_id == event.zone_id
                       and any(a < event.end_s and event.start_s < b for a, b in p.visible())]
            assert sources and all(signed_distance(zones[event.zone_id], *site.camera.point(p.x, p.y)) > 0
                                   for p in sources)
            assert event.cause == "+".join(sorted({p.style for p in sources}))
            checked += 1
    assert checked >= 6


def test_short_puffs_and_plumes_outside_every_zone_are_never_truth() -> None:
    short = outside = 0
    for seed in range(80, 83):
        site = scene("construction", seed, plumes_per_hour="0", short_puffs_per_hour="40",
                     outside_plumes_per_hour="30")
        assert site.truth(600) == []
        plumes: list[Plume] = site.timeline.plumes
        outside += sum(plume.zone_id is None for plume in plumes)
        short += sum(plume.zone_id is not None for plume in plumes)
    assert short >= 5 and outside >= 5


def _puffs(every_s: float) -> Plume:
    puffs = tuple(Puff(30.0 + k * every_s, 1.5, 1.0) for k in range(6))
    return Plume(0.0, 20.0, 3.0, "z-site-1", "digger", puffs, (200, 210, 220), (0.5, 0.0), 0.05, 0.8, 1.2, 0.6,
                 2.5, 0)


def test_puffs_less_than_10_s_apart_are_one_plume_and_further_apart_are_not() -> None:
    assert len(_puffs(8.0).visible()) == 1
    assert len(_puffs(25.0).visible()) == 6


def test_overrides_replace_what_the_seed_draws() -> None:
    drawn = draw_params(Kind.STREET, 9)
    params = Spec.of("street", 9, [("night", str(int(not drawn.night))), ("weather", "rain"),
                                   ("dwell_s", "45")]).params
    assert (params.night, params.weather.value, params.dwell_s) == (not drawn.night, "rain", 45.0)
    assert params.camera_height_m == drawn.camera_height_m


@pytest.mark.parametrize(("name", "value", "reason"), [
    ("colour", "1", "unknown parameter 'colour'"),
    ("weather", "snow", "weather must be one of clear|overcast|rain"),
    ("night", "maybe", "night is on or off"),
    ("pitch_deg", "95", "pitch_deg must be between 10 and 80"),
    ("workers", "2.5", "workers must be a whole number"),
])
def test_a_bad_override_is_refused_with_the_reason(name: str, value: str, reason: str) -> None:
    with pytest.raises(ParamError, match=reason):
        Spec.of("street", 0, [(name, value)])


def test_conditions_are_drawn_from_the_seed_at_their_documented_rates() -> None:
    draws = [draw_params(Kind.STREET, seed) for seed in range(600)]
    rates = {"night": 0.25, "shake": 0.3, "exposure_pumping": 0.3, "dropped_frames": 0.2}
    for name, rate in rates.items():
        assert abs(sum(getattr(p, name) for p in draws) / len(draws) - rate) < 0.06, name
    assert abs(sum(p.compression.value == "blocky" for p in draws) / len(draws) - 0.25) < 0.06
    assert abs(sum(p.weather.value == "rain" for p in draws) / len(draws) - 0.2) < 0.06


def test_the_cli_writes_a_clip_that_opencv_decodes_with_its_truth_and_camera(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["simulate", "cameras", "--generator", "second", "--scene", "construction",
                                      "--seed", "5", "--seconds", "4", "--fps", "5", "--size", "320x180",
                                      "--param", "weather=rain", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "second:construction?seed=5&weather=rain: 20 frames" in result.output
    capture = cv2.VideoCapture(str(tmp_path / "clip.avi"))
    shapes = []
    while (read := capture.read())[0]:
        shapes.append(read[1].shape)
    capture.release()
    assert shapes == [(180, 320, 3)] * 20
    truth = orjson.loads((tmp_path / "truth.json").read_bytes())
    assert (truth["generator"], truth["scene"], truth["seed"]) == ("second", "construction", 5)
    assert truth["conditions"] == {"generator": "second", "fps": 5.0, "resolution": "320x180",
                                   "night": truth["params"]["night"],
                                   "shake": truth["params"]["shake"], "weather": "rain",
                                   "exposure_pumping": truth["params"]["exposure_pumping"],
                                   "compression": truth["params"]["compression"],
                                   "dropped_frames": truth["params"]["dropped_frames"]}
    camera = camera_from_mapping(yaml.safe_load((tmp_path / "camera.yaml").read_text()))
    assert camera.source == str(tmp_path / "clip.avi")
    assert [zone.id for zone in camera.zones] == list(truth["dwell_s"])


@pytest.mark.parametrize("extra", [["--serve", "0"], ["--camera", "cameras.yaml"]])
def test_the_cli_refuses_to_serve_or_take_a_camera_with_the_second_generator(tmp_path: Path,
                                                                             extra: list[str]) -> None:
    result = CliRunner().invoke(cli, ["simulate", "cameras", "--generator", "second", "--out", str(tmp_path), *extra])
    assert result.exit_code == EXIT_CONFIG
    assert "first generator only" in result.output


def test_the_cli_refuses_a_bad_parameter_of_the_second_generator(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["simulate", "cameras", "--generator", "second", "--param", "weather=fog",
                                      "--out", str(tmp_path)])
    assert result.exit_code == EXIT_CONFIG
    assert "weather must be one of clear|overcast|rain" in result.output


FIRST_GENERATOR = {f"simulators.cameras.{name}" for name in (
    "draw", "background", "actors", "effects", "geometry", "layout", "schedule", "scene", "spec", "live", "mjpeg")}
SHARED_FORMATS = {"simulators.cameras.truth", "simulators.cameras.clip"}


def _imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            modules.add(node.module or "")
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def test_the_second_generator_uses_nothing_of_the_first_but_its_output_formats() -> None:
    # Checked in the source rather than in sys.modules: importing any module under simulators.cameras runs the
    # package's __init__, which loads the first generator whatever the second one imports.
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) >= 10
    for path in files:
        borrowed = {m for m in _imports(path) if m.startswith("simulators.cameras")
                    and not m.startswith("simulators.cameras.second")}
        assert not borrowed & FIRST_GENERATOR, f"{path.name} imports {borrowed & FIRST_GENERATOR}"
        for module in borrowed:
            assert any(module == shared or module.startswith(f"{shared}.") for shared in SHARED_FORMATS), \
                f"{path.name} imports {module}"
