"""Open311 GeoReport v2: services, requests mapped from cases, citizens' reports with photos and their ratings.

Reports and ratings are commands for the stream worker. Here the real case engine answers them in process
(`EngineBus`), and the case sink writes its changes to the API's database, so that what the worker would decide
(a new citizen case, or fusion into the cell's open case) is the engine's own decision, not a stand-in's.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import load_settings
from domain.case_records import CaseCommand, Command, Outcome, encode_case_event
from domain.cases import Case, Source, report
from domain.city import City
from storage.cases import CaseSink
from tests.engine_bus import EngineBus, install
from tests.streams import T0_MS, feed, rain
from tests.tokens import bearer, mint

T0 = datetime(2024, 6, 3, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # a Monday, in working hours
JUNE = {"start_date": "2024-06-01T00:00:00Z", "end_date": "2024-07-01T00:00:00Z"}
CELL_7 = {"lat": "31.196436", "long": "121.432696"}  # inside 310104003001007, 天平路街道宛南社区第7网格
MINUTE = 60_000


def image(kind: str = ".jpg") -> bytes:
    """A small real photo (a grey gradient) in JPEG or PNG."""
    pixels = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))
    ok, encoded = cv2.imencode(kind, cv2.merge([pixels, pixels, pixels]))
    assert ok
    return encoded.tobytes()


def loop(city: City, case_id: str, *, grid_code: str, category: str, at: datetime, source: Source,
         until: str) -> list[Case]:
    """The case after each step of its loop up to `until` (reported, dispatched or closed), routed by the city."""
    route = city.routing[category]
    cases = [report(case_id, grid_code=grid_code, category=category, source=source, at=at, actor="rules",
                    title=f"{city.taxonomy[category].name_zh} at {grid_code}")]
    if until in ("dispatched", "closed"):
        cases.append(cases[-1].file(at + timedelta(minutes=1), "operator-7", "confirmed on camera"))
        cases.append(cases[-1].dispatch(at + timedelta(minutes=2), "rules", department=route.department,
                                        term=route.term, calendar=city.calendar, tier=route.tier))
    if until == "closed":
        cases.append(cases[-1].handle(at + timedelta(hours=1), route.department, "pumped out"))
        cases.append(cases[-1].verify(at + timedelta(hours=2), "operator-7", passed=True))
    return cases


def store(client: TestClient, cases: list[Case]) -> None:
    """Write every step of the cases as the case sink does."""
    CaseSink(client.app.state.engine).write(  # type: ignore[attr-defined]
        [encode_case_event(case, case.history[-1]) for case in cases])


@pytest.fixture
def bus(client: TestClient) -> EngineBus:
    """The engine behind the app's command bus, reading finished cases back from the database as the worker does."""
    return install(client.app)  # type: ignore[arg-type]


@pytest.fixture
def stored(client: TestClient) -> None:
    """a: 0406 in …001, closed; b: an unconfirmed 0501 camera report in …003; c: 0406 in …007, dispatched."""
    city: City = client.app.state.city  # type: ignore[attr-defined]
    store(client, [
        *loop(city, "a", grid_code="310104003001001", category="0406", at=T0, source=Source.SENSOR, until="closed"),
        *loop(city, "b", grid_code="310104003001003", category="0501", at=T0 + timedelta(hours=1),
              source=Source.CAMERA, until="reported"),
        *loop(city, "c", grid_code="310104003001007", category="0406", at=T0 + timedelta(hours=2),
              source=Source.SENSOR, until="dispatched"),
    ])


def post_report(client: TestClient, *, photo: bytes | None = None, service_code: str = "0501",
                where: dict[str, str] = CELL_7, description: str = "vendor on the pavement") -> httpx.Response:
    """POST a citizen report (multipart when it has a photo)."""
    response: httpx.Response = client.post(
        "/open311/v2/requests.json", data={"service_code": service_code, **where, "description": description},
        files={"media": ("photo.jpg", photo, "image/jpeg")} if photo is not None else None)
    return response


def reported(client: TestClient, **report: Any) -> dict[str, Any]:
    """The receipt of a report the API accepted."""
    response = post_report(client, **report)
    assert response.status_code == 201, response.text
    [receipt] = response.json()
    return dict(receipt)


def close(bus: EngineBus, case_id: str) -> None:
    """Run the case through 立案, 派遣, 处置 and 核查 as the command center would."""
    now = datetime.now(UTC)
    for minutes, verb in enumerate((Command.FILE, Command.DISPATCH, Command.HANDLE, Command.VERIFY_PASS), 1):
        reply = bus.apply(CaseCommand(case_id, "310104003001007", verb, "operator-7", now + timedelta(minutes=minutes),
                                      "done" if verb is Command.HANDLE else ""))
        assert reply.outcome is Outcome.APPLIED, reply


