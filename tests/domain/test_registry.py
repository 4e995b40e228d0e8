"""The device and camera registry: CSV rows into devices, and placement checks (camera files: test_camera_files)."""

from __future__ import annotations

import pytest
from shapely.geometry import box

from domain.cells import CellIndex, GridCell
from domain.components import parse_component_id
from domain.gridcode import parse_grid_code
from domain.registry import (
    Camera,
    Device,
    DeviceKind,
    Registry,
    RegistryError,
    device_from_row,
)

WEST_CELL, EAST_CELL = "310104003001001", "310104003001002"


def rain_row(**overrides: str) -> dict[str, str]:
    row = {"id": "rain-0001", "kind": "rain", "grid_code": WEST_CELL, "lon": "121.4305", "lat": "31.2005",
           "report_interval_s": "60", "battery_floor_v": "3.4", "component_id": "", "well_depth_cm": "",
           "zone_area_m2": ""}
    return {**row, **overrides}


def manhole_row(**overrides: str) -> dict[str, str]:
    return rain_row(**{"id": "manhole-0001", "kind": "manhole", "report_interval_s": "120",
                       "component_id": "3101040103000012", "well_depth_cm": "180", **overrides})


def crowd_row(**overrides: str) -> dict[str, str]:
    return rain_row(**{"id": "crowd-0001", "kind": "crowd", "report_interval_s": "30", "battery_floor_v": "",
                       "zone_area_m2": "1200", **overrides})


def device(device_id: str = "rain-0001", grid_code: str = WEST_CELL, lon: float = 121.4305,
           lat: float = 31.2005) -> Device:
    return Device(device_id, DeviceKind.RAIN, grid_code, lon, lat, 60)


def camera(camera_id: str = "cam-01", grid_code: str = WEST_CELL) -> Camera:
    return Camera(camera_id, "sim://street?seed=1", grid_code, 5.0, ())


@pytest.fixture
def two_cells() -> CellIndex:
    """Two ~100 m cells side by side: WEST_CELL west of lon 121.431, EAST_CELL east of it."""
    return CellIndex([
        GridCell(parse_grid_code(WEST_CELL), "west", "天平路街道", "宛南社区", box(121.430, 31.200, 121.431, 31.201)),
        GridCell(parse_grid_code(EAST_CELL), "east", "天平路街道", "宛南社区", box(121.431, 31.200, 121.432, 31.201)),
    ])


# --- devices --------------------------------------------------------------------------------------------


def test_a_rain_gauge_row_becomes_a_device() -> None:
    assert device_from_row(rain_row()) == Device(
        id="rain-0001", kind=DeviceKind.RAIN, grid_code=WEST_CELL, lon=121.4305, lat=31.2005, report_interval_s=60,
        battery_floor_v=3.4,
    )


def test_a_manhole_sensor_row_carries_its_component_and_well_depth() -> None:
    sensor = device_from_row(manhole_row())

    assert sensor.kind is DeviceKind.MANHOLE
    assert sensor.component_id == parse_component_id("3101040103000012")
    assert sensor.well_depth_cm == 180.0
    assert sensor.zone_area_m2 is None


def test_a_crowd_counter_row_carries_its_zone_area_and_no_battery_floor() -> None:
    counter = device_from_row(crowd_row())

    assert counter.kind is DeviceKind.CROWD
    assert counter.zone_area_m2 == 1200.0
    assert counter.battery_floor_v is None
    assert (counter.component_id, counter.well_depth_cm) == (None, None)


def test_fields_of_other_kinds_are_ignored() -> None:
    gauge = device_from_row(rain_row(component_id="3101040103000012", well_depth_cm="180", zone_area_m2="1200"))

    assert (gauge.component_id, gauge.well_depth_cm, gauge.zone_area_m2) == (None, None, None)


def test_text_fields_are_trimmed() -> None:
    gauge = device_from_row(rain_row(id=" rain-0001 ", kind=" rain ", grid_code=f" {WEST_CELL} ", lon=" 121.4305 "))

    assert (gauge.id, gauge.kind, gauge.grid_code, gauge.lon) == ("rain-0001", DeviceKind.RAIN, WEST_CELL, 121.4305)


def test_device_kinds_are_the_mqtt_topic_segments() -> None:
    assert [k.value for k in DeviceKind] == ["rain", "crowd", "manhole"]


@pytest.mark.parametrize("device_id", ["", "   ", "rain 0001", "rain/0001", "雨量计-1", "x" * 65])
def test_a_device_id_must_be_1_to_64_safe_characters(device_id: str) -> None:
    with pytest.raises(RegistryError, match=r"must be 1-64 characters of \[A-Za-z0-9_-\]"):
        device_from_row(rain_row(id=device_id))


