"""People run cases through the closed loop over HTTP: the real API, the real embedded Kafka, the real stream
worker and a real database. Every action goes API → gridhub.case-commands → the worker's engine → the reply and
gridhub.case-events → the case database, and the API answers with the engine's outcome.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from core import kafka
from core.city import load_city
from core.settings import Settings
from domain.detections import Detection, DetectionKind, Phase, encode_detection
from domain.registry import ZoneKind
from storage.db import connect
from storage.devices import seed_devices
from storage.schema import init_db
from tests import brokers
from tests.integration.test_streams_pipeline import _produce, eventually, start_worker
from tests.tokens import bearer, mint

pytestmark = pytest.mark.integration

PARTITIONS = 2
JPEG = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))[1].tobytes()
STREET = "310104004"
CELLS = iter(f"{STREET}001{n:03d}" for n in range(1, 13))  # one cell per scenario, so they do not meet


@dataclass
class Hub:
    bootstrap: str
    api: httpx.Client
    state: Path
    tokens: dict[str, str]
    round_trips: list[float]

    def as_(self, who: str) -> dict[str, str]:
        return bearer(self.tokens[who])

    def detection(self, cell: str, confidence: float = 0.6, camera: str = "cam-hunan-02") -> dict[str, Any]:
        """Publish a stall detection in `cell` and return it as the review queue lists it."""
        now_ms = int(time.time() * 1000)
        event = Detection(f"{camera}/{cell}", Phase.START, camera, "crossing", ZoneKind.NO_VENDING,
                          DetectionKind.STALL, cell, now_ms - 60_000, now_ms, confidence, (40, 260, 80, 60),
                          "cam-hunan-02/snap.jpg")
        asyncio.run(_produce(self.bootstrap, kafka.DETECTIONS, cell, encode_detection(event)))
        return eventually(lambda: [d for d in self.api.get("/api/v1/detections", params={"grid": cell},
                                                           headers=self.as_("operator")).json()["items"]],
                          30, "the detection in the review queue")[0]

    def act(self, case_id: str, version: int, action: str, who: str = "commander", **body: Any) -> httpx.Response:
        started = time.perf_counter()
        response = self.api.post(f"/api/v1/cases/{case_id}/actions", headers=self.as_(who),
                                 json={"action": action, "expected_version": version, **body})
        self.round_trips.append(time.perf_counter() - started)
        return response

    def stored(self, case_id: str, version: int) -> dict[str, Any]:
        """The case as the database holds it once the sink has written `version`."""
        def read() -> dict[str, Any] | None:
            body: dict[str, Any] = self.api.get(f"/api/v1/cases/{case_id}", headers=self.as_("viewer")).json()
            return body if body.get("version") == version else None
        return eventually(read, 30, f"version {version} of {case_id} in the database")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    state = tmp_path_factory.mktemp("state")
    with brokers.tansu() as bootstrap:
        asyncio.run(kafka.ensure_topics(bootstrap, PARTITIONS))
        port = brokers.free_port()
        env = dict(os.environ, GRIDHUB_STATE_DIR=str(state), GRIDHUB_KAFKA__BOOTSTRAP=bootstrap,
                   GRIDHUB_KAFKA__PARTITIONS=str(PARTITIONS), GRIDHUB_API__PORT=str(port),
                   GRIDHUB_LOG_LEVEL="warning")
        settings = Settings(state_dir=state)
        db = connect(settings.database_url)
        init_db(db)
        seed_devices(db, load_city(settings), demo=True)
        db.dispose()
        tokens = {role: mint(state, role) for role in ("viewer", "operator", "commander")}
        tokens["other-community"] = mint(state, "commander", "310104003001")
        worker = start_worker(env, state / "worker.ready")
        api = subprocess.Popen([sys.executable, "-m", "gridhub", "api"], env=env, stdout=subprocess.DEVNULL,
                               stderr=(state / "api.log").open("wb"))
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
                eventually(lambda: client.get("/healthz").json()["commands"] == "ok", 60, "the API's command bus")
                yield Hub(bootstrap, client, state, tokens, [])
        finally:
            for process in (api, worker):
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()


def test_a_confirmed_detection_runs_the_whole_loop_and_every_step_is_audited(hub: Hub) -> None:
    pending = hub.detection(next(CELLS))
    assert (pending["kind"], pending["camera_id"], pending["confidence"]) == ("stall", "cam-hunan-02", 0.6)
    confirmed = hub.api.post(f"/api/v1/detections/{pending['case_id']}/confirm", headers=hub.as_("operator"),
                             json={"expected_version": pending["version"], "note": "vendor cart on the crossing"})
    assert confirmed.status_code == 200, confirmed.text
    case_id, version = pending["case_id"], confirmed.json()["version"]
    assert confirmed.json()["state"] == "dispatched"
    steps = [
        ("reassign", {"department": "市场监管"}, "dispatched"),
        ("extend", {"extend_by": "2h", "note": "owner must be found"}, "dispatched"),
        ("suspend", {"note": "owner abroad"}, "suspended"),
        ("resume", {}, "dispatched"),
        ("handle", {"note": "cart removed"}, "handled"),
        ("verify_fail", {"note": "cart is back"}, "dispatched"),
        ("handle", {"note": "cart removed again"}, "handled"),
        ("verify_pass", {"note": "checked on site"}, "closed"),
    ]
    for action, body, state in steps:
        response = hub.act(case_id, version, action, **body)
        assert (response.status_code, response.json().get("state")) == (200, state), (action, response.text)
        assert response.headers["ETag"] == f'"{version + 1}"'
        version = response.json()["version"]
    stored = hub.stored(case_id, version)
    assert (stored["state"], stored["department"], stored["rework_count"], stored["extension_count"]) == (
        "closed", "市场监管", 1, 1)
    human = [(e["action"], e["actor"].split(" (")[0]) for e in stored["timeline"] if e["actor"] != "gridhub-streams"]
    assert human == [("file", "test operator@310104")] + [(a, "test commander@310104") for a, _, _ in steps]


def test_an_action_the_state_machine_forbids_is_409_and_changes_nothing(hub: Hub) -> None:
    pending = hub.detection(next(CELLS))
    response = hub.act(pending["case_id"], pending["version"], "handle", note="too early")
    assert response.status_code == 409
    assert "cannot handle" in response.json()["detail"]
    assert hub.stored(pending["case_id"], pending["version"])["state"] == "reported"


def test_an_action_on_a_version_someone_else_moved_past_is_412(hub: Hub) -> None:
    pending = hub.detection(next(CELLS))
    first = hub.act(pending["case_id"], pending["version"], "file")
    assert first.status_code == 200
    second = hub.act(pending["case_id"], pending["version"], "void", note="duplicate")
    assert second.status_code == 412
    assert "someone changed it" in second.json()["detail"]
    assert second.headers["ETag"] == f'"{first.json()["version"]}"'


def test_an_action_without_an_expected_version_is_428_and_if_match_is_one(hub: Hub) -> None:
    pending = hub.detection(next(CELLS))
    url = f"/api/v1/cases/{pending['case_id']}/actions"
    assert hub.api.post(url, headers=hub.as_("commander"), json={"action": "file"}).status_code == 428
    response = hub.api.post(url, headers={**hub.as_("commander"), "If-Match": f'"{pending["version"]}"'},
                            json={"action": "file"})
    assert (response.status_code, response.json()["state"]) == (200, "filed")


def test_return_escalate_dispatch_and_void_move_the_case_between_levels(hub: Hub) -> None:
    pending = hub.detection(next(CELLS))
    case_id = pending["case_id"]
    version = hub.act(case_id, pending["version"], "file").json()["version"]
    dispatched = hub.act(case_id, version, "dispatch", department="城管执法", tier="community")
    assert dispatched.json()["state"] == "dispatched"
    returned = hub.act(case_id, dispatched.json()["version"], "return", note="not within our remit")
    assert returned.json()["state"] == "filed"
    again = hub.act(case_id, returned.json()["version"], "dispatch")
    escalated = hub.act(case_id, again.json()["version"], "escalate", note="stuck for days")
    assert escalated.json()["state"] == "dispatched"
    stored = hub.stored(case_id, escalated.json()["version"])
    assert stored["tier"] == "district"  # community → 回退 street → 督办 district
    voided = hub.act(case_id, escalated.json()["version"], "void", note="duplicate of another case")
    assert voided.json()["state"] == "voided"


def test_a_dismissal_silences_the_zone_and_its_undo_brings_the_detection_back(hub: Hub) -> None:
    cell = next(CELLS)
    pending = hub.detection(cell, camera="cam-hunan-03")
    dismissed = hub.api.post(f"/api/v1/detections/{pending['case_id']}/dismiss", headers=hub.as_("operator"),
                             json={"expected_version": pending["version"], "note": "licensed fair stall",
                                   "suppress_for_s": 3600})
    assert (dismissed.status_code, dismissed.json()["state"]) == (200, "voided")
    undone = hub.api.post("/api/v1/detections/undo", headers=hub.as_("operator"))
    assert (undone.status_code, undone.json()["state"]) == (200, "reported"), undone.text
    listed = hub.stored(pending["case_id"], undone.json()["version"])
    assert [e["action"] for e in listed["timeline"]][-2:] == ["void", "reopen"]


def test_a_dismissal_without_a_reason_is_422(hub: Hub) -> None:
    pending = hub.detection(next(CELLS))
    response = hub.api.post(f"/api/v1/detections/{pending['case_id']}/dismiss", headers=hub.as_("operator"),
                            json={"expected_version": pending["version"]})
    assert response.status_code == 422


def test_a_token_of_another_community_neither_sees_nor_acts_on_the_case(hub: Hub) -> None:
    pending = hub.detection(next(CELLS))
    assert hub.api.get(f"/api/v1/cases/{pending['case_id']}", headers=hub.as_("other-community")).status_code == 404
    assert hub.act(pending["case_id"], pending["version"], "file", who="other-community").status_code == 404
    listed = hub.api.get("/api/v1/detections", headers=hub.as_("other-community")).json()
    assert pending["case_id"] not in [d["case_id"] for d in listed["items"]]


def test_roles_without_the_right_are_refused(hub: Hub) -> None:
    pending = hub.detection(next(CELLS))
    assert hub.act(pending["case_id"], pending["version"], "file", who="viewer").status_code == 403
    assert hub.act(pending["case_id"], pending["version"], "file", who="operator").status_code == 403
    response = hub.api.post(f"/api/v1/detections/{pending['case_id']}/confirm", headers=hub.as_("viewer"),
                            json={"expected_version": pending["version"]})
    assert response.status_code == 403


def test_zz_action_round_trips_are_reported(hub: Hub) -> None:
    """Not a timing assertion (benchmarks hold targets): the figures of this run, printed for the record."""
    trips = sorted(hub.round_trips)
    assert len(trips) >= 15
    p50, p95 = trips[len(trips) // 2], trips[int(len(trips) * 0.95)]
    print(f"\naction round trips over HTTP through the worker: n={len(trips)} p50={p50 * 1000:.0f} ms "
          f"p95={p95 * 1000:.0f} ms")


def test_a_citizen_report_joins_the_open_case_of_its_cell_and_rates_it_once_closed(hub: Hub) -> None:
    cell = next(CELLS)
    pending = hub.detection(cell)
    grid_cell = load_city(Settings(state_dir=hub.state)).cells.get(cell)
    assert grid_cell is not None
    point = grid_cell.polygon.representative_point()
    form = {"service_code": "0501", "lat": str(point.y), "long": str(point.x), "description": "a cart on the kerb"}
    posted = hub.api.post("/open311/v2/requests.json", data=form, files={"media": ("kerb.jpg", JPEG, "image/jpeg")})
    assert posted.status_code == 201, posted.text
    [receipt] = posted.json()
    assert receipt["service_request_id"] == pending["case_id"]  # fused: the camera's case, not a second one
    version = pending["version"] + 1  # the citizen's evidence
    for action, body in (("file", {}), ("dispatch", {}), ("handle", {"note": "cart gone"}), ("verify_pass", {})):
        response = hub.act(pending["case_id"], version, action, **body)
        assert response.status_code == 200, (action, response.text)
        version = response.json()["version"]
    hub.stored(pending["case_id"], version)  # the rating is checked against the database's copy
    rated = hub.api.post(f"/open311/v2/requests/{pending['case_id']}/rating",
                         data={"token": receipt["token"], "satisfied": "true"})
    assert rated.status_code == 200, rated.text
    stored = hub.stored(pending["case_id"], version + 1)
    assert stored["satisfied"] is True
    assert [e["source_id"].split("/")[0] for e in stored["evidence"]] == ["cam-hunan-02", "citizen"]
