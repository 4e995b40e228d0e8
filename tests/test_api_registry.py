"""The registry API the console's map draws from: cells as GeoJSON and as a hierarchy, devices with their health,
cameras with their zones and snapshots — each filtered to the caller's scope."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from detectors.events import ZoneEvent
from detectors.evidence import snapshot_name
from domain.case_records import encode_case_event
from domain.cases import Case, Evidence, Source, report
from domain.detections import DetectionKind, Phase
from domain.registry import DeviceKind, Zone, ZoneKind
from domain.taxonomy import DEVICE_OFFLINE, LOW_BATTERY
from storage.broker_files import PASSWORD_FILE, auth_dir, read_password_file
from storage.cases import CaseSink
from storage.devices import list_devices, seed_devices
from storage.evidence import DirectoryEvidence, camera_folder
from storage.telemetry.base import ReadingRow, StatusRow, StoreBatch
from storage.telemetry.sql import SqlTelemetryStore
from tests.tokens import bearer, mint

CELL = "310104003001001"  # rain-0001, crowd-0016, manhole-0001 and manhole-0120 are here
COMMUNITY = "310104003001"  # 宛南社区: 12 cells, camera cam-tianping-01
OTHER_STREET_DEVICE = "rain-0013"  # in 310104004, outside COMMUNITY
T0 = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def client(client: TestClient) -> TestClient:
    """The API over a database holding the demo city's devices, as `gridhub up` registers them before it starts."""
    seed_devices(client.app.state.engine, client.app.state.city, demo=True)  # type: ignore[attr-defined]
    return client


@pytest.fixture
def community(tmp_path: Path) -> dict[str, str]:
    """A viewer over one community, 宛南社区 (310104003001)."""
    return bearer(mint(tmp_path, "viewer", COMMUNITY))


@pytest.fixture
def device_admin(tmp_path: Path) -> dict[str, str]:
    """A device administrator over the district."""
    return bearer(mint(tmp_path, "device-admin"))


def now_ms() -> int:
    return int(time.time() * 1000)


def write(client: TestClient, readings: list[ReadingRow], statuses: list[StatusRow] | None = None) -> None:
    SqlTelemetryStore(client.app.state.engine).write(  # type: ignore[attr-defined]
        StoreBatch("gridhub-store", "gridhub.telemetry", readings, statuses or []))


def reading(device: str, received_ms: int, seq: int, battery_v: float | None = None) -> ReadingRow:
    return ReadingRow(device, received_ms - 40, seq, CELL, DeviceKind.RAIN, received_ms, False, rain_mm=0.0,
                      battery_v=battery_v)


def iso(ms: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).isoformat().replace("+00:00", "Z")


def store_cases(client: TestClient, *cases: Case) -> None:
    CaseSink(client.app.state.engine).write(  # type: ignore[attr-defined]
        [encode_case_event(case, case.history[-1]) for case in cases])


def maintenance_case(case_id: str, category: str, *devices: str, grid_code: str = CELL) -> Case:
    evidence = tuple(Evidence(T0, device, f"{device} silent") for device in devices)
    return report(case_id, grid_code=grid_code, category=category, source=Source.SENSOR, at=T0, actor="rules",
                  evidence=evidence)


# --- grid cells ------------------------------------------------------------------------------------------------


def test_geojson_is_a_feature_collection_of_the_cells_with_codes_names_and_area(
    client: TestClient, viewer: dict[str, str]
) -> None:
    response = client.get("/api/v1/grids/geojson", headers=viewer)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    body = response.json()
    assert body["type"] == "FeatureCollection"
    assert len(body["features"]) == 72
    assert body["features"][0] == {
        "type": "Feature", "id": CELL,
        "geometry": {"type": "Polygon", "coordinates": [[[121.43, 31.195], [121.43105, 31.195],
                                                         [121.431045, 31.195918], [121.43, 31.1959],
                                                         [121.43, 31.195]]]},
        "properties": {"code": CELL, "name": "天平路街道宛南社区第1网格", "street_code": "310104003",
                       "street": "天平路街道", "community_code": COMMUNITY, "community": "宛南社区",
                       "area_m2": 10026.0},
    }


def test_a_community_token_gets_only_its_cells_as_geojson(client: TestClient, community: dict[str, str]) -> None:
    features = client.get("/api/v1/grids/geojson", headers=community).json()["features"]
    assert [f["id"] for f in features] == [f"{COMMUNITY}{n:03d}" for n in range(1, 13)]


