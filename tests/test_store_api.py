"""The telemetry query API: windows of a device's or a grid cell's readings, behind the bearer tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import api.app
from api.app import create_app
from api.routes.telemetry import format_duration, parse_duration_ms
from core.settings import load_settings
from domain.registry import DeviceKind
from storage.devices import add_device, devices_table, new_device, seed_devices
from storage.telemetry.base import ReadingRow, SeriesRequest, StoreBatch, StoreUnavailable, Window
from storage.telemetry.sql import SqlTelemetryStore

GRID = "310104003001001"  # rain-0001, crowd-0016, manhole-0001 and manhole-0120 are here
T0 = 1_717_200_000_000  # 2024-06-01T00:00:00Z
NEW_DEVICE = {"id": "rain-9001", "kind": "rain", "grid_code": "", "lon": "121.430616", "lat": "31.195395",
              "report_interval_s": "60", "battery_floor_v": "3.4", "component_id": "", "well_depth_cm": "",
              "zone_area_m2": ""}


@pytest.fixture
def client(client: TestClient) -> TestClient:
    """The API over a database holding the demo city's devices, as `gridhub up` registers them before it starts."""
    seed_devices(client.app.state.engine, client.app.state.city, demo=True)  # type: ignore[attr-defined]
    return client


def write(client: TestClient, *rows: ReadingRow) -> None:
    SqlTelemetryStore(client.app.state.engine).write(  # type: ignore[attr-defined]
        StoreBatch("gridhub-store", "gridhub.telemetry", list(rows)))


def rain(device: str, offset_ms: int, mm: float, seq: int) -> ReadingRow:
    return ReadingRow(device, T0 + offset_ms, seq, GRID, DeviceKind.RAIN, T0 + offset_ms, False, rain_mm=mm)


def test_device_series_lists_window_starts_and_aggregates(client: TestClient, viewer: dict[str, str]) -> None:
    write(client, rain("rain-0001", 10_000, 0.5, 1), rain("rain-0001", 70_000, 1.0, 2),
          rain("rain-0001", 100_000, 0.25, 3))
    response = client.get("/api/v1/devices/rain-0001/telemetry", headers=viewer,
                          params={"from": "2024-06-01T08:00:00+08:00", "to": "2024-06-01T00:05:00Z", "every": "60s"})

    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("device_id", "kind", "grid_code", "from", "to", "every")} == {
        "device_id": "rain-0001", "kind": "rain", "grid_code": GRID,
        "from": "2024-06-01T00:00:00Z", "to": "2024-06-01T00:05:00Z", "every": "1m",
    }
    assert [(w["start"], w["readings"], w["rain_mm"], w["rain_gauges"]) for w in body["windows"]] == [
        ("2024-06-01T00:00:00Z", 1, 0.5, 1),
        ("2024-06-01T00:01:00Z", 2, 1.25, 1),
    ]
    assert body["windows"][0]["cover_open"] is None


def test_grid_series_takes_every_device_in_the_cell(client: TestClient, viewer: dict[str, str]) -> None:
    write(
        client,
        rain("rain-0001", 1_000, 2.0, 1),
        rain("rain-0099", 2_000, 4.0, 1),  # a second gauge: the cell's rain is the mean of the two totals
        ReadingRow("crowd-0016", T0 + 3_000, 1, GRID, DeviceKind.CROWD, T0, False, count=80),
        ReadingRow("manhole-0001", T0 + 4_000, 1, GRID, DeviceKind.MANHOLE, T0, False, tilt_deg=16.0,
                   cover_open=True, water_level_cm=20.0, battery_v=3.2),
    )
    response = client.get(f"/api/v1/grids/{GRID}/telemetry", headers=viewer,
                          params={"from": "2024-06-01T00:00:00Z", "to": "2024-06-01T01:00:00Z", "every": "1h"})

    assert response.status_code == 200
    assert response.json()["windows"] == [{
        "start": "2024-06-01T00:00:00Z", "readings": 4, "rain_mm": 3.0, "rain_gauges": 2,
        "count_mean": 80.0, "count_max": 80, "water_level_cm_mean": 20.0, "water_level_cm_max": 20.0,
        "tilt_deg_mean": 16.0, "tilt_deg_max": 16.0, "cover_open": True, "battery_v_min": 3.2,
    }]


def test_unknown_device_and_cell_are_404(client: TestClient, viewer: dict[str, str]) -> None:
    device = client.get("/api/v1/devices/rain-9999/telemetry", headers=viewer)
    cell = client.get("/api/v1/grids/310104003001999/telemetry", headers=viewer)
    assert (device.status_code, device.json()["detail"]) == (404, "unknown device 'rain-9999'")
    assert (cell.status_code, cell.json()["detail"]) == (404, "unknown grid cell '310104003001999'")


@pytest.mark.parametrize(("params", "detail"), [
    ({"from": "2024-06-01T00:00:00"}, "`from` needs a UTC offset"),
    ({"from": "2024-06-01T01:00:00Z", "to": "2024-06-01T01:00:00Z"}, "`to` must be after `from`"),
    ({"every": "5x"}, "`every` must be a duration from 1s to 366d such as 30s, 5m, 1h or 1d, not '5x'"),
    ({"every": "0s"}, "`every` must be a duration from 1s to 366d"),
    ({"every": "367d"}, "`every` must be a duration from 1s to 366d"),
    ({"every": "9999999999999999d"}, "`every` must be a duration from 1s to 366d"),
    ({"from": "1969-12-31T23:59:59Z"}, "`from` must be between 1970-01-01T00:00:00Z and 9999-01-01T00:00:00Z"),
    ({"to": "9999-12-31T23:59:59-23:59"}, "`to` must be between 1970-01-01T00:00:00Z and 9999-01-01T00:00:00Z"),
    ({"from": "2024-01-01T00:00:00Z", "to": "2024-06-01T00:00:00Z", "every": "1m"},
     "218880 windows of 1m between `from` and `to`; at most 10000 per request"),
])
def test_bad_ranges_and_durations_are_422_with_the_reason(
    client: TestClient, viewer: dict[str, str], params: dict[str, str], detail: str
) -> None:
    response = client.get("/api/v1/devices/rain-0001/telemetry", headers=viewer, params=params)
    assert response.status_code == 422
    assert detail in response.json()["detail"]


