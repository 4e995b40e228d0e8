"""The API skeleton: health, metrics, bearer tokens with roles, grid prefix queries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import RIGHTS, Role
from core.settings import load_settings
from tests.tokens import bearer, mint


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    return {role.value: mint(tmp_path, role.value) for role in Role}


@pytest.fixture
def client(tmp_path: Path, tokens: dict[str, str]) -> Iterator[TestClient]:
    settings = load_settings(overrides={"state_dir": tmp_path}, environ={})
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_healthz_reports_database_and_city(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert "72 cells" in body["city"]


def test_healthz_is_503_when_the_database_is_gone(client: TestClient, tmp_path: Path) -> None:
    client.app.state.engine.dispose()  # type: ignore[attr-defined]
    (tmp_path / "gridhub.db").unlink()
    (tmp_path / "gridhub.db").mkdir()  # a directory where the database file was: SQLite cannot open it
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "python_info" in response.text


@pytest.mark.parametrize("role", list(Role))
def test_each_role_token_is_recognised(client: TestClient, tokens: dict[str, str], role: Role) -> None:
    response = client.get("/api/v1/whoami", headers=bearer(tokens[role.value]))
    assert response.status_code == 200
    body = response.json()
    assert (body["role"], body["scope"], body["level"]) == (role.value, "310104", "district")
    assert body["rights"] == sorted(RIGHTS[role])


def test_missing_or_unknown_token_is_401(client: TestClient) -> None:
    assert client.get("/api/v1/whoami").status_code == 401
    assert client.get("/api/v1/whoami", headers=bearer("gh_not-a-token")).status_code == 401