@pytest.mark.parametrize(("prefix", "count"), [("310104003", 24), ("310104003002", 12), ("310104004", 0)])
def test_geojson_prefix_narrows_the_scope_and_never_widens_it(
    client: TestClient, tmp_path: Path, prefix: str, count: int
) -> None:
    street = bearer(mint(tmp_path, "viewer", "310104003"))
    features = client.get("/api/v1/grids/geojson", headers=street, params={"prefix": prefix}).json()["features"]
    assert len(features) == count
    assert all(f["id"].startswith("310104003") for f in features)


def test_a_malformed_prefix_is_422(client: TestClient, viewer: dict[str, str]) -> None:
    response = client.get("/api/v1/grids/geojson", headers=viewer, params={"prefix": "3101040"})
    assert response.status_code == 422
    assert "has 7 digits" in response.json()["detail"]


def test_hierarchy_nests_streets_communities_and_cells_with_their_names(
    client: TestClient, viewer: dict[str, str]
) -> None:
    body = client.get("/api/v1/grids/hierarchy", headers=viewer).json()

    assert body["city"] == "徐汇区演示网格 (Xuhui demo)"
    (district,) = body["districts"]
    assert (district["code"], district["name"]) == ("310104", body["city"])
    assert [(s["code"], s["name"], [c["code"] for c in s["communities"]]) for s in district["streets"]] == [
        ("310104003", "天平路街道", ["310104003001", "310104003002"]),
        ("310104004", "湖南路街道", ["310104004001", "310104004002"]),
        ("310104014", "徐家汇街道", ["310104014001", "310104014002"]),
    ]
    first = district["streets"][0]["communities"][0]
    assert first["name"] == "宛南社区"
    assert len(first["cells"]) == 12
    assert first["cells"][0] == {"code": CELL, "name": "天平路街道宛南社区第1网格"}


def test_a_community_token_gets_only_its_branch_of_the_hierarchy(
    client: TestClient, community: dict[str, str]
) -> None:
    (district,) = client.get("/api/v1/grids/hierarchy", headers=community).json()["districts"]
    (street,) = district["streets"]
    (only,) = street["communities"]
    assert only["code"] == COMMUNITY
    assert [cell["code"] for cell in only["cells"]] == [f"{COMMUNITY}{n:03d}" for n in range(1, 13)]


# --- devices ---------------------------------------------------------------------------------------------------


def test_devices_are_listed_in_id_order_with_their_registry_record(client: TestClient, viewer: dict[str, str]) -> None:
    items = client.get("/api/v1/devices", headers=viewer).json()["items"]

    assert len(items) == 204
    assert [item["id"] for item in items] == sorted(item["id"] for item in items)
    assert next(item for item in items if item["id"] == "manhole-0001") == {
        "id": "manhole-0001", "kind": "manhole", "grid_code": CELL, "lon": 121.430354, "lat": 31.195385,
        "enabled": True, "report_interval_s": 120, "battery_floor_v": 3.3, "component_id": "3101040102000001",
        "well_depth_cm": 180.0, "zone_area_m2": None, "last_seen": None, "online": None, "battery_v": None,
        "open_maintenance_cases": [],
    }


def test_a_community_token_lists_only_the_devices_in_its_community(
    client: TestClient, community: dict[str, str]
) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    expected = [record.device.id for record in list_devices(engine, grid_prefix=COMMUNITY)]

    items = client.get("/api/v1/devices", headers=community).json()["items"]

    assert [item["id"] for item in items] == expected
    assert OTHER_STREET_DEVICE not in expected


@pytest.mark.parametrize(("params", "first", "count"), [
    ({"kind": "rain", "grid": "310104003001"}, "rain-0001", 6),
    ({"grid": CELL}, "crowd-0016", 4),
    ({"grid": "310104004", "kind": "manhole"}, "manhole-0025", 38),
])
def test_devices_filter_by_kind_and_grid_prefix(
    client: TestClient, viewer: dict[str, str], params: dict[str, str], first: str, count: int
) -> None:
    items = client.get("/api/v1/devices", headers=viewer, params=params).json()["items"]
    assert (items[0]["id"], len(items)) == (first, count)


def test_devices_filter_by_enabled(client: TestClient, viewer: dict[str, str], device_admin: dict[str, str]) -> None:
    client.post("/api/v1/devices/rain-0001/disable", headers=device_admin)

    disabled = client.get("/api/v1/devices", headers=viewer, params={"enabled": "false"}).json()["items"]
    enabled = client.get("/api/v1/devices", headers=viewer, params={"enabled": "true"}).json()["items"]

    assert [item["id"] for item in disabled] == ["rain-0001"]
    assert len(enabled) == 203