def test_services_are_the_taxonomy_without_gridhubs_device_health_codes(client: TestClient) -> None:
    services = client.get("/open311/v2/services.json").json()

    assert [s["service_code"] for s in services] == [
        "0101", "0102", "0103", "0302", "0404", "0406", "0501", "0504", "9901"]
    assert services[5] == {"service_code": "0406", "service_name": "道路积水", "description": "waterlogging",
                           "metadata": False, "type": "realtime", "keywords": "道路积水,waterlogging", "group": "event"}


def test_the_xml_format_is_not_acceptable(client: TestClient) -> None:
    response = client.get("/open311/v2/services.xml")
    assert (response.status_code, response.json()["detail"]) == (
        406, "this Open311 server answers JSON only: ask for services.json")


@pytest.mark.usefixtures("stored")
def test_a_request_is_a_case_in_georeport_fields_readable_without_a_token(client: TestClient) -> None:
    response = client.get("/open311/v2/requests/a.json")

    assert response.status_code == 200
    assert response.json() == [{
        "service_request_id": "a", "status": "closed", "status_notes": "pumped out", "service_name": "道路积水",
        "service_code": "0406", "description": "道路积水 at 310104003001001", "agency_responsible": "水务",
        "service_notice": None, "requested_datetime": "2024-06-03T01:00:00Z",
        "updated_datetime": "2024-06-03T03:00:00Z", "expected_datetime": "2024-06-03T05:02:00Z",
        "address": "天平路街道宛南社区第1网格", "address_id": "310104003001001", "lat": 31.195454, "long": 121.430525,
        "media_url": None,
    }]


@pytest.mark.usefixtures("stored")
@pytest.mark.parametrize(("params", "expected"), [
    ({}, ["c", "a"]),
    ({"status": "open"}, ["c"]),
    ({"status": "closed"}, ["a"]),
    ({"service_code": "0406", "status": "open,closed"}, ["c", "a"]),
    ({"page_size": "1", "page": "2"}, ["a"]),
    ({"end_date": "2024-06-03T02:00:00Z"}, ["a"]),
])
def test_requests_are_listed_newest_first_filtered_and_paged(
    client: TestClient, params: dict[str, str], expected: list[str]
) -> None:
    response = client.get("/open311/v2/requests.json", params={**JUNE, **params})
    assert response.status_code == 200
    assert [r["service_request_id"] for r in response.json()] == expected


@pytest.mark.usefixtures("stored")
def test_a_machine_alarm_nobody_confirmed_is_not_public(client: TestClient) -> None:
    assert client.get("/open311/v2/requests/b.json").status_code == 404
    assert client.get("/open311/v2/requests.json", params={"service_request_id": "b,a"}).json()[0][
        "service_request_id"] == "a"


def test_requests_default_to_the_latest_90_days(client: TestClient) -> None:
    city: City = client.app.state.city  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    store(client, [*loop(city, "old", grid_code="310104003001001", category="0406", at=now - timedelta(days=91),
                         source=Source.CITIZEN, until="reported"),
                   *loop(city, "new", grid_code="310104003001001", category="0406", at=now - timedelta(days=89),
                         source=Source.CITIZEN, until="reported")])

    assert [r["service_request_id"] for r in client.get("/open311/v2/requests.json").json()] == ["new"]


@pytest.mark.parametrize(("params", "detail"), [
    ({"start_date": "2024-01-01T00:00:00Z", "end_date": "2024-06-01T00:00:00Z"},
     "`end_date` must be after `start_date` and at most 90 days later"),
    ({"start_date": "2024-01-01"}, "`start_date` must be an RFC 3339 time with its offset (e.g. "
                                   "2026-03-10T08:00:00+08:00) between 1970-01-01 and 9999-01-01, not '2024-01-01'"),
    ({"status": "pending"}, "`status` must be open, closed or open,closed, not 'pending'"),
    ({"page_size": "1000"}, "`page_size` must be a whole number from 1 to 200, not '1000'"),
])
def test_a_malformed_search_is_400_saying_why(client: TestClient, params: dict[str, str], detail: str) -> None:
    response = client.get("/open311/v2/requests.json", params=params)
    assert (response.status_code, response.json()) == (400, {"detail": detail})


