"""The demo city's cameras show every part quickly: a stall and dust reported within 90 s, one of them left for
review, and a cued stall or plume again every five minutes with quiet in between."""

from __future__ import annotations

import pytest

from core.city import DEMO_CITY_DIR, load_cameras
from core.settings import StreamsSettings
from detectors.events import ZoneEvent
from detectors.pipeline import CameraPipeline
from domain.detections import DetectionKind, Phase
from domain.registry import Camera
from simulators.cameras import Scene, parse_sim_url
from simulators.cameras.schedule import CUED_EXTRA_S, DWELL_MARGIN_S

DEMO_CAMERAS = load_cameras(DEMO_CITY_DIR / "cameras.yaml")
REPORTED_WITHIN_S = 90.0
AUTOFILE_CONFIDENCE = StreamsSettings().camera_autofile_confidence  # below it, a detection waits for review


@pytest.fixture(scope="module")
def first_reports() -> list[ZoneEvent]:
    """What the detector pipeline reports on the first 90 s of every demo camera, frame by frame at its fps."""
    events: list[ZoneEvent] = []
    for camera in DEMO_CAMERAS:
        pipeline = CameraPipeline(camera)
        scene = Scene.for_camera(camera, camera.width, camera.height)
        for t, frame in scene.frames(0.0, round(REPORTED_WITHIN_S * camera.fps) + 1):
            events += pipeline.process(frame, t)
    return events


@pytest.mark.parametrize("kind", [DetectionKind.STALL, DetectionKind.DUST])
def test_the_demo_reports_a_stall_and_dust_within_ninety_seconds(first_reports: list[ZoneEvent],
                                                                 kind: DetectionKind) -> None:
    assert any(event.phase is Phase.START and event.kind is kind for event in first_reports)


def test_an_early_report_stays_below_the_auto_file_confidence_so_it_waits_for_review(
        first_reports: list[ZoneEvent]) -> None:
    surest: dict[str, float] = {}
    for event in first_reports:
        surest[event.event_id] = max(surest.get(event.event_id, 0.0), event.confidence)
    assert min(surest.values()) < AUTOFILE_CONFIDENCE


@pytest.mark.parametrize("camera", DEMO_CAMERAS, ids=lambda camera: camera.id)
def test_each_demo_camera_has_a_true_event_soon_and_every_five_minutes_each_over_well_before_the_next(
        camera: Camera) -> None:
    params = parse_sim_url(camera.source).params
    assert 0 < params.first_event_s <= 150 and params.event_every_s == 300
    scene = Scene.for_camera(camera, camera.width, camera.height)
    hours = 2 * 3600.0
    truth = scene.truth(hours)
    longest = max(zone.dwell_s for zone in camera.zones) + DWELL_MARGIN_S + CUED_EXTRA_S
    cue = params.first_event_s
    while cue < hours - longest:
        cued = [event for event in truth if abs(event.start_s - cue) < 0.01]
        assert len(cued) == 1, f"{camera.id}: no true event cued at {cue:.0f} s"
        assert cued[0].end_s - cued[0].start_s <= longest < params.event_every_s / 2
        cue += params.event_every_s


def test_cues_on_an_epoch_boundary_come_once() -> None:
    quiet = "stalls_per_hour=0&short_stalls_per_hour=0&outside_stalls_per_hour=0"
    scene = Scene(parse_sim_url(f"sim://street?seed=5&{quiet}&first_event_s=300&event_every_s=300"),
                  width=320, height=180)
    assert [event.start_s for event in scene.truth(2000)] == [300, 600, 900, 1200, 1500, 1800]
