"""A dismissal that teaches the camera's detector: the lesson sent on `gridhub.detector-feedback`, and taken back
with the decision. The real case engine answers the commands in process (`EngineBus`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core import kafka
from domain.detections import DetectionKind, Phase
from domain.detector_feedback import LessonKind, decode_lesson
from tests.engine_bus import EngineBus, install
from tests.streams import DUST_CAMERA, STALL_CAMERA, T0_MS, detection
from tests.tokens import bearer, mint

WEEK_S = 7 * 24 * 3600


@pytest.fixture
def bus(client: TestClient) -> EngineBus:
    return install(client.app)  # type: ignore[arg-type]


@pytest.fixture
def operator(tmp_path: Path, client: TestClient) -> dict[str, str]:
    return bearer(mint(tmp_path, "operator"))


def pending(bus: EngineBus, client: TestClient, operator: dict[str, str], camera: tuple[Any, ...]) -> dict[str, Any]:
    """A camera detection below the auto-filing confidence, as the review queue lists it."""
    bus.write(bus.engine.apply_detection(detection(Phase.START, T0_MS, 0.6, camera=camera), 0))
    [item] = client.get("/api/v1/detections", headers=operator).json()["items"]
    return dict(item)


def test_not_a_stall_masks_the_box_with_a_margin_for_the_time_asked_and_undo_withdraws_it(
    client: TestClient, bus: EngineBus, operator: dict[str, str],
) -> None:
    item = pending(bus, client, operator, STALL_CAMERA)
    before = datetime.now(UTC)
    answer = client.post(f"/api/v1/detections/{item['case_id']}/dismiss", headers=operator, json={
        "expected_version": item["version"], "note": "a parked delivery tricycle", "reason": "not_stall",
        "teach_for_s": 3600})
    assert answer.status_code == 200, answer.text
    [(topic, key, value)] = bus.published
    lesson = decode_lesson(value)
    assert (topic, key) == (kafka.DETECTOR_FEEDBACK, b"cam-tianping-01")
    assert (lesson.lesson_id, lesson.camera_id, lesson.zone_id, lesson.kind, lesson.lesson) == (
        item["case_id"], "cam-tianping-01", "sidewalk-north", DetectionKind.STALL, LessonKind.MASK)
    assert lesson.bbox == (2, 10, 46, 60)  # (10, 20, 30, 40) grown by a quarter on each side
    taught_until = datetime.fromisoformat(answer.json()["taught_until"])
    assert abs((taught_until - before).total_seconds() - 3600) < 5
    assert lesson.until_ms == round(taught_until.timestamp() * 1000)

    assert client.post("/api/v1/detections/undo", headers=operator).status_code == 200
    withdrawal = decode_lesson(bus.published[-1][2])
    assert (withdrawal.lesson_id, withdrawal.withdrawn) == (item["case_id"], True)


def test_not_dust_raises_the_zones_bar_to_the_dismissed_confidence(
    client: TestClient, bus: EngineBus, operator: dict[str, str],
) -> None:
    item = pending(bus, client, operator, DUST_CAMERA)
    answer = client.post(f"/api/v1/detections/{item['case_id']}/dismiss", headers=operator, json={
        "expected_version": item["version"], "note": "steam from a kettle", "reason": "not_dust",
        "teach_for_s": WEEK_S})
    assert answer.status_code == 200, answer.text
    lesson = decode_lesson(bus.published[0][2])
    assert (lesson.lesson, lesson.zone_id, lesson.min_confidence, lesson.bbox) == (LessonKind.RAISE, "site-a", 0.6,
                                                                                   None)


@pytest.mark.parametrize(("camera", "body", "reason"), [
    (STALL_CAMERA, {"reason": "not_dust", "teach_for_s": 3600}, "teach_for_s needs the reason not_stall"),
    (STALL_CAMERA, {"reason": "licensed", "teach_for_s": 3600}, "teach_for_s needs the reason not_stall"),
    (DUST_CAMERA, {"teach_for_s": 3600}, "teach_for_s needs the reason not_dust"),
])
def test_a_lesson_that_does_not_fit_the_detection_is_refused_and_nothing_is_decided(
    client: TestClient, bus: EngineBus, operator: dict[str, str], camera: tuple[Any, ...], body: dict[str, Any],
    reason: str,
) -> None:
    item = pending(bus, client, operator, camera)
    answer = client.post(f"/api/v1/detections/{item['case_id']}/dismiss", headers=operator,
                         json={"expected_version": item["version"], "note": "no", **body})
    assert answer.status_code == 422 and reason in answer.text
    assert bus.published == []
    assert client.get("/api/v1/detections", headers=operator).json()["remaining"] == 1  # still pending


def test_a_lesson_kafka_does_not_take_is_reported_and_the_dismissal_stands(
    client: TestClient, bus: EngineBus, operator: dict[str, str],
) -> None:
    item = pending(bus, client, operator, STALL_CAMERA)

    async def refuse(_topic: str, _key: bytes, _value: bytes) -> None:
        raise ConnectionError("Kafka at kafka:9092 is not connected")

    bus.publish = refuse  # type: ignore[method-assign]
    answer = client.post(f"/api/v1/detections/{item['case_id']}/dismiss", headers=operator, json={
        "expected_version": item["version"], "note": "not a stall", "reason": "not_stall", "teach_for_s": 600})
    assert answer.status_code == 200
    assert answer.json()["state"] == "voided" and answer.json()["taught_until"] is None
    assert "not sent to the detectors: Kafka at kafka:9092 is not connected" in answer.json()["teaching_error"]
