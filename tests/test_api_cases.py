"""The first cases API: a filtered, paged list and one case with its timeline, behind the bearer tokens."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from api.routes.cases import CasePageOut
from domain.case_records import encode_case_event
from domain.cases import Case, Source, report
from domain.city import City
from storage.cases import CaseCursor, CaseSink
from tests.tokens import bearer, mint

T0 = datetime(2024, 6, 3, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # a Monday, in working hours


def steps(city: City, case_id: str, *, grid_code: str, category: str, at: datetime, source: Source,
          until: str) -> list[Case]:
    """The case after each step of its loop up to `until` (reported, dispatched or closed), routed by the city."""
    route = city.routing[category]
    cases = [report(case_id, grid_code=grid_code, category=category, source=source, at=at, actor="rules",
                    title=f"{city.taxonomy[category].name_zh} at {grid_code}")]
    if until in ("dispatched", "closed"):
        cases.append(cases[-1].file(at + timedelta(minutes=1), "rules"))
        cases.append(cases[-1].dispatch(at + timedelta(minutes=2), "rules", department=route.department,
                                        term=route.term, calendar=city.calendar, tier=route.tier))
    if until == "closed":
        cases.append(cases[-1].handle(at + timedelta(hours=1), route.department, "pumped out"))
        cases.append(cases[-1].verify(at + timedelta(hours=2), "operator-7", passed=True))
    return cases


@pytest.fixture
def stored(client: TestClient) -> None:
    """a: 0406 in community …001, closed; b: an unconfirmed 0501 camera report; c: 0406 in …002, dispatched."""
    city: City = client.app.state.city  # type: ignore[attr-defined]
    cases = [
        *steps(city, "a", grid_code="310104003001001", category="0406", at=T0, source=Source.SENSOR,
               until="closed"),
        *steps(city, "b", grid_code="310104003001003", category="0501", at=T0 + timedelta(hours=1),
               source=Source.CAMERA, until="reported"),
        *steps(city, "c", grid_code="310104003002001", category="0406", at=T0 + timedelta(hours=2),
               source=Source.SENSOR, until="dispatched"),
    ]
    CaseSink(client.app.state.engine).write(  # type: ignore[attr-defined]
        [encode_case_event(case, case.history[-1]) for case in cases])


@pytest.mark.usefixtures("stored")
def test_cases_are_listed_newest_first_as_summaries_in_utc(client: TestClient, viewer: dict[str, str]) -> None:
    response = client.get("/api/v1/cases", headers=viewer)

    assert response.status_code == 200
    body = response.json()
    assert [item["id"] for item in body["items"]] == ["c", "b", "a"]
    assert body["next_cursor"] is None
    assert body["items"][2] == {
        "id": "a", "version": 5, "grid_code": "310104003001001", "category": "0406", "source": "sensor",
        "state": "closed", "severity": "normal", "urgent": False, "title": "道路积水 at 310104003001001",
        "department": "水务", "tier": "street", "reported_at": "2024-06-03T01:00:00Z",
        "filed_at": "2024-06-03T01:01:00Z", "dispatched_at": "2024-06-03T01:02:00Z",
        "deadline_at": "2024-06-03T05:02:00Z", "handled_at": "2024-06-03T02:00:00Z",
        "closed_at": "2024-06-03T03:00:00Z", "voided_at": None,
    }


@pytest.mark.usefixtures("stored")
def test_the_listed_json_is_exactly_the_documented_page_model(client: TestClient, viewer: dict[str, str]) -> None:
    body = client.get("/api/v1/cases", headers=viewer).json()
    assert CasePageOut.model_validate(body).model_dump(mode="json") == body


@pytest.mark.usefixtures("stored")
def test_a_millisecond_time_is_listed_as_the_page_model_writes_it(client: TestClient, viewer: dict[str, str]) -> None:
    city: City = client.app.state.city  # type: ignore[attr-defined]
    [case] = steps(city, "d", grid_code="310104003002002", category="0406", at=T0 + timedelta(milliseconds=123),
                   source=Source.SENSOR, until="reported")
    CaseSink(client.app.state.engine).write([encode_case_event(case, case.history[-1])])  # type: ignore[attr-defined]
    body = client.get("/api/v1/cases", params={"grid": "310104003002002"}, headers=viewer).json()
    assert body["items"][0]["reported_at"] == "2024-06-03T01:00:00.123000Z"
    assert CasePageOut.model_validate(body).model_dump(mode="json") == body


@pytest.mark.usefixtures("stored")
@pytest.mark.parametrize(("params", "expected"), [
    ({"grid": "310104003001"}, ["b", "a"]),
    ({"grid": "310104003002"}, ["c"]),
    ({"grid": "310104"}, ["c", "b", "a"]),
    ({"category": "0406"}, ["c", "a"]),
    ({"status": "reported"}, ["b"]),
    ({"source": "camera"}, ["b"]),
    ({"grid": "310104003001", "category": "0406", "status": "dispatched"}, []),
])
def test_cases_filter_by_grid_prefix_category_status_and_source(
    client: TestClient, viewer: dict[str, str], params: dict[str, str], expected: list[str]
) -> None:
    response = client.get("/api/v1/cases", headers=viewer, params=params)
    assert response.status_code == 200
    assert [item["id"] for item in response.json()["items"]] == expected


@pytest.mark.usefixtures("stored")
def test_cases_page_on_with_next_cursor(client: TestClient, viewer: dict[str, str]) -> None:
    first = client.get("/api/v1/cases", headers=viewer, params={"limit": 2}).json()
    second = client.get("/api/v1/cases", headers=viewer,
                        params={"limit": 2, "cursor": first["next_cursor"]}).json()

    assert [item["id"] for item in first["items"]] == ["c", "b"]
    assert isinstance(first["next_cursor"], str)
    assert [item["id"] for item in second["items"]] == ["a"]
    assert second["next_cursor"] is None


@pytest.mark.usefixtures("stored")
def test_a_case_comes_with_its_timeline_in_version_order(client: TestClient, viewer: dict[str, str]) -> None:
    response = client.get("/api/v1/cases/a", headers=viewer)

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["state"], body["version"], body["rework_count"]) == ("a", "closed", 5, 0)
    assert body["first_handled_at"] == "2024-06-03T02:00:00Z"
    assert [(e["version"], e["action"], e["from_state"], e["to_state"], e["at"], e["actor"])
            for e in body["timeline"]] == [
        (1, "report", None, "reported", "2024-06-03T01:00:00Z", "rules"),
        (2, "file", "reported", "filed", "2024-06-03T01:01:00Z", "rules"),
        (3, "dispatch", "filed", "dispatched", "2024-06-03T01:02:00Z", "rules"),
        (4, "handle", "dispatched", "handled", "2024-06-03T02:00:00Z", "水务"),
        (5, "verify_pass", "handled", "closed", "2024-06-03T03:00:00Z", "operator-7"),
    ]
    assert body["timeline"][2]["data"] == {"department": "水务", "tier": "street",
                                           "deadline_at": "2024-06-03T13:02:00+08:00"}


@pytest.mark.usefixtures("stored")
def test_an_unknown_case_is_404_naming_it(client: TestClient, viewer: dict[str, str]) -> None:
    response = client.get("/api/v1/cases/no-such-case", headers=viewer)
    assert response.status_code == 404
    assert response.json() == {"detail": "no case 'no-such-case'"}


@pytest.mark.parametrize("path", ["/api/v1/cases", "/api/v1/cases/a"])
def test_cases_need_a_bearer_token(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer not-a-token"}).status_code == 401


@pytest.mark.parametrize(("params", "message"), [
    ({"grid": "31010a"}, "`grid` must be a grid code prefix of up to 15 digits"),
    ({"grid": "3101040030010011"}, "`grid` must be a grid code prefix of up to 15 digits"),
    ({"category": "9999"}, "`category` '9999' is not a taxonomy code; known: 0101"),
    ({"status": "lost"}, "Input should be 'reported', 'filed', 'dispatched'"),
    ({"source": "rumour"}, "Input should be 'sensor', 'camera', 'citizen' or 'patrol'"),
    ({"limit": 0}, "Input should be greater than or equal to 1"),
    ({"limit": 501}, "Input should be less than or equal to 500"),
    ({"limit": "9" * 30}, "Input should be less than or equal to 500"),
    ({"cursor": "bm90LWEtY3Vyc29y"}, "`cursor` must be the `next_cursor` of a previous page"),
    # a report time of 2**63 ms, past what the database's 64-bit column holds
    ({"cursor": CaseCursor(2**63, "a").encode()}, "`cursor` must be the `next_cursor` of a previous page"),
])
def test_bad_filters_are_422_with_the_reason(client: TestClient, viewer: dict[str, str], params: dict[str, str],
                                             message: str) -> None:
    response = client.get("/api/v1/cases", headers=viewer, params=params)
    assert response.status_code == 422
    assert message in str(response.json()["detail"])


def test_cases_are_503_when_the_database_is_gone(client: TestClient, viewer: dict[str, str], tmp_path: Path) -> None:
    client.app.state.engine.dispose()  # type: ignore[attr-defined]
    (tmp_path / "gridhub.db").unlink()
    (tmp_path / "gridhub.db").mkdir()  # a directory where the database file was: SQLite cannot open it
    response = client.get("/api/v1/cases", headers=viewer)
    assert response.status_code == 503
    assert response.json()["detail"].endswith("unavailable: database: unable to open database file")


@pytest.mark.usefixtures("stored")
@pytest.mark.parametrize(("role", "case_id", "expected"), [
    ("commander", "c", ["reassign", "return", "escalate", "handle", "void", "suspend", "extend"]),
    ("commander", "b", ["confirm", "dismiss", "file", "void"]),
    ("operator", "b", ["confirm", "dismiss"]),
    ("commander", "a", []),
    ("viewer", "c", []),
])
def test_a_case_lists_the_actions_the_caller_may_take_now(client: TestClient, tmp_path: Path, role: str,
                                                          case_id: str, expected: list[str]) -> None:
    body = client.get(f"/api/v1/cases/{case_id}", headers=bearer(mint(tmp_path, role))).json()
    assert body["allowed_actions"] == expected


def test_the_taxonomy_names_each_code_and_its_default_route(client: TestClient, viewer: dict[str, str]) -> None:
    by_code = {c["code"]: c for c in client.get("/api/v1/taxonomy", headers=viewer).json()}
    assert by_code["0406"] == {"code": "0406", "name_zh": "道路积水", "name_en": by_code["0406"]["name_en"],
                               "kind": "event", "department": "水务", "tier": "street", "term": "4h working"}


def test_the_console_is_served_at_the_root_without_a_token(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and '<script type="module" src="/console/app.js">' in page.text
    assert client.get("/console/app.js").headers["content-type"].startswith("text/javascript")
