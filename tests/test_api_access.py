"""Who gets in: tokens from the database (expiry and revocation take effect without a restart), the CLI that
manages them, limits at the door (413, 429) and the operations pages kept to this machine."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings, load_settings
from gridhub.cli import cli
from storage.db import connect
from storage.tokens import create_token, list_tokens, revoke_tokens
from tests.tokens import bearer, mint

REMOTE = ("203.0.113.9", 40000)  # a documentation address: another machine


def app_for(state_dir: Path, **api: object) -> TestClient:
    overrides = {"state_dir": state_dir, **{f"api.{key}": value for key, value in api.items()}}
    return TestClient(create_app(load_settings(overrides=overrides, environ={})))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with app_for(tmp_path) as test_client:
        yield test_client


def test_a_revoked_token_is_refused_on_the_next_request(client: TestClient, tmp_path: Path) -> None:
    token = mint(tmp_path, "viewer")
    assert client.get("/api/v1/whoami", headers=bearer(token)).status_code == 200
    engine = connect(Settings(state_dir=tmp_path).database_url)
    [record] = list_tokens(engine)
    revoke_tokens(engine, token_id=record.id)
    response = client.get("/api/v1/whoami", headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["detail"].startswith(f"token {record.id} was revoked at ")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_an_expired_token_is_refused_naming_when_it_expired(client: TestClient, tmp_path: Path) -> None:
    engine = connect(Settings(state_dir=tmp_path).database_url)
    token, record = create_token(engine, role="viewer", scope="310104", name="yesterday's",
                                 expires_in=timedelta(hours=1), now=datetime.now(UTC) - timedelta(days=1))
    response = client.get("/api/v1/whoami", headers=bearer(token))
    assert response.status_code == 401
    assert record.expires_at is not None
    assert response.json()["detail"] == f"token {record.id} expired at {record.expires_at.isoformat()}"


def test_missing_and_unknown_tokens_get_the_same_shape_of_401(client: TestClient) -> None:
    for headers, detail in (({}, "missing bearer token"), (bearer("gh_nope"), "unknown bearer token")):
        response = client.get("/api/v1/cases", headers=headers)
        assert (response.status_code, response.json()) == (401, {"detail": detail})


def test_a_role_without_the_right_gets_a_403_naming_it(client: TestClient, tmp_path: Path) -> None:
    response = client.post("/api/v1/cases/x/actions", headers=bearer(mint(tmp_path, "operator")),
                           json={"action": "file", "expected_version": 1})
    assert (response.status_code, response.json()) == (
        403, {"detail": "role operator may not do this (needs the 'act' right)"})


def test_writes_beyond_the_token_rate_are_429_with_retry_after(tmp_path: Path) -> None:
    token = mint(tmp_path, "commander")
    with app_for(tmp_path, write_rate_per_s=0.01, write_burst=2) as client:
        statuses = [client.post("/api/v1/cases/none/actions", headers=bearer(token),
                                json={"action": "file", "expected_version": 1}).status_code for _ in range(3)]
        assert statuses[:2] != [429, 429] and statuses[2] == 429  # (the first two: 503, no Kafka in this test)
        refused = client.post("/api/v1/cases/none/actions", headers=bearer(token),
                              json={"action": "file", "expected_version": 1})
        assert int(refused.headers["Retry-After"]) >= 1
        assert client.get("/api/v1/cases", headers=bearer(token)).status_code == 200  # reads are not limited


def test_a_body_over_the_limit_is_413_whether_announced_or_streamed(tmp_path: Path) -> None:
    token = mint(tmp_path, "commander")
    with app_for(tmp_path, max_body_bytes=1024) as client:
        big = b'{"action": "file", "note": "' + b"x" * 2000 + b'"}'
        headers = {**bearer(token), "Content-Type": "application/json"}
        announced = client.post("/api/v1/cases/c/actions", headers=headers, content=big)
        assert announced.status_code == 413
        assert "over the limit of 1024 bytes" in announced.json()["detail"]
        streamed = client.post("/api/v1/cases/c/actions", headers=headers, content=iter([big[:1000], big[1000:]]))
        assert streamed.status_code == 413


@pytest.mark.parametrize("path", ["/metrics", "/docs", "/openapi.json"])
def test_operations_pages_answer_this_machine_without_a_token(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/metrics", "/docs", "/openapi.json"])
def test_operations_pages_want_an_ops_token_from_another_machine(tmp_path: Path, path: str) -> None:
    viewer, admin = mint(tmp_path, "viewer"), mint(tmp_path, "admin")
    with TestClient(create_app(load_settings(overrides={"state_dir": tmp_path}, environ={})), client=REMOTE) as remote:
        assert remote.get(path).status_code == 401
        assert remote.get(path, headers=bearer(viewer)).status_code == 403
        assert remote.get(path, headers=bearer(admin)).status_code == 200


def test_operations_pages_can_be_made_public(tmp_path: Path) -> None:
    settings = load_settings(overrides={"state_dir": tmp_path, "api.public_metrics": True}, environ={})
    with TestClient(create_app(settings), client=REMOTE) as remote:
        assert remote.get("/metrics").status_code == 200
        assert remote.get("/docs").status_code == 401


def test_the_cli_creates_lists_and_revokes_tokens(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"GRIDHUB_STATE_DIR": str(tmp_path)}
    created = runner.invoke(cli, ["tokens", "create", "--role", "operator", "--scope", "310104003", "--expires", "30d"],
                            env=env)
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("gh_")
    token_id = token.split("_")[1]
    listed = runner.invoke(cli, ["tokens", "list"], env=env)
    assert token_id in listed.stdout and "operator" in listed.stdout and "310104003" in listed.stdout
    assert token not in listed.stdout
    with app_for(tmp_path) as client:
        who = client.get("/api/v1/whoami", headers=bearer(token)).json()
        assert (who["role"], who["scope"], who["level"]) == ("operator", "310104003", "street")
        assert runner.invoke(cli, ["tokens", "revoke", token_id], env=env).exit_code == 0
        assert client.get("/api/v1/whoami", headers=bearer(token)).status_code == 401
    assert token_id not in runner.invoke(cli, ["tokens", "list"], env=env).stdout
    assert token_id in runner.invoke(cli, ["tokens", "list", "--all"], env=env).stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--scope", "31010400"], "must be a district (6 digits), street (9) or community (12) code"),
    (["--scope", "999999"], "names no grid cell of this city"),
    (["--scope", "310104", "--expires", "soon"], "give a duration like 12h or 30d"),
])
def test_the_cli_refuses_a_bad_scope_or_lifetime(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["tokens", "create", "--role", "viewer", *args],
                                env={"GRIDHUB_STATE_DIR": str(tmp_path)})
    assert result.exit_code == 2
    assert message in result.output


def test_a_scoped_token_sees_only_its_part_of_the_city(client: TestClient, tmp_path: Path) -> None:
    community = mint(tmp_path, "viewer", "310104003001")
    cells = client.get("/api/v1/grids", headers=bearer(community)).json()["items"]
    assert cells and all(c["code"].startswith("310104003001") for c in cells)
    other = client.get("/api/v1/grids", params={"prefix": "310104004"}, headers=bearer(community)).json()["items"]
    assert other == []