def test_a_report_with_a_photo_opens_a_citizen_case_awaiting_filing_with_the_photo(
    client: TestClient, bus: EngineBus, viewer: dict[str, str]
) -> None:
    photo = image()
    receipt = reported(client, photo=photo)

    case = client.get(f"/api/v1/cases/{receipt['service_request_id']}", headers=viewer).json()
    assert (case["source"], case["state"], case["category"], case["grid_code"], case["title"]) == (
        "citizen", "reported", "0501", "310104003001007", "vendor on the pavement")
    [evidence] = case["evidence"]
    assert evidence["source_id"].startswith("citizen/") and evidence["ref"].startswith("citizen/")
    served = client.get(f"/api/v1/cases/{case['id']}/evidence/0", headers=viewer)
    assert (served.status_code, served.headers["content-type"], served.content) == (200, "image/jpeg", photo)


def test_a_reports_media_url_serves_its_photo_to_a_reader(
    client: TestClient, bus: EngineBus, viewer: dict[str, str]
) -> None:
    photo = image(".png")
    receipt = reported(client, photo=photo)

    [request] = client.get(f"/open311/v2/requests/{receipt['service_request_id']}.json").json()
    assert request["status"] == "open"
    assert client.get(request["media_url"], headers=viewer).content == photo


def test_a_report_in_a_cell_with_an_open_sensor_case_of_its_code_is_fused_into_it(
    client: TestClient, bus: EngineBus, viewer: dict[str, str]
) -> None:
    bus.write(feed(bus.engine, *(rain(T0_MS + i * MINUTE, 110 / 90) for i in range(120))))  # waterlogging in …007
    [sensor_case] = client.get("/api/v1/cases", headers=viewer, params={"category": "0406"}).json()["items"]

    receipt = reported(client, service_code="0406", description="water up to the kerb")

    assert receipt["service_request_id"] == sensor_case["id"]
    case = client.get(f"/api/v1/cases/{sensor_case['id']}", headers=viewer).json()
    assert (case["source"], case["evidence"][-1]["summary"]) == ("sensor", "water up to the kerb")
    assert case["evidence"][-1]["source_id"].startswith("citizen/")
    assert len(client.get("/api/v1/cases", headers=viewer).json()["items"]) == 1


def test_the_reporter_rates_the_closed_case_with_the_token_of_the_report(
    client: TestClient, bus: EngineBus, viewer: dict[str, str]
) -> None:
    receipt = reported(client)
    case_id = receipt["service_request_id"]
    close(bus, case_id)

    response = client.post(f"/open311/v2/requests/{case_id}/rating",
                           data={"token": receipt["token"], "satisfied": "true", "comment": "quick, thanks"})

    assert (response.status_code, response.json()) == (200, {"service_request_id": case_id, "satisfied": True})
    case = client.get(f"/api/v1/cases/{case_id}", headers=viewer).json()
    assert (case["satisfied"], case["timeline"][-1]["action"], case["timeline"][-1]["note"]) == (
        True, "rate", "quick, thanks")


def test_a_rating_with_another_token_is_403(client: TestClient, bus: EngineBus) -> None:
    receipt = reported(client)
    close(bus, receipt["service_request_id"])

    response = client.post(f"/open311/v2/requests/{receipt['service_request_id']}/rating",
                           data={"token": "not-the-token", "satisfied": "false"})

    assert response.status_code == 403


def test_a_rating_of_a_case_not_yet_closed_is_409(client: TestClient, bus: EngineBus) -> None:
    receipt = reported(client)

    response = client.post(f"/open311/v2/requests/{receipt['service_request_id']}/rating",
                           data={"token": receipt["token"], "satisfied": "true"})

    assert (response.status_code, response.json()["detail"]) == (
        409, f"request {receipt['service_request_id']} is reported: it can be rated once it is closed (结案)")


def test_a_case_is_rated_once(client: TestClient, bus: EngineBus) -> None:
    receipt = reported(client)
    close(bus, receipt["service_request_id"])
    rating = {"token": receipt["token"], "satisfied": "true"}
    url = f"/open311/v2/requests/{receipt['service_request_id']}/rating"

    assert client.post(url, data=rating).status_code == 200
    assert client.post(url, data=rating).status_code == 409


def test_a_media_file_that_is_not_an_image_is_415(client: TestClient) -> None:
    response = post_report(client, photo=b"<html><script>alert(1)</script></html>")
    assert (response.status_code, response.json()) == (
        415, {"detail": "a photo must be a JPEG or PNG image (judged by its content, not its name)"})


