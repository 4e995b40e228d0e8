"""The API skeleton: health, metrics, bearer tokens with roles, grid prefix queries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import Role, TokenStoreError, issue_tokens, load_token_hashes
from core.settings import load_settings


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    return issue_tokens(tmp_path / "tokens.json")


@pytest.fixture
def client(tmp_path: Path, tokens: dict[str, str]) -> Iterator[TestClient]:
    settings = load_settings(overrides={"state_dir": tmp_path}, environ={})
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


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
    assert response.json() == {"role": role.value}


def test_missing_or_unknown_token_is_401(client: TestClient) -> None:
    assert client.get("/api/v1/whoami").status_code == 401
    assert client.get("/api/v1/whoami", headers=bearer("gh_not-a-token")).status_code == 401


def test_tokens_file_stores_only_hashes(tmp_path: Path, tokens: dict[str, str]) -> None:
    stored = (tmp_path / "tokens.json").read_text()
    assert all(token not in stored for token in tokens.values())
    assert set(load_token_hashes(tmp_path / "tokens.json").values()) == set(Role)
    assert (tmp_path / "tokens.json").stat().st_mode & 0o077 == 0


def test_malformed_tokens_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"tokens": [{"role": "mayor", "sha256": "x"}]}')
    with pytest.raises(TokenStoreError, match="malformed tokens file"):
        load_token_hashes(tmp_path / "bad.json")


def test_grids_under_a_community_prefix(client: TestClient, tokens: dict[str, str]) -> None:
    response = client.get("/api/v1/grids", params={"prefix": "310104004002"}, headers=bearer(tokens["viewer"]))
    assert response.status_code == 200
    items = response.json()["items"]
    assert len(items) == 12
    assert all(item["code"].startswith("310104004002") and item["community"] == "武康社区" for item in items)


def test_grids_with_a_malformed_prefix_is_422(client: TestClient, tokens: dict[str, str]) -> None:
    response = client.get("/api/v1/grids", params={"prefix": "3101"}, headers=bearer(tokens["viewer"]))
    assert response.status_code == 422
    assert "expected one of 6, 9, 12, 15" in response.json()["detail"]
