"""`gridhub detect run`'s cameras: detections with snapshots, and one broken camera not stopping the others."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from core import kafka
from core.city.config import camera_from_mapping
from detectors.pipeline import CameraPipeline
from detectors.runner import Fleet, learn_from
from detectors.sources import LiveSource, SimCapture
from domain.detections import Detection, DetectionKind, Phase
from domain.detector_feedback import Lesson, LessonKind, encode_lesson
from domain.registry import Camera
from gridhub.localbrokers import tansu
from storage.evidence import DirectoryEvidence
from tests.detectors.scenes import ground

BOX_AT_S = 5.0


def _camera(camera_id: str, source: str) -> Camera:
    return camera_from_mapping({"id": camera_id, "source": source, "grid_code": "310104003001002", "fps": 10,
                                "zones": [{"id": "sidewalk", "kind": "no_vending",
                                           "polygon": [[0, 90], [320, 90], [320, 180], [0, 180]], "dwell_s": 1}]})


def _scene(t: float, background: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Empty pavement; from 5 s on, a crate stands on it."""
    frame = background.copy()
    if t >= BOX_AT_S:
        cv2.rectangle(frame, (140, 120), (190, 165), (40, 60, 200), -1)
    noise = np.random.default_rng(int(t * 100)).normal(0, 2, frame.shape)
    return np.clip(frame + noise, 0, 255).astype(np.uint8)


def _sources(camera: Camera) -> LiveSource:
    if camera.source == "synthetic":
        background = ground((320, 180), 1)
        return LiveSource("synthetic", lambda: SimCapture(lambda t: _scene(t, background), 20.0), name=camera.id)
    return LiveSource(camera.source, name=camera.id)


def test_a_camera_reports_a_stall_with_a_snapshot_while_a_broken_camera_retries(tmp_path: Path) -> None:
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(np.random.default_rng(3).bytes(50_000))
    received: list[Detection] = []
    fleet = Fleet([_camera("cam-good", "synthetic"), _camera("cam-broken", str(garbage))], received.append,
                  DirectoryEvidence(tmp_path / "evidence"), source_factory=_sources)
    fleet.start()
    try:
        deadline = time.monotonic() + 30
        while not received and time.monotonic() < deadline:
            time.sleep(0.2)
        broken = fleet.workers["cam-broken"]
        assert broken.alive and "not a video FFmpeg can decode" in broken.source.last_error
    finally:
        fleet.stop()
    start = received[0]
    assert (start.phase, start.camera_id, start.zone_id, start.kind) == (Phase.START, "cam-good", "sidewalk",
                                                                        DetectionKind.STALL)
    assert start.grid_code == "310104003001002" and start.at_ms - start.start_ms >= 1000
    assert (tmp_path / "evidence" / start.snapshot).read_bytes()[:2] == b"\xff\xd8"  # a JPEG
    assert received[-1].phase is Phase.END and received[-1].event_id == start.event_id  # stopping ends it
    assert sample("gridhub_detect_frames_total", camera="cam-good") == fleet.workers["cam-good"].processed > 0
    assert sample("gridhub_detect_detections_total", camera="cam-good", kind="stall") == 1
    assert sample("gridhub_detect_source_up", camera="cam-good") == 1
    assert sample("gridhub_detect_reconnects_total", camera="cam-broken") == broken.source.reconnects >= 1
    assert sample("gridhub_detect_source_up", camera="cam-broken") == 0
    assert sample("gridhub_detect_frames_total", camera="cam-broken") == 0


