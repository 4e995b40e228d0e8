"""The device registry in the database: seeding from the city, adding, listing, disabling and removing, secrets
stored only hashed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, select, text

from core.city import DEMO_CITY_DIR, load_city
from core.credentials import check_password, demo_secret
from core.settings import load_settings
from domain.city import City
from domain.registry import DeviceKind, Registry, RegistryError
from storage.db import connect
from storage.devices import (
    DeviceError,
    add_device,
    demo_credentials,
    devices_table,
    is_demo_city,
    list_devices,
    load_registry,
    new_device,
    remove_device,
    rotate_secret,
    secret_hashes,
    seed_devices,
    set_enabled,
)
from storage.schema import init_db

# A rain gauge's position inside cell 310104003001001 of the demo city (rain-0001 stands there).
INSIDE = {"lon": "121.430616", "lat": "31.195395"}
CELL = "310104003001001"


@pytest.fixture(scope="session")
def demo_city() -> City:
    return load_city(load_settings(environ={}))


@pytest.fixture
def city(demo_city: City) -> City:
    """The demo city with three of its devices (one of each kind), so that seeding hashes little."""
    picked = [next(d for d in demo_city.registry if d.kind is kind) for kind in DeviceKind]
    return dataclasses.replace(demo_city, registry=Registry(picked, demo_city.registry.cameras.values()))


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = connect(f"sqlite:///{tmp_path / 'gridhub.db'}")
    init_db(engine)
    return engine


def fields(**overrides: str) -> dict[str, str]:
    return {"id": "rain-9001", "kind": "rain", "report_interval_s": "60", **INSIDE, **overrides}


def stored_hash(engine: Engine, device_id: str) -> str | None:
    with engine.connect() as conn:
        value = conn.execute(select(devices_table.c.secret_hash).where(devices_table.c.id == device_id)).scalar()
    return value  # type: ignore[no-any-return]


def test_init_db_creates_the_devices_table(engine: Engine) -> None:
    assert "devices" in inspect(engine).get_table_names()


def test_seeding_the_demo_city_gives_every_device_its_demo_secret(engine: Engine, demo_city: City) -> None:
    seeded = seed_devices(engine, demo_city, demo=True)
    assert len(seeded) == len(demo_city.registry) == 204
    hashes = secret_hashes(engine)
    assert set(hashes) == set(seeded)
    assert all(check_password(demo_secret(device_id), hashes[device_id]) for device_id in ("rain-0001", seeded[-1]))


def test_seeding_another_city_registers_devices_without_secrets(engine: Engine, city: City) -> None:
    seed_devices(engine, city, demo=False)
    assert secret_hashes(engine) == {}
    assert [record.has_secret for record in list_devices(engine)] == [False, False, False]


def test_seeding_again_adds_only_new_devices_and_keeps_rotated_secrets(engine: Engine, city: City) -> None:
    seed_devices(engine, city, demo=True)
    first = next(iter(city.registry)).id
    secret = rotate_secret(engine, first)
    grown = [*city.registry, dataclasses.replace(next(iter(city.registry)), id="rain-9002")]
    assert seed_devices(engine, dataclasses.replace(city, registry=Registry(grown)), demo=True) == ["rain-9002"]
    assert check_password(secret, stored_hash(engine, first) or "")


def test_a_database_seeded_for_the_demo_city_refuses_another_city(engine: Engine, city: City) -> None:
    seed_devices(engine, city, demo=True)
    with pytest.raises(DeviceError, match="holds the demo city's devices, whose secrets are public"):
        seed_devices(engine, city, demo=False)


def test_a_database_seeded_for_a_city_refuses_the_demo_city(engine: Engine, city: City) -> None:
    seed_devices(engine, city, demo=False)
    with pytest.raises(DeviceError, match="holds a city's devices; give this city its own"):
        seed_devices(engine, city, demo=True)


def test_registry_holds_the_seeded_devices_unchanged_and_the_city_cameras(engine: Engine, city: City) -> None:
    seed_devices(engine, city, demo=True)
    registry = load_registry(engine, city)
    assert registry.devices == city.registry.devices
    assert registry.cameras == city.registry.cameras


def test_registry_includes_devices_added_later(engine: Engine, city: City) -> None:
    seed_devices(engine, city, demo=True)
    add_device(engine, new_device(city, fields()))
    assert "rain-9001" in load_registry(engine, city).devices


def test_a_new_device_is_placed_in_the_cell_containing_its_point(city: City) -> None:
    assert new_device(city, fields()).grid_code == CELL


def test_a_grid_code_must_contain_the_point(city: City) -> None:
    with pytest.raises(RegistryError, match="is in 310104003001001, not in its grid cell 310104003001002"):
        new_device(city, fields(grid_code="310104003001002"))


def test_a_point_outside_the_city_is_refused(city: City) -> None:
    with pytest.raises(DeviceError, match=r"\(0.0, 0.0\) is outside every grid cell"):
        new_device(city, fields(lon="0", lat="0"))


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"kind": "lamp"}, "kind 'lamp' must be rain, crowd or manhole"),
    ({"kind": "manhole", "well_depth_cm": "180"}, "component id '' must contain only digits"),
    ({"kind": "crowd"}, "zone_area_m2 '' is not a number"),
    ({"id": "rain 1"}, "must be 1-64 characters"),
    ({"report_interval_s": "0"}, "report_interval_s must be at least 1"),
])
def test_a_new_device_needs_valid_fields_for_its_kind(city: City, overrides: dict[str, str], reason: str) -> None:
    with pytest.raises(RegistryError, match=reason):
        new_device(city, fields(**overrides))


def test_a_manhole_sensor_keeps_its_component_and_depth(engine: Engine, city: City) -> None:
    device = new_device(city, fields(id="manhole-9001", kind="manhole", component_id="3101040103009999",
                                     well_depth_cm="180"))
    add_device(engine, device)
    assert load_registry(engine, city).devices["manhole-9001"] == device


def test_a_new_secret_is_stored_only_as_its_hash(engine: Engine, city: City) -> None:
    secret = add_device(engine, new_device(city, fields()))
    with engine.connect() as conn:
        row = conn.execute(select(devices_table).where(devices_table.c.id == "rain-9001")).mappings().one()
    assert all(secret not in str(value) for value in row.values())
    assert check_password(secret, row["secret_hash"])


def test_adding_an_existing_id_fails(engine: Engine, city: City) -> None:
    add_device(engine, new_device(city, fields()))
    with pytest.raises(DeviceError, match="device rain-9001 already exists"):
        add_device(engine, new_device(city, fields()))


def test_rotating_replaces_the_secret(engine: Engine, city: City) -> None:
    old = add_device(engine, new_device(city, fields()))
    new = rotate_secret(engine, "rain-9001")
    hashed = stored_hash(engine, "rain-9001") or ""
    assert check_password(new, hashed)
    assert not check_password(old, hashed)


def test_rotating_an_unknown_device_fails(engine: Engine) -> None:
    with pytest.raises(DeviceError, match="unknown device rain-4040"):
        rotate_secret(engine, "rain-4040")


def test_demo_credentials_are_the_demo_secret_until_rotated(engine: Engine, city: City) -> None:
    seed_devices(engine, city, demo=True)
    device_id = next(iter(city.registry)).id
    assert demo_credentials(engine, device_id) == demo_secret(device_id)
    rotate_secret(engine, device_id)
    with pytest.raises(DeviceError, match="no longer uses its demo secret"):
        demo_credentials(engine, device_id)


def test_demo_credentials_of_an_unknown_device_fail(engine: Engine) -> None:
    with pytest.raises(DeviceError, match="unknown device rain-4040"):
        demo_credentials(engine, "rain-4040")


def test_listing_filters_by_kind_and_grid_prefix(engine: Engine, city: City) -> None:
    seed_devices(engine, city, demo=False)
    add_device(engine, new_device(city, fields()))
    assert [r.device.id for r in list_devices(engine, kind=DeviceKind.RAIN)] == ["rain-0001", "rain-9001"]
    assert [r.device.id for r in list_devices(engine, grid_prefix=CELL)] == ["manhole-0001", "rain-0001", "rain-9001"]
    assert list_devices(engine, grid_prefix="310104999") == []
    assert [r.has_secret for r in list_devices(engine, kind=DeviceKind.RAIN)] == [False, True]


def test_the_demo_city_is_recognised_by_default_or_by_its_directory(tmp_path: Path) -> None:
    assert is_demo_city(load_settings(environ={}))
    assert is_demo_city(load_settings(overrides={"city.dir": DEMO_CITY_DIR}, environ={}))
    assert not is_demo_city(load_settings(overrides={"city.dir": tmp_path}, environ={}))


def test_a_devices_table_from_before_the_enabled_flag_gains_it_with_every_device_enabled(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:  # the devices table as GridHub created it before `enabled`
        conn.execute(text(
            "CREATE TABLE devices (id VARCHAR(64) PRIMARY KEY, kind VARCHAR(16) NOT NULL, grid_code VARCHAR(15) NOT "
            "NULL, lon FLOAT NOT NULL, lat FLOAT NOT NULL, report_interval_s INTEGER NOT NULL, battery_floor_v FLOAT, "
            "component_id VARCHAR(16), well_depth_cm FLOAT, zone_area_m2 FLOAT, secret_hash VARCHAR(256), "
            "created_at DATETIME NOT NULL, secret_set_at DATETIME)"))
        conn.execute(text("INSERT INTO devices VALUES ('rain-0001', 'rain', '310104003001001', 121.430616, 31.195395, "
                          "60, NULL, NULL, NULL, NULL, '$7$1$a$b', '2026-01-01 00:00:00', NULL)"))
    init_db(engine)
    init_db(engine)  # and a second start finds it in place
    assert [(record.device.id, record.enabled) for record in list_devices(engine)] == [("rain-0001", True)]
    assert secret_hashes(engine) == {"rain-0001": "$7$1$a$b"}


def test_a_new_device_is_enabled(engine: Engine, city: City) -> None:
    add_device(engine, new_device(city, fields()))
    assert [record.enabled for record in list_devices(engine)] == [True]


def test_a_disabled_device_keeps_its_record_and_secret_but_has_no_login(engine: Engine, city: City) -> None:
    seed_devices(engine, city, demo=True)
    assert set_enabled(engine, "rain-0001", False) is True
    assert "rain-0001" not in secret_hashes(engine)
    assert next(r for r in list_devices(engine) if r.device.id == "rain-0001").enabled is False
    assert "rain-0001" in load_registry(engine, city).devices


def test_an_enabled_device_logs_in_with_the_secret_it_had(engine: Engine, city: City) -> None:
    seed_devices(engine, city, demo=True)
    set_enabled(engine, "rain-0001", False)
    assert set_enabled(engine, "rain-0001", True) is True
    assert check_password(demo_secret("rain-0001"), secret_hashes(engine)["rain-0001"])


def test_setting_the_flag_it_already_has_changes_nothing(engine: Engine, city: City) -> None:
    seed_devices(engine, city, demo=True)
    assert set_enabled(engine, "rain-0001", True) is False


def test_disabling_an_unknown_device_fails(engine: Engine) -> None:
    with pytest.raises(DeviceError, match="unknown device rain-4040"):
        set_enabled(engine, "rain-4040", False)


def test_a_removed_device_is_forgotten_and_seeding_does_not_bring_it_back(engine: Engine, city: City) -> None:
    seed_devices(engine, city, demo=True)
    remove_device(engine, "rain-0001")
    assert seed_devices(engine, city, demo=True) == []
    assert "rain-0001" not in {record.device.id for record in list_devices(engine)}
    assert "rain-0001" not in secret_hashes(engine)


def test_a_removed_device_can_be_added_again(engine: Engine, city: City) -> None:
    seed_devices(engine, city, demo=True)
    remove_device(engine, "rain-0001")
    secret = add_device(engine, new_device(city, fields(id="rain-0001")))
    assert check_password(secret, secret_hashes(engine)["rain-0001"])


def test_removing_an_unknown_device_fails(engine: Engine) -> None:
    with pytest.raises(DeviceError, match="unknown device rain-4040"):
        remove_device(engine, "rain-4040")