def test_a_truncated_photo_is_422(client: TestClient) -> None:
    photo = image()
    response = post_report(client, photo=photo[: len(photo) // 2])
    assert (response.status_code, response.json()) == (
        422, {"detail": "the image/jpeg photo does not decode: truncated or corrupt"})


def test_a_photo_of_too_many_pixels_is_422_before_it_is_decoded(client: TestClient) -> None:
    ok, bomb = cv2.imencode(".png", np.zeros((10_000, 10_000), np.uint8))  # 100 megapixels in about 100 KB
    assert ok
    response = post_report(client, photo=bomb.tobytes())
    assert (response.status_code, response.json()) == (
        422, {"detail": "the photo is 10000×10000 pixels, over the limit of 64 megapixels"})


def test_a_report_body_over_the_upload_limit_is_413(client: TestClient) -> None:
    limit = client.app.state.settings.api.max_upload_bytes  # type: ignore[attr-defined]
    response = post_report(client, photo=image() + b"\0" * limit)
    assert response.status_code == 413


def test_a_point_outside_the_city_is_400(client: TestClient) -> None:
    response = post_report(client, where={"lat": "31.0", "long": "121.0"})
    assert (response.status_code, response.json()) == (
        400, {"detail": "the point lat 31, long 121 is in no grid cell of 徐汇区演示网格 (Xuhui demo)"})


@pytest.mark.parametrize("code", ["0000", "9902"])
def test_an_unknown_service_code_is_400(client: TestClient, code: str) -> None:
    response = post_report(client, service_code=code)
    assert (response.status_code, response.json()) == (400, {"detail": (
        f"`service_code` '{code}' is not a service of this city; known: 0101, 0102, 0103, 0302, 0404, 0406, 0501, "
        "0504, 9901 (services.json)")})


def test_a_report_without_a_description_is_400(client: TestClient) -> None:
    response = post_report(client, description="  ")
    assert (response.status_code, response.json()) == (
        400, {"detail": "`description` must say what is wrong in 1 to 1000 characters, not 0"})


def test_a_well_formed_report_while_kafka_is_away_is_503(client: TestClient) -> None:
    assert post_report(client).status_code == 503


@pytest.fixture
def strict_client(tmp_path: Path) -> Iterator[TestClient]:
    """The API allowing one anonymous report a minute per address."""
    settings = load_settings(overrides={"state_dir": tmp_path, "api.citizen_rate_per_min": 1}, environ={})
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_anonymous_reports_are_rate_limited_per_address(strict_client: TestClient) -> None:
    post_report(strict_client)
    response = post_report(strict_client)
    assert response.status_code == 429


def test_a_systems_token_is_limited_per_token_not_by_the_address_it_shares(
    strict_client: TestClient, tmp_path: Path
) -> None:
    hotline = bearer(mint(tmp_path, "viewer", name="12345 hotline"))
    post_report(strict_client)  # the address's one report this minute
    response = strict_client.post("/open311/v2/requests.json", headers=hotline,
                                  data={"service_code": "0501", **CELL_7, "description": "caller: vendor at the gate"})
    assert response.status_code == 503  # past the limits, on to the (absent) stream worker


@pytest.mark.usefixtures("stored")
def test_evidence_of_a_case_outside_the_readers_scope_is_404(client: TestClient, tmp_path: Path) -> None:
    elsewhere = bearer(mint(tmp_path, "viewer", scope="310104004"))
    response = client.get("/api/v1/cases/a/evidence/0", headers=elsewhere)
    assert (response.status_code, response.json()) == (404, {"detail": "no case 'a'"})


def test_evidence_without_an_image_is_404(client: TestClient, bus: EngineBus, viewer: dict[str, str]) -> None:
    receipt = reported(client)  # no photo
    response = client.get(f"/api/v1/cases/{receipt['service_request_id']}/evidence/0", headers=viewer)
    assert (response.status_code, response.json()["detail"]) == (
        404, f"evidence item 0 of case {receipt['service_request_id']} has no image")


def test_a_commander_uploads_a_handling_photo_and_gets_its_reference(client: TestClient, tmp_path: Path) -> None:
    commander = bearer(mint(tmp_path, "commander"))
    response = client.post("/api/v1/photos", content=image(".png"),
                           headers={**commander, "Content-Type": "image/png"})

    assert response.status_code == 201
    reference = response.json()["photo"]
    assert reference.startswith("photos/") and reference.endswith(".png")
    assert (tmp_path / "evidence" / reference).read_bytes() == image(".png")


def test_a_photo_whose_bytes_are_not_its_content_type_is_415(client: TestClient, tmp_path: Path) -> None:
    commander = bearer(mint(tmp_path, "commander"))
    response = client.post("/api/v1/photos", content=image(".jpg"),
                           headers={**commander, "Content-Type": "image/png"})
    assert (response.status_code, response.json()["detail"]) == (
        415, "the body is a image/jpeg image, but its Content-Type says image/png")


def test_a_viewer_may_not_upload_photos(client: TestClient, viewer: dict[str, str]) -> None:
    response = client.post("/api/v1/photos", content=image(), headers={**viewer, "Content-Type": "image/jpeg"})
    assert response.status_code == 403
