"""Ground truth: true events lie in their zones and last their dwell time; distractors never appear."""

from __future__ import annotations

import numpy as np
import pytest

from simulators.cameras import Scene, SceneSpec, TruthEvent, parse_sim_url
from simulators.cameras.schedule import EPOCH_S
from simulators.cameras.zones import DUST_DWELL_S, signed_distance

BUSY_STREET = "sim://street?seed={seed}&stalls_per_hour=20&short_stalls_per_hour=20&outside_stalls_per_hour=20"
BUSY_SITE = "sim://construction?seed={seed}&plumes_per_hour=15&short_plumes_per_hour=15&outside_plumes_per_hour=15"


@pytest.fixture(scope="module")
def streets() -> list[Scene]:
    return [Scene(parse_sim_url(BUSY_STREET.format(seed=seed)), width=320, height=180) for seed in range(4)]


@pytest.fixture(scope="module")
def sites() -> list[Scene]:
    return [Scene(parse_sim_url(BUSY_SITE.format(seed=seed)), width=320, height=180) for seed in range(3)]


def test_true_stalls_stand_in_their_zone_for_at_least_its_dwell_time(streets: list[Scene]) -> None:
    checked = 0
    for scene in streets:
        zones = {zone.id: zone for zone in scene.zones}
        for event in scene.truth(1800):
            assert event.kind == "stall" and event.bbox is not None
            x, y, w, h = event.bbox
            assert signed_distance(zones[event.zone_id], x + w / 2, y + h) > 0
            assert event.end_s - event.start_s >= zones[event.zone_id].dwell_s
            checked += 1
    assert checked >= 10


def test_stalls_outside_every_zone_are_never_truth(streets: list[Scene]) -> None:
    checked = 0
    for scene in streets:
        truth = scene.truth(1800)
        for stall in (s for s in scene.epoch(0).stalls + scene.epoch(1).stalls if s.zone_id is None):
            x, y = scene.view.to_image(*stall.spot)
            assert all(signed_distance(zone, x, y) < 0 for zone in scene.zones)
            assert not any(event.start_s == stall.stop_s for event in truth)
            checked += 1
    assert checked >= 5


def test_stays_shorter_than_the_dwell_time_are_never_truth(streets: list[Scene]) -> None:
    checked = 0
    for scene in streets:
        dwell = {zone.id: zone.dwell_s for zone in scene.zones}
        short = [s for s in scene.epoch(0).stalls if s.zone_id and s.leave_s - s.stop_s < dwell[s.zone_id]]
        assert not {s.stop_s for s in short} & {event.start_s for event in scene.truth(EPOCH_S)}
        checked += len(short)
    assert checked >= 5


def test_true_dust_lies_over_a_construction_zone_for_at_least_30_s(sites: list[Scene]) -> None:
    events = [event for scene in sites for event in scene.truth(1800)]
    assert len(events) >= 5
    for event in events:
        assert (event.kind, event.zone_id, event.bbox) == ("dust", "site", None)
        assert event.end_s - event.start_s >= DUST_DWELL_S


def test_short_puffs_and_plumes_outside_the_zones_are_never_truth(sites: list[Scene]) -> None:
    outside = short = 0
    for scene in sites:
        plumes = scene.epoch(0).plumes
        distractors = [p for p in plumes if p.zone_id is None or p.visible_s[1] - p.visible_s[0] < DUST_DWELL_S]
        starts = {event.start_s for event in scene.truth(EPOCH_S)}
        assert not {p.visible_s[0] for p in distractors} & starts
        outside += sum(p.zone_id is None for p in distractors)
        short += sum(p.zone_id is not None for p in distractors)
    assert outside >= 2 and short >= 5


def test_pausing_pedestrians_are_not_stalls() -> None:
    spec = parse_sim_url("sim://street?seed=3&pause_share=1&pedestrians_per_min=40&stalls_per_hour=0"
                         "&short_stalls_per_hour=0&outside_stalls_per_hour=0")
    scene = Scene(spec, width=320, height=180)
    assert all(0 < person.pause_s <= 20 for person in scene.epoch(0).pedestrians)
    assert scene.truth(EPOCH_S) == []


def test_events_are_cut_to_the_clip_and_kept_only_if_long_enough_within_it(streets: list[Scene]) -> None:
    scene = streets[0]
    event = scene.truth(1800)[0]
    cut = (event.start_s + event.end_s) / 2
    within = [e for e in scene.truth(cut) if e.start_s == event.start_s]
    expected = cut - event.start_s >= 60
    assert len(within) == int(expected)
    assert all(e.end_s <= cut for e in scene.truth(cut))


def test_truth_events_have_exactly_the_offline_events_fields_and_a_cause_where_known() -> None:
    event = TruthEvent("cam-1", "kerb", "stall", 12.0, 99.5, (1, 2, 3, 4))
    assert event.to_json() == {"camera_id": "cam-1", "zone_id": "kerb", "kind": "stall", "start_s": 12.0,
                               "end_s": 99.5, "bbox": [1, 2, 3, 4]}
    assert TruthEvent("cam-1", "site", "dust", 1.0, 40.0, None, "digger").to_json()["cause"] == "digger"


def test_a_true_stall_is_visible_in_its_box() -> None:
    scene = Scene(parse_sim_url(BUSY_STREET.format(seed=1)))
    event = scene.truth(1800)[0]
    assert event.bbox is not None
    x, y, w, h = event.bbox
    before = scene.frame_at(scene.params.warmup_s / 2)[y:y + h, x:x + w].astype(int)
    during = scene.frame_at((event.start_s + event.end_s) / 2)[y:y + h, x:x + w].astype(int)
    assert np.abs(during - before).mean() > 15


def test_true_dust_hazes_its_zone() -> None:
    scene = Scene(parse_sim_url(BUSY_SITE.format(seed=0) + "&sudden_lights_per_hour=0&light_drift=0"))
    event = scene.truth(1800)[0]
    plume = next(p for p in scene.epoch(0).plumes if p.visible_s[0] == event.start_s)
    x, y = (int(v) for v in scene.view.to_image(*plume.centre(plume.start_s + plume.rise_s)))
    clear = scene.frame_at(plume.start_s - 1)[y - 15:y + 5, x - 10:x + 10].astype(int)
    hazy = scene.frame_at(plume.start_s + plume.rise_s)[y - 15:y + 5, x - 10:x + 10].astype(int)
    assert np.abs(hazy - clear).mean() > 10


def test_scene_specs_with_the_same_seed_but_other_parameters_keep_their_layout() -> None:
    plain = Scene(SceneSpec(parse_sim_url("sim://street?seed=8").kind, 8), width=160, height=96)
    busy = Scene(parse_sim_url("sim://street?seed=8&pedestrians_per_min=1"), width=160, height=96)
    assert np.array_equal(plain.background, busy.background)