def test_a_64_character_device_id_is_accepted() -> None:
    assert device_from_row(rain_row(id="R_-9" * 16)).id == "R_-9" * 16


@pytest.mark.parametrize("kind", ["", "camera", "Rain"])
def test_the_kind_must_be_rain_crowd_or_manhole(kind: str) -> None:
    with pytest.raises(RegistryError, match=r"device rain-0001: kind .* must be rain, crowd or manhole"):
        device_from_row(rain_row(kind=kind))


@pytest.mark.parametrize(("component_id", "reason"), [("", "only digits"), ("3101040003000012", "all-zero class")])
def test_a_manhole_sensor_needs_a_valid_component_id(component_id: str, reason: str) -> None:
    with pytest.raises(RegistryError, match=f"device manhole-0001: component id .* {reason}"):
        device_from_row(manhole_row(component_id=component_id))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (manhole_row(well_depth_cm=""), "well_depth_cm '' is not a number"),
        (manhole_row(well_depth_cm="0.5"), "well_depth_cm must be at least 1"),
        (crowd_row(zone_area_m2=""), "zone_area_m2 '' is not a number"),
        (crowd_row(zone_area_m2="0"), "zone_area_m2 must be at least 1"),
        (rain_row(lon="east"), "lon 'east' is not a number"),
        (rain_row(lat=""), "lat '' is not a number"),
        (rain_row(report_interval_s="0"), "report_interval_s must be at least 1"),
        (rain_row(report_interval_s="sixty"), "report_interval_s 'sixty' is not a number"),
        (rain_row(battery_floor_v="low"), "battery_floor_v 'low' is not a number"),
    ],
)
def test_numbers_must_be_numbers_within_their_bounds(row: dict[str, str], message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        device_from_row(row)


@pytest.mark.parametrize("interval", ["inf", "nan"])
def test_a_non_finite_report_interval_is_a_registry_error(interval: str) -> None:
    with pytest.raises(RegistryError, match="report_interval_s"):
        device_from_row(rain_row(report_interval_s=interval))


# --- the registry ---------------------------------------------------------------------------------------


def test_the_registry_holds_devices_and_cameras_by_id() -> None:
    registry = Registry([device("rain-0001"), device("rain-0002")], [camera("cam-01")])

    assert len(registry) == 2
    assert [d.id for d in registry] == ["rain-0001", "rain-0002"]
    assert registry.devices["rain-0002"].id == "rain-0002"
    assert list(registry.cameras) == ["cam-01"]


def test_a_device_id_may_appear_only_once() -> None:
    with pytest.raises(RegistryError, match="device id rain-0001 appears twice"):
        Registry([device("rain-0001"), device("rain-0001")])


def test_a_camera_id_may_appear_only_once() -> None:
    with pytest.raises(RegistryError, match="camera id cam-01 appears twice"):
        Registry([], [camera("cam-01"), camera("cam-01")])


def test_devices_inside_their_own_cells_pass_the_check(two_cells: CellIndex) -> None:
    registry = Registry(
        [device("rain-0001", WEST_CELL, 121.4305, 31.2005), device("rain-0002", EAST_CELL, 121.4315, 31.2005)],
        [camera("cam-01", EAST_CELL)],
    )

    registry.check_against(two_cells)  # no error


def test_a_device_in_an_unknown_cell_fails_the_check(two_cells: CellIndex) -> None:
    registry = Registry([device("rain-0001", "310104003001003")])

    with pytest.raises(RegistryError, match="device rain-0001: unknown grid cell 310104003001003"):
        registry.check_against(two_cells)


def test_a_device_positioned_in_another_cell_fails_the_check(two_cells: CellIndex) -> None:
    registry = Registry([device("rain-0001", WEST_CELL, 121.4315, 31.2005)])

    with pytest.raises(RegistryError, match=f"is in {EAST_CELL}, not in its grid cell {WEST_CELL}"):
        registry.check_against(two_cells)


def test_a_device_positioned_outside_the_city_fails_the_check(two_cells: CellIndex) -> None:
    registry = Registry([device("rain-0001", WEST_CELL, 121.5, 31.2005)])

    with pytest.raises(RegistryError, match=f"is in outside every cell, not in its grid cell {WEST_CELL}"):
        registry.check_against(two_cells)


def test_a_camera_in_an_unknown_cell_fails_the_check(two_cells: CellIndex) -> None:
    registry = Registry([], [camera("cam-01", "310104003001003")])

    with pytest.raises(RegistryError, match="camera cam-01: unknown grid cell 310104003001003"):
        registry.check_against(two_cells)


def test_a_fractional_report_interval_is_refused_not_truncated() -> None:
    with pytest.raises(RegistryError, match=r"device rain-0001: report_interval_s must be a whole number, not 1\.5"):
        device_from_row(rain_row(report_interval_s="1.5"))
