"""Out-of-range values in any query or path parameter of any route are the caller's error (4xx), never a 500.

The routes and their parameters are read from the app's own OpenAPI schema, so a route added later is
covered without editing this file. Only GET routes are requested: they are the ones that take their input
from the query string, and requesting them changes nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from api.app import create_app
from core.settings import load_settings
from storage.devices import seed_devices
from tests.tokens import mint

#: A valid value for each path parameter, so that the request reaches the parameter being tried.
PATH_DEFAULTS = {"device_id": "rain-0001", "code": "310104003001001", "case_id": "no-such-case", "index": "0",
                 "camera_id": "cam-tianping-01"}
INT64 = 2**63
HUGE_INTEGERS = [INT64, INT64 - 1, -INT64, -INT64 - 1, 2**64, 10**30, 9_999_999_999_999_999, -1, 0]
FAR_TIMES = ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+23:59", "0001-01-01T00:30:00Z", "9999-12-31T23:59:59Z",
             "9999-12-31T23:59:59-23:59", "1e308", "-1e308", "nan", "inf"]


def cursor(reported_ms: int | str) -> str:
    """A cursor token in the shape `next_cursor` has, holding any report time."""
    return base64.urlsafe_b64encode(f"{reported_ms}:case".encode()).decode().rstrip("=")


def renderings(number: int | str) -> list[str]:
    """The ways an integer reaches a route: plain, as a duration, inside a cursor."""
    return [f"{number}", f"{number}s", f"{number}d", cursor(number)]


NASTY_VALUES = [text for n in [*HUGE_INTEGERS, "9" * 5000] for text in renderings(n)] + FAR_TIMES


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """One app for the module (requests here change nothing), with the demo devices and a viewer token."""
    state_dir = tmp_path_factory.mktemp("api")
    token = mint(state_dir, "viewer")
    app = create_app(load_settings(overrides={"state_dir": state_dir}, environ={}))
    seed_devices(app.state.engine, app.state.city, demo=True)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def parameters(client: TestClient) -> list[tuple[str, str, str]]:
    """(path template, parameter name, `query` or `path`) for every parameter of every GET route."""
    schema: dict[str, Any] = client.app.openapi()  # type: ignore[attr-defined]
    return [(path, param["name"], param["in"])
            for path, operations in schema["paths"].items() if "get" in operations
            for param in operations["get"].get("parameters", [])]


def request(client: TestClient, headers: dict[str, str], path: str, name: str, where: str, value: str) -> int:
    """Request `path` with one parameter set to `value` and the others at their defaults; the status."""
    url = path.format(**{**PATH_DEFAULTS, **({name: quote(value, safe="")} if where == "path" else {})})
    return client.get(url, headers=headers, params={name: value} if where == "query" else {}).status_code


def test_the_schema_lists_the_integer_and_time_parameters(api: tuple[TestClient, dict[str, str]]) -> None:
    # guards the tests below against an empty route list passing vacuously
    names = {name for _, name, _ in parameters(api[0])}
    assert {"limit", "cursor", "every", "from", "to", "device_id", "case_id"} <= names


#: Routes served from Kafka: with no Kafka behind this app they answer 503 to every valid request.
NEEDS_KAFKA = {"/api/v1/events"}


def server_error(path: str, status: int) -> bool:
    """A 5xx the request caused (not a 503 of a route whose Kafka this test does not run)."""
    return status >= 500 and not (path in NEEDS_KAFKA and status == 503)


def test_no_nasty_value_in_any_parameter_is_a_server_error(api: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = api
    errors = [(path, name, value[:40], status)
              for path, name, where in parameters(client) for value in NASTY_VALUES
              if server_error(path, status := request(client, headers, path, name, where, value))]
    assert errors == []


@settings(max_examples=60, deadline=None)
@given(number=st.integers(), form=st.integers(min_value=0, max_value=3))
def test_no_integer_in_any_parameter_is_a_server_error(
    api: tuple[TestClient, dict[str, str]], number: int, form: int
) -> None:
    client, headers = api
    value = renderings(number)[form]
    errors = [(path, name, status) for path, name, where in parameters(client)
              if server_error(path, status := request(client, headers, path, name, where, value))]
    assert errors == []