def test_unparseable_times_are_422(client: TestClient, viewer: dict[str, str]) -> None:
    response = client.get(f"/api/v1/grids/{GRID}/telemetry", headers=viewer, params={"to": "yesterday"})
    assert response.status_code == 422


def test_a_bearer_token_is_required(client: TestClient) -> None:
    assert client.get("/api/v1/devices/rain-0001/telemetry").status_code == 401
    assert client.get("/api/v1/devices/rain-9999/telemetry").status_code == 401  # not 404: no registry probing
    assert client.get(f"/api/v1/grids/{GRID}/telemetry").status_code == 401


def test_the_default_range_is_the_last_hour_in_minutes(client: TestClient, viewer: dict[str, str]) -> None:
    body = client.get("/api/v1/devices/rain-0001/telemetry", headers=viewer).json()
    assert body["every"] == "1m"
    assert body["windows"] == []


def test_a_device_added_while_the_api_runs_is_known_at_once(client: TestClient, viewer: dict[str, str]) -> None:
    assert client.get("/api/v1/devices/rain-9001/telemetry", headers=viewer).status_code == 404
    add_device(client.app.state.engine, new_device(client.app.state.city, NEW_DEVICE))  # type: ignore[attr-defined]

    response = client.get("/api/v1/devices/rain-9001/telemetry", headers=viewer)
    assert response.status_code == 200
    assert (response.json()["kind"], response.json()["grid_code"]) == ("rain", GRID)


def test_a_device_removed_while_the_api_runs_is_unknown_at_once(client: TestClient, viewer: dict[str, str]) -> None:
    assert client.get("/api/v1/devices/rain-0001/telemetry", headers=viewer).status_code == 200
    with client.app.state.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(devices_table.delete().where(devices_table.c.id == "rain-0001"))

    response = client.get("/api/v1/devices/rain-0001/telemetry", headers=viewer)
    assert (response.status_code, response.json()["detail"]) == (404, "unknown device 'rain-0001'")


def test_a_registry_that_does_not_answer_is_503(client: TestClient, viewer: dict[str, str], tmp_path: Path) -> None:
    client.app.state.engine.dispose()  # type: ignore[attr-defined]
    (tmp_path / "gridhub.db").unlink()
    (tmp_path / "gridhub.db").mkdir()  # a directory where the database file was: SQLite cannot open it
    response = client.get("/api/v1/devices/rain-0001/telemetry", headers=viewer)
    assert response.status_code == 503
    assert response.json()["detail"].endswith("unavailable: database: unable to open database file")


class _DownStore:
    keeps_positions = True

    def device_series(self, device_id: str, request: SeriesRequest) -> list[Window]:
        raise StoreUnavailable("database: connection refused")


def test_a_store_that_does_not_answer_is_503(client: TestClient, viewer: dict[str, str]) -> None:
    client.app.state.telemetry_store = _DownStore()  # type: ignore[attr-defined]
    response = client.get("/api/v1/devices/rain-0001/telemetry", headers=viewer)
    assert response.status_code == 503
    assert response.json()["detail"] == "telemetry store unavailable: database: connection refused"


class _ClosableStore:
    closed = False

    def close(self) -> None:
        self.closed = True


def test_the_api_closes_its_telemetry_store_when_it_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _ClosableStore()
    monkeypatch.setattr(api.app, "open_store", lambda _settings, _engine: store)
    with TestClient(create_app(load_settings(overrides={"state_dir": tmp_path}, environ={}))) as client:
        assert client.app.state.telemetry_store is store  # type: ignore[attr-defined]
        assert not store.closed
    assert store.closed


@pytest.mark.parametrize(("text", "ms", "normal"), [("30s", 30_000, "30s"), ("90m", 5_400_000, "1h30m"),
                                                     ("1d", 86_400_000, "1d"), ("1h30m", 5_400_000, "1h30m")])
def test_durations_read_and_write_back(text: str, ms: int, normal: str) -> None:
    assert parse_duration_ms(text) == ms
    assert format_duration(ms) == normal


@pytest.mark.parametrize("text", ["", "5", "m", "1.5h", "5 m", "-1m", "1w"])
def test_other_duration_spellings_are_not_durations(text: str) -> None:
    assert parse_duration_ms(text) is None


def test_the_alarm_thresholds_are_the_configured_ones(tmp_path: Path, viewer: dict[str, str]) -> None:
    settings = load_settings(overrides={"state_dir": tmp_path, "streams.rain_red_3h_mm": 120.0,
                                        "streams.crowd_warning_per_m2": 1.5}, environ={})
    with TestClient(create_app(settings)) as client:
        levels = client.get("/api/v1/thresholds", headers=viewer).json()

    assert levels["rain"] == {"short_heavy_1h_mm": 20.0, "blue_12h_mm": 50.0, "yellow_6h_mm": 50.0,
                              "orange_3h_mm": 50.0, "red_3h_mm": 120.0}
    assert (levels["crowd_warning_per_m2"], levels["crowd_urgent_per_m2"]) == (1.5, 4.0)
    assert (levels["manhole_water_margin_cm"], levels["manhole_tilt_deg"]) == (30.0, 15.0)