@pytest.mark.parametrize(("params", "detail"), [
    ({"grid": "31010x"}, "`grid` must be a grid code prefix of up to 15 digits"),
    ({"kind": "lamp"}, "Input should be 'rain', 'crowd' or 'manhole'"),
    ({"enabled": "maybe"}, "Input should be a valid boolean"),
])
def test_bad_device_filters_are_422(
    client: TestClient, viewer: dict[str, str], params: dict[str, str], detail: str
) -> None:
    response = client.get("/api/v1/devices", headers=viewer, params=params)
    assert response.status_code == 422
    assert detail in str(response.json()["detail"])


def test_a_device_is_seen_when_its_newest_reading_was_received_with_its_newest_battery(
    client: TestClient, viewer: dict[str, str]
) -> None:
    now = now_ms()
    write(client, [reading("rain-0001", now - 70_000, 1, battery_v=3.9), reading("rain-0001", now - 10_000, 2)])

    device = client.get("/api/v1/devices/rain-0001", headers=viewer).json()

    assert (device["last_seen"], device["online"], device["battery_v"]) == (iso(now - 10_000), True, 3.9)


def test_a_device_silent_for_three_report_intervals_is_offline(client: TestClient, viewer: dict[str, str]) -> None:
    now = now_ms()
    write(client, [reading("rain-0001", now - 181_000, 1), reading("rain-0002", now - 170_000, 1)])  # every 60 s

    items = client.get("/api/v1/devices", headers=viewer, params={"kind": "rain", "grid": COMMUNITY}).json()["items"]

    assert [(item["id"], item["online"]) for item in items[:3]] == [
        ("rain-0001", False), ("rain-0002", True), ("rain-0003", None)]


def test_a_device_whose_newest_word_is_its_last_will_is_offline(client: TestClient, viewer: dict[str, str]) -> None:
    now = now_ms()
    write(client, [reading("rain-0001", now - 20_000, 1)],
          [StatusRow("rain-0001", now - 5_000, False, CELL, DeviceKind.RAIN)])

    device = client.get("/api/v1/devices/rain-0001", headers=viewer).json()

    assert (device["last_seen"], device["online"]) == (iso(now - 5_000), False)


def test_a_device_heard_after_its_last_will_is_online_again(client: TestClient, viewer: dict[str, str]) -> None:
    now = now_ms()
    write(client, [reading("rain-0001", now - 5_000, 1)],
          [StatusRow("rain-0001", now - 20_000, False, CELL, DeviceKind.RAIN)])

    device = client.get("/api/v1/devices/rain-0001", headers=viewer).json()

    assert (device["last_seen"], device["online"]) == (iso(now - 5_000), True)


def test_open_maintenance_cases_are_listed_for_the_devices_their_evidence_names(
    client: TestClient, viewer: dict[str, str]
) -> None:
    replaced = maintenance_case("m3", LOW_BATTERY, "manhole-0001")
    store_cases(
        client,
        maintenance_case("m1", DEVICE_OFFLINE, "manhole-0001", "rain-0001"),
        maintenance_case("m2", LOW_BATTERY, "manhole-0001"),
        replaced.void(T0 + timedelta(hours=1), "operator-7", reason="battery replaced"),
        maintenance_case("w1", "0406", "rain-0001"),  # 道路积水: not a maintenance case
    )

    items = client.get("/api/v1/devices", headers=viewer, params={"grid": CELL}).json()["items"]

    assert {item["id"]: item["open_maintenance_cases"] for item in items} == {
        "crowd-0016": [], "manhole-0001": ["m1", "m2"], "manhole-0120": [], "rain-0001": ["m1"]}


def test_maintenance_cases_outside_the_scope_are_not_shown(client: TestClient, community: dict[str, str]) -> None:
    store_cases(client, maintenance_case("far", DEVICE_OFFLINE, "rain-0001", grid_code="310104004001001"))
    device = client.get("/api/v1/devices/rain-0001", headers=community).json()
    assert device["open_maintenance_cases"] == []


