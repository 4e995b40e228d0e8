"""The role matrix: every route of the API, called by every role and by nobody, gets the status its rights say.

Rights (api/auth.py): every role reads; operators and commanders review detections; commanders act on cases;
device admins and admins manage the registry; admins may do everything. Open311 is public by design. A caller
with the right may still get 404 or 422 here (the ids are made up); it must never get 401, 403 or a 5xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import RIGHTS, Right, Role
from core.settings import load_settings
from tests.engine_bus import install
from tests.tokens import bearer, mint

PUBLIC = None
#: (method, path) → the right it needs (None: anyone, without a token).
MATRIX: dict[tuple[str, str], Right | None] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/api/v1/whoami"): Right.READ,
    ("GET", "/api/v1/grids"): Right.READ,
    ("GET", "/api/v1/grids/geojson"): Right.READ,
    ("GET", "/api/v1/grids/hierarchy"): Right.READ,
    ("GET", "/api/v1/taxonomy"): Right.READ,
    ("GET", "/api/v1/thresholds"): Right.READ,
    ("GET", "/api/v1/devices/{device_id}/telemetry"): Right.READ,
    ("GET", "/api/v1/grids/{code}/telemetry"): Right.READ,
    ("GET", "/api/v1/cases"): Right.READ,
    ("GET", "/api/v1/cases/{case_id}"): Right.READ,
    ("POST", "/api/v1/cases/{case_id}/actions"): Right.ACT,
    ("GET", "/api/v1/cases/{case_id}/evidence/{index}"): Right.READ,
    ("POST", "/api/v1/photos"): Right.ACT,
    ("GET", "/api/v1/detections"): Right.READ,
    ("POST", "/api/v1/detections/{case_id}/confirm"): Right.REVIEW,
    ("POST", "/api/v1/detections/{case_id}/dismiss"): Right.REVIEW,
    ("POST", "/api/v1/detections/undo"): Right.REVIEW,
    ("GET", "/api/v1/devices"): Right.READ,
    ("GET", "/api/v1/devices/{device_id}"): Right.READ,
    ("POST", "/api/v1/devices/{device_id}/enable"): Right.REGISTRY,
    ("POST", "/api/v1/devices/{device_id}/disable"): Right.REGISTRY,
    ("GET", "/api/v1/cameras"): Right.READ,
    ("GET", "/api/v1/cameras/{camera_id}/snapshot"): Right.READ,
    ("GET", "/api/v1/kpis"): Right.READ,
    ("GET", "/api/v1/events"): Right.READ,
    ("GET", "/open311/v2/services.json"): PUBLIC,
    ("GET", "/open311/v2/requests.json"): PUBLIC,
    ("POST", "/open311/v2/requests.json"): PUBLIC,
    ("GET", "/open311/v2/requests/{service_request_id}.json"): PUBLIC,
    ("POST", "/open311/v2/requests/{service_request_id}/rating"): PUBLIC,
}
PATH_VALUES = {"device_id": "rain-0001", "code": "310104003001001", "case_id": "310104003001001-0406-x",
               "index": "0", "camera_id": "cam-hunan-02", "service_request_id": "none"}
WHO = [*(role.value for role in Role), "nobody"]


def photo() -> bytes:
    ok, encoded = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    assert ok
    return encoded.tobytes()


def call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> int:
    url = path.format(**PATH_VALUES)
    kwargs: dict[str, Any] = {}
    if path.endswith("/actions"):
        kwargs["json"] = {"action": "file", "expected_version": 1}
    elif path.endswith(("/confirm", "/dismiss")):
        kwargs["json"] = {"expected_version": 1, "note": "seen"}
    elif path == "/api/v1/photos":
        kwargs["content"], headers = photo(), {**headers, "Content-Type": "image/jpeg"}
    elif path == "/open311/v2/requests.json" and method == "POST":
        kwargs["data"] = {"service_code": "0501", "lat": "31.196436", "long": "121.432696", "description": "vendor"}
    elif path.endswith("/rating"):
        kwargs["data"] = {"token": "x", "satisfied": "true"}
    if path == "/api/v1/events":  # a stream: its status is all this test reads
        with client.stream(method, url, headers=headers) as response:
            return response.status_code
    return client.request(method, url, headers=headers, **kwargs).status_code


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    state: Path = tmp_path_factory.mktemp("roles")
    tokens = {role.value: bearer(mint(state, role.value)) for role in Role}
    settings = load_settings(overrides={"state_dir": state, "api.write_rate_per_s": 1000, "api.write_burst": 1000,
                                        "api.citizen_rate_per_min": 100_000}, environ={})
    with TestClient(create_app(settings)) as client:
        install(client.app)  # type: ignore[arg-type]
        yield client, {**tokens, "nobody": {}}


def test_the_matrix_names_every_route_of_the_api(api: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    schema: dict[str, Any] = api[0].app.openapi()  # type: ignore[attr-defined]
    routes = {(method.upper(), path) for path, operations in schema["paths"].items() for method in operations}
    assert routes == set(MATRIX)


@pytest.mark.parametrize(("method", "path"), list(MATRIX), ids=[f"{m} {p}" for m, p in MATRIX])
def test_every_role_gets_what_its_rights_say(api: tuple[TestClient, dict[str, dict[str, str]]], method: str,
                                              path: str) -> None:
    client, tokens = api
    needed = MATRIX[(method, path)]
    outcome = {who: call(client, method, path, tokens[who]) for who in WHO}
    expected = {}
    for who, status in outcome.items():
        if needed is PUBLIC:
            expected[who] = status if status not in (401, 403) else "not 401/403"
        elif who == "nobody":
            expected[who] = 401
        elif needed in RIGHTS[Role(who)]:
            expected[who] = status if status not in (401, 403) else "not 401/403"
        else:
            expected[who] = 403
    assert outcome == expected
    no_kafka = path == "/api/v1/events"  # this app runs without Kafka: the stream answers 503 to whoever may read
    assert [s for s in outcome.values() if s >= 500] == ([503] * sum(s == 503 for s in outcome.values())
                                                         if no_kafka else [])