def sample(name: str, **labels: str) -> float:
    """A metric of this process, 0 if it was never counted."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_frames_a_slow_pipeline_could_not_analyse_are_counted_dropped_and_failures_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []

    def slow_then_failing(self: CameraPipeline, image: npt.NDArray[np.uint8], t: float) -> list[object]:
        calls.append(t)
        if len(calls) == 1:
            time.sleep(0.45)  # 4.5 periods at 10 fps: at least 3.5 frames due meanwhile are lost
            return []
        raise RuntimeError("a bug on this frame")

    monkeypatch.setattr(CameraPipeline, "process", slow_then_failing)
    camera = _camera("cam-slow", "synthetic")
    fleet = Fleet([camera], lambda _: None, DirectoryEvidence(tmp_path), source_factory=_sources)
    fleet.start()
    try:
        deadline = time.monotonic() + 10
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        fleet.stop()
    worker = fleet.workers["cam-slow"]
    assert worker.dropped >= 3 and sample("gridhub_detect_frames_dropped_total", camera="cam-slow") == worker.dropped
    assert worker.failures == len(calls) - 1 >= 2
    assert sample("gridhub_detect_failures_total", camera="cam-slow") == worker.failures


def test_the_watchdog_restarts_a_reader_that_went_silent(tmp_path: Path) -> None:
    frozen = LiveSource("frozen", lambda: SimCapture(lambda t: np.zeros((90, 160, 3), np.uint8), 1e-3),
                        name="cam-frozen")  # delivers one frame, then nothing for 1000 s
    fleet = Fleet([_camera("cam-frozen", "frozen")], lambda _: None, DirectoryEvidence(tmp_path),
                  source_factory=lambda _: frozen)
    fleet.start()
    try:
        assert frozen.next_frame(0, timeout=5) is not None
        time.sleep(0.3)
        fleet.watchdog(stuck_after_s=0.2)
        assert frozen.next_frame(1, timeout=5) is not None  # a fresh reader delivered again
    finally:
        fleet.stop()


@pytest.mark.integration
def test_a_lesson_read_from_kafka_masks_the_stall_on_its_camera_only(tmp_path: Path) -> None:
    """Two cameras see the same stall; an operator's mask for one of them arrives over Kafka before it starts.
    Once the other has reported the stall, the masked one has had the same frames and reported nothing."""
    received: list[Detection] = []
    cameras = [_camera("cam-masked", "synthetic"), _camera("cam-plain", "synthetic")]
    fleet = Fleet(cameras, received.append, DirectoryEvidence(tmp_path / "evidence"), source_factory=_sources)
    crate = (120, 100, 90, 85)  # around the crate at (140, 120)-(190, 165) of the 320×180 scene
    lesson = Lesson("case-9", "cam-masked", "sidewalk", DetectionKind.STALL, LessonKind.MASK,
                    round((time.time() + 3600) * 1000), crate)
    with tansu() as bootstrap:
        asyncio.run(kafka.ensure_topics(bootstrap, 2))

        async def teach_then_run() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
            await producer.start()
            try:
                await producer.send_and_wait(kafka.DETECTOR_FEEDBACK, encode_lesson(lesson), key=b"cam-masked")
                await producer.send_and_wait(kafka.DETECTOR_FEEDBACK, b"not a lesson", key=b"cam-masked")
            finally:
                await producer.stop()
            stop, taught = asyncio.Event(), asyncio.Event()
            learn = fleet.learn

            def learned(lesson: Lesson) -> bool:
                lessons.append(lesson)
                taught.set()
                return learn(lesson)

            fleet.learn = learned  # type: ignore[method-assign]
            learning = asyncio.create_task(learn_from(bootstrap, fleet, stop))
            await asyncio.wait_for(taught.wait(), 30)
            stop.set()
            await learning

        lessons: list[Lesson] = []
        asyncio.run(teach_then_run())
    assert lessons == [lesson]  # the record that is no lesson was skipped
    fleet.start()
    try:
        deadline = time.monotonic() + 30
        while not any(d.camera_id == "cam-plain" for d in received) and time.monotonic() < deadline:
            time.sleep(0.1)
        seen_by_plain = fleet.workers["cam-plain"].processed
        while fleet.workers["cam-masked"].processed < seen_by_plain and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        fleet.stop()
    assert {d.camera_id for d in received} == {"cam-plain"}


def test_the_fleet_keeps_only_the_lessons_in_force_for_a_worker_that_replaces_a_dead_one(tmp_path: Path) -> None:
    """The whole feedback topic is read at start: lessons long expired, and withdrawn ones, are not kept."""
    fleet = Fleet([_camera("cam-a", "synthetic")], lambda _: None, DirectoryEvidence(tmp_path), source_factory=_sources)
    now_ms = round(time.time() * 1000)

    def mask(lesson_id: str, until_ms: int) -> Lesson:
        return Lesson(lesson_id, "cam-a", "sidewalk", DetectionKind.STALL, LessonKind.MASK, until_ms, (0, 0, 10, 10))

    live, withdrawn = mask("case-2", now_ms + 3_600_000), mask("case-3", now_ms + 3_600_000)
    for lesson in (mask("case-1", now_ms - 1_000), live, withdrawn, withdrawn.withdrawal()):
        assert fleet.learn(lesson)
    assert fleet.lessons("cam-a") == [live]
    assert not fleet.learn(dataclasses.replace(live, camera_id="cam-elsewhere"))  # another process's camera