@pytest.mark.parametrize(("table", "detail"), [
    ("devices", "device registry unavailable: database: disk I/O error"),
    ("telemetry_readings", "telemetry store unavailable: database: disk I/O error"),
    ("cases", "case database unavailable: database: disk I/O error"),
])
def test_a_database_that_cannot_answer_is_503_naming_what_is_unavailable(
    client: TestClient, viewer: dict[str, str], table: str, detail: str
) -> None:
    def refuse(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if f"FROM {table}" in statement:
            raise OperationalError(statement, None, Exception("disk I/O error"))

    engine = client.app.state.engine  # type: ignore[attr-defined]
    event.listen(engine, "before_cursor_execute", refuse)
    try:
        response = client.get("/api/v1/devices", headers=viewer)
    finally:
        event.remove(engine, "before_cursor_execute", refuse)

    assert (response.status_code, response.json()) == (503, {"detail": detail})


def test_a_device_outside_the_scope_is_404_like_an_unknown_one(
    client: TestClient, community: dict[str, str]
) -> None:
    outside = client.get(f"/api/v1/devices/{OTHER_STREET_DEVICE}", headers=community)
    unknown = client.get("/api/v1/devices/rain-9999", headers=community)

    assert (outside.status_code, outside.json()) == (404, {"detail": f"unknown device '{OTHER_STREET_DEVICE}'"})
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "unknown device 'rain-9999'"})


@pytest.mark.parametrize("action", ["enable", "disable"])
def test_a_viewer_may_not_enable_or_disable_a_device(client: TestClient, viewer: dict[str, str], action: str) -> None:
    response = client.post(f"/api/v1/devices/rain-0001/{action}", headers=viewer)
    assert (response.status_code, response.json()) == (
        403, {"detail": "role viewer may not do this (needs the 'registry' right)"})


def test_a_disabled_device_leaves_the_broker_password_file(client: TestClient, device_admin: dict[str, str]) -> None:
    response = client.post("/api/v1/devices/rain-0001/disable", headers=device_admin)

    assert response.status_code == 200
    assert response.json() == {"id": "rain-0001", "enabled": False, "changed": True,
                               "broker": "broker files rewritten: a running `gridhub up` applies them within a second"}
    passwords = read_password_file(auth_dir(client.app.state.settings) / PASSWORD_FILE)  # type: ignore[attr-defined]
    assert "rain-0001" not in passwords
    assert "rain-0002" in passwords


def test_an_enabled_device_is_back_in_the_broker_password_file(
    client: TestClient, device_admin: dict[str, str]
) -> None:
    client.post("/api/v1/devices/rain-0001/disable", headers=device_admin)
    response = client.post("/api/v1/devices/rain-0001/enable", headers=device_admin)

    assert response.json()["enabled"] is True
    passwords = read_password_file(auth_dir(client.app.state.settings) / PASSWORD_FILE)  # type: ignore[attr-defined]
    assert "rain-0001" in passwords


def test_enabling_an_enabled_device_changes_nothing(client: TestClient, device_admin: dict[str, str]) -> None:
    response = client.post("/api/v1/devices/rain-0001/enable", headers=device_admin)

    assert response.json() == {"id": "rain-0001", "enabled": True, "changed": False, "broker": "unchanged"}
    assert not (auth_dir(client.app.state.settings) / PASSWORD_FILE).exists()  # type: ignore[attr-defined]


def test_a_device_admin_cannot_disable_a_device_outside_its_scope(client: TestClient, tmp_path: Path) -> None:
    street_admin = bearer(mint(tmp_path, "device-admin", "310104003"))

    response = client.post(f"/api/v1/devices/{OTHER_STREET_DEVICE}/disable", headers=street_admin)

    assert response.status_code == 404
    engine = client.app.state.engine  # type: ignore[attr-defined]
    assert all(r.enabled for r in list_devices(engine) if r.device.id == OTHER_STREET_DEVICE)


# --- cameras ---------------------------------------------------------------------------------------------------


def put_snapshot(client: TestClient, camera_id: str, name: str, data: bytes, mtime_s: float) -> None:
    evidence = DirectoryEvidence(client.app.state.settings.evidence_dir)  # type: ignore[attr-defined]
    reference = evidence.put(f"{camera_folder(camera_id)}/{name}", data)
    os.utime(evidence.root / reference, (mtime_s, mtime_s))


def test_cameras_come_with_their_frame_and_zones(client: TestClient, viewer: dict[str, str]) -> None:
    items = client.get("/api/v1/cameras", headers=viewer).json()["items"]

    assert [item["id"] for item in items] == [
        "cam-hunan-02", "cam-tianping-01", "cam-tianping-site-04", "cam-xujiahui-site-03"]
    assert items[1] == {
        "id": "cam-tianping-01", "grid_code": "310104003001002", "fps": 5.0, "width": 640, "height": 360,
        "zones": [{"id": "sidewalk-north", "kind": "no_vending",
                   "polygon": [[40.0, 230.0], [600.0, 230.0], [630.0, 350.0], [10.0, 350.0]], "dwell_s": 60.0}],
        "latest_snapshot_url": None,
    }


def test_a_community_token_lists_only_its_cameras(client: TestClient, community: dict[str, str]) -> None:
    items = client.get("/api/v1/cameras", headers=community).json()["items"]
    assert [item["id"] for item in items] == ["cam-tianping-01"]


def test_the_newest_snapshot_is_linked_and_served_as_jpeg(client: TestClient, viewer: dict[str, str]) -> None:
    put_snapshot(client, "cam-tianping-01", "e1-start-1000.jpg", b"\xff\xd8older", 1_700_000_000)
    put_snapshot(client, "cam-tianping-01", "e1-end-9000.jpg", b"\xff\xd8newest", 1_700_000_060)

    (camera,) = client.get("/api/v1/cameras", headers=viewer, params={"grid": "310104003001002"}).json()["items"]
    response = client.get(camera["latest_snapshot_url"], headers=viewer)

    assert camera["latest_snapshot_url"] == "/api/v1/cameras/cam-tianping-01/snapshot"
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content == b"\xff\xd8newest"


def test_a_snapshot_still_being_written_is_not_served(client: TestClient, viewer: dict[str, str]) -> None:
    put_snapshot(client, "cam-tianping-01", "e1-start-1000.jpg", b"\xff\xd8whole", 1_700_000_000)
    put_snapshot(client, "cam-tianping-01", ".e1-end-9000.jpg.x1y2.tmp", b"\xff\xd8ha", 1_700_000_060)

    response = client.get("/api/v1/cameras/cam-tianping-01/snapshot", headers=viewer)

    assert response.content == b"\xff\xd8whole"


def test_a_camera_whose_only_snapshot_is_still_being_written_has_none_linked(
    client: TestClient, viewer: dict[str, str]
) -> None:
    put_snapshot(client, "cam-tianping-01", ".e1-end-9000.jpg.x1y2.tmp", b"\xff\xd8ha", 1_700_000_060)
    (camera,) = client.get("/api/v1/cameras", headers=viewer, params={"grid": "310104003001002"}).json()["items"]
    assert camera["latest_snapshot_url"] is None


def test_a_camera_without_snapshots_is_404(client: TestClient, viewer: dict[str, str]) -> None:
    response = client.get("/api/v1/cameras/cam-tianping-01/snapshot", headers=viewer)
    assert (response.status_code, response.json()) == (404, {"detail": "camera cam-tianping-01 has no snapshot yet"})


def test_a_snapshot_of_a_camera_outside_the_scope_is_404(client: TestClient, community: dict[str, str]) -> None:
    put_snapshot(client, "cam-hunan-02", "e1-start-1000.jpg", b"\xff\xd8", 1_700_000_000)
    response = client.get("/api/v1/cameras/cam-hunan-02/snapshot", headers=community)
    assert (response.status_code, response.json()) == (404, {"detail": "unknown camera 'cam-hunan-02'"})


@pytest.mark.parametrize("camera_id", ["..", "..%2F..%2Fsecret", "cam-tianping-01%2F..%2F..%2Fsecret", "%2E%2E"])
def test_a_traversal_looking_camera_id_is_404(
    client: TestClient, viewer: dict[str, str], tmp_path: Path, camera_id: str
) -> None:
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "a.jpg").write_bytes(b"\xff\xd8not evidence")
    put_snapshot(client, "cam-tianping-01", "e1-start-1000.jpg", b"\xff\xd8", 1_700_000_000)

    response = client.get(f"/api/v1/cameras/{camera_id}/snapshot", headers=viewer)

    assert response.status_code == 404
    assert b"not evidence" not in response.content


def test_detectors_keep_snapshots_in_the_folder_the_api_reads() -> None:
    zone = Zone("z", ZoneKind.NO_VENDING, ((0, 0), (10, 0), (10, 10)), 60.0)
    event = ZoneEvent("e1", Phase.START, zone, DetectionKind.STALL, 0.0, 1.5, 0.9, None)

    assert snapshot_name("cam 05/北门", event).startswith(camera_folder("cam 05/北门") + "/")
