"""`gridhub devices`: add, list, rotate-secret, disable, enable, remove and credentials, and the broker files each
change rewrites."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from core.city import DEMO_CITY_DIR
from core.credentials import check_password, demo_secret, password_hash
from gridhub.cli import cli
from storage.broker_files import read_password_file, render_password_file

INSIDE = ["--lon", "121.430616", "--lat", "31.195395"]  # in cell 310104003001001, next to rain-0001
CELL = "310104003001001"


@pytest.fixture(scope="module")
def seeded_demo_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory whose database holds the demo city's devices: seeding hashes 204 secrets, once."""
    state = tmp_path_factory.mktemp("demo-state")
    assert run(state, "devices", "list").exit_code == 0
    return state


@pytest.fixture
def state(tmp_path: Path, seeded_demo_state: Path) -> Path:
    shutil.copytree(seeded_demo_state, tmp_path / "state")
    return tmp_path / "state"


@pytest.fixture
def other_city(tmp_path: Path) -> Path:
    """A city of our own (the demo city's files, its first devices), so its devices get no secrets."""
    city = tmp_path / "city"
    shutil.copytree(DEMO_CITY_DIR, city)
    with (DEMO_CITY_DIR / "devices.csv").open(encoding="utf-8") as file:
        rows = list(csv.DictReader(file))[:3]
    with (city / "devices.csv").open("w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return city


def run(state: Path, *args: str, env: Mapping[str, str | None] | None = None) -> Result:
    environment: dict[str, str | None] = {"GRIDHUB_STATE_DIR": str(state), "GRIDHUB_CONFIG": None,
                                          "GRIDHUB_CITY__DIR": None, "GRIDHUB_MQTT__PASSWORD": None}
    return CliRunner().invoke(cli, list(args), env={**environment, **(env or {})})


def listed(state: Path, *args: str, env: Mapping[str, str | None] | None = None) -> list[dict[str, Any]]:
    result = run(state, "devices", "list", "--json", *args, env=env)
    assert result.exit_code == 0, result.output
    devices: list[dict[str, Any]] = orjson.loads(result.stdout)
    return devices


def printed_secret(result: Result) -> str:
    return next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("secret:"))


def failed_with(result: Result, message: str) -> bool:
    """Non-zero exit and exactly one line on stderr, containing `message`."""
    return result.exit_code != 0 and result.stderr.count("\n") == 1 and message in result.stderr


def test_devices_is_a_gridhub_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert "  devices " in result.output


def test_add_prints_the_secret_once_and_registers_the_device(state: Path) -> None:
    result = run(state, "devices", "add", "--id", "rain-9001", "--kind", "rain", *INSIDE)
    assert result.exit_code == 0, result.output
    assert f"added rain-9001 (rain) in grid cell {CELL}" in result.stdout
    assert "shown once" in result.stdout
    secret = printed_secret(result)
    assert check_password(secret, read_password_file(state / "mqtt" / "passwd")["rain-9001"])
    [device] = [d for d in listed(state) if d["id"] == "rain-9001"]
    assert device["grid_code"] == CELL
    assert device["has_secret"] is True
    assert secret not in orjson.dumps(listed(state)).decode()


def test_add_takes_every_field_of_a_manhole_sensor(state: Path) -> None:
    result = run(state, "devices", "add", "--id", "manhole-9001", "--kind", "manhole", *INSIDE,
                 "--grid-code", CELL, "--report-interval", "120", "--component-id", "3101040103009999",
                 "--well-depth-cm", "180", "--battery-floor-v", "3.3")
    assert result.exit_code == 0, result.output
    [device] = listed(state, "--grid-prefix", CELL, "--kind", "manhole")[-1:]
    assert device == {**device, "id": "manhole-9001", "kind": "manhole", "report_interval_s": 120,
                      "component_id": "3101040103009999", "well_depth_cm": 180.0, "battery_floor_v": 3.3,
                      "zone_area_m2": None}


@pytest.mark.parametrize(("args", "message"), [
    (["--id", "rain-0001", "--kind", "rain", *INSIDE], "device rain-0001 already exists"),
    (["--id", "rain-9001", "--kind", "lamp", *INSIDE], "kind 'lamp' must be rain, crowd or manhole"),
    (["--id", "rain-9001", "--kind", "rain", "--lon", "0", "--lat", "0"], "is outside every grid cell"),
    (["--id", "rain-9001", "--kind", "rain", *INSIDE, "--grid-code", "310104003001002"],
     f"is in {CELL}, not in its grid cell 310104003001002"),
    (["--id", "rain-9001", "--kind", "rain", *INSIDE, "--grid-code", "310104999999999"],
     "unknown grid cell 310104999999999"),
    (["--id", "manhole-9001", "--kind", "manhole", *INSIDE], "component id '' must contain only digits"),
    (["--id", "rain-9001", "--kind", "rain", "--lon", "east", "--lat", "31.2"], "lon 'east' is not a number"),
    (["--id", "gridhub-gateway", "--kind", "rain", *INSIDE], "are reserved for its gateways' client ids"),
    (["--id", "gridhub-gateway-2", "--kind", "rain", *INSIDE], "are reserved for its gateways' client ids"),
])
def test_add_explains_a_refusal_in_one_line(state: Path, args: list[str], message: str) -> None:
    assert failed_with(run(state, "devices", "add", *args), message)


def test_list_json_gives_each_device_with_its_cell(state: Path) -> None:
    devices = listed(state)
    assert len(devices) == 204
    assert {"id", "kind", "grid_code", "lon", "lat", "report_interval_s", "has_secret", "enabled"} <= set(devices[0])
    assert devices[0]["id"] == "crowd-0001"


def test_list_filters_by_kind_and_grid_prefix(state: Path) -> None:
    assert {d["kind"] for d in listed(state, "--kind", "rain")} == {"rain"}
    under = listed(state, "--grid-prefix", "310104003")
    assert under and all(d["grid_code"].startswith("310104003") for d in under)
    assert [d["id"] for d in listed(state, "--kind", "rain", "--grid-prefix", CELL)] == ["rain-0001"]


@pytest.mark.parametrize(("args", "message"), [
    (["--kind", "lamp"], "kind 'lamp' must be rain, crowd or manhole"),
    (["--grid-prefix", "3101x"], "must contain only digits"),
    (["--grid-prefix", "3101040"], "has 7 digits"),
])
def test_list_explains_a_bad_filter_in_one_line(state: Path, args: list[str], message: str) -> None:
    assert failed_with(run(state, "devices", "list", *args), message)


def test_list_prints_a_table_by_default(state: Path) -> None:
    result = run(state, "devices", "list", "--kind", "rain", "--grid-prefix", CELL)
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].split()[-2:] == ["secret", "enabled"]
    assert result.stdout.splitlines()[1].split()[:3] == ["rain-0001", "rain", CELL]
    assert result.stdout.splitlines()[1].split()[-2:] == ["yes", "yes"]
    assert result.stdout.splitlines()[-1] == "1 device(s)"


def test_credentials_print_the_demo_username_and_password(state: Path) -> None:
    result = run(state, "devices", "credentials", "rain-0001")
    assert result.exit_code == 0
    assert result.stdout == f"rain-0001 {demo_secret('rain-0001')}\n"


def test_credentials_of_an_unknown_device_fail(state: Path) -> None:
    assert failed_with(run(state, "devices", "credentials", "rain-4040"), "unknown device rain-4040")


def test_rotate_secret_prints_a_new_secret_that_replaces_the_demo_one(state: Path) -> None:
    result = run(state, "devices", "rotate-secret", "rain-0001")
    assert result.exit_code == 0, result.output
    assert "shown once" in result.stdout
    hashed = read_password_file(state / "mqtt" / "passwd")["rain-0001"]
    assert check_password(printed_secret(result), hashed)
    assert not check_password(demo_secret("rain-0001"), hashed)
    assert failed_with(run(state, "devices", "credentials", "rain-0001"), "no longer uses its demo secret")


def test_rotate_secret_of_an_unknown_device_fails(state: Path) -> None:
    assert failed_with(run(state, "devices", "rotate-secret", "rain-4040"), "unknown device rain-4040")


def test_disable_keeps_the_device_but_takes_it_out_of_the_password_file(state: Path) -> None:
    result = run(state, "devices", "disable", "rain-0001")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "rain-0001 disabled: it can no longer log in"
    assert "rain-0001" not in read_password_file(state / "mqtt" / "passwd")
    assert next(d for d in listed(state) if d["id"] == "rain-0001")["enabled"] is False


def test_enable_lets_the_device_back_in_with_its_secret(state: Path) -> None:
    assert run(state, "devices", "disable", "rain-0001").exit_code == 0
    result = run(state, "devices", "enable", "rain-0001")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "rain-0001 enabled: it may log in with its secret"
    assert check_password(demo_secret("rain-0001"), read_password_file(state / "mqtt" / "passwd")["rain-0001"])
    assert next(d for d in listed(state) if d["id"] == "rain-0001")["enabled"] is True


def test_enabling_an_enabled_device_says_so_and_changes_nothing(state: Path) -> None:
    passwd = state / "mqtt" / "passwd"
    before = passwd.stat().st_ino
    result = run(state, "devices", "enable", "rain-0001")
    assert result.exit_code == 0
    assert result.stdout == "rain-0001 was already enabled\n"
    assert passwd.stat().st_ino == before


def test_remove_deletes_the_device_and_its_password_entry(state: Path) -> None:
    result = run(state, "devices", "remove", "rain-0001")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "removed rain-0001: it can no longer log in"
    assert "rain-0001" not in read_password_file(state / "mqtt" / "passwd")
    assert "rain-0001" not in {d["id"] for d in listed(state)}


@pytest.mark.parametrize("command", ["disable", "enable", "remove"])
def test_lifecycle_commands_on_an_unknown_device_fail(state: Path, command: str) -> None:
    assert failed_with(run(state, "devices", command, "rain-4040"), "unknown device rain-4040")


def test_changes_keep_the_gateway_account_in_the_hub_password_file(state: Path) -> None:
    hub_passwd = state / "mqtt" / "hub-passwd"
    gateway_hash = password_hash("set-by-gridhub-up")
    hub_passwd.write_text(render_password_file({"gridhub-gateway": gateway_hash}))
    assert run(state, "devices", "rotate-secret", "rain-0002").exit_code == 0
    assert read_password_file(hub_passwd) == {"gridhub-gateway": gateway_hash}
    assert "gridhub-gateway" not in read_password_file(state / "mqtt" / "passwd")


def test_a_configured_gateway_password_is_written_to_the_hub_password_file(state: Path) -> None:
    result = run(state, "devices", "rotate-secret", "rain-0002", env={"GRIDHUB_MQTT__PASSWORD": "from-env"})
    assert result.exit_code == 0
    assert check_password("from-env", read_password_file(state / "mqtt" / "hub-passwd")["gridhub-gateway"])


def test_a_gateway_hash_that_matches_the_configured_password_is_kept(state: Path) -> None:
    # A broker may end the sessions of an account whose hash changed, even for the same secret.
    hub_passwd = state / "mqtt" / "hub-passwd"
    gateway_hash = password_hash("from-env")
    hub_passwd.write_text(render_password_file({"gridhub-gateway": gateway_hash}))
    result = run(state, "devices", "rotate-secret", "rain-0002", env={"GRIDHUB_MQTT__PASSWORD": "from-env"})
    assert result.exit_code == 0
    assert read_password_file(hub_passwd) == {"gridhub-gateway": gateway_hash}


def test_another_citys_devices_have_no_secret_until_rotated(tmp_path: Path, other_city: Path) -> None:
    env = {"GRIDHUB_CITY__DIR": str(other_city)}
    assert {d["id"]: d["has_secret"] for d in listed(tmp_path, env=env)} == {
        "rain-0001": False, "rain-0002": False, "rain-0003": False}
    result = run(tmp_path, "devices", "rotate-secret", "rain-0001", env=env)
    assert result.exit_code == 0
    assert check_password(printed_secret(result), read_password_file(tmp_path / "mqtt" / "passwd")["rain-0001"])
    assert {d["id"]: d["has_secret"] for d in listed(tmp_path, env=env)} == {
        "rain-0001": True, "rain-0002": False, "rain-0003": False}


def test_credentials_are_not_retrievable_for_another_city(tmp_path: Path, other_city: Path) -> None:
    result = run(tmp_path, "devices", "credentials", "rain-0001", env={"GRIDHUB_CITY__DIR": str(other_city)})
    assert failed_with(result, "cannot be shown again; run `gridhub devices rotate-secret rain-0001`")


def test_switching_a_demo_database_to_another_city_is_refused(state: Path, other_city: Path) -> None:
    result = run(state, "devices", "list", env={"GRIDHUB_CITY__DIR": str(other_city)})
    assert result.exit_code == 2
    assert "holds the demo city's devices, whose secrets are public" in result.stderr


def test_a_broken_city_is_a_config_error(tmp_path: Path, other_city: Path) -> None:
    (other_city / "cells.geojson").unlink()
    result = run(tmp_path, "devices", "list", env={"GRIDHUB_CITY__DIR": str(other_city)})
    assert result.exit_code == 2
    assert "missing city file(s): cells.geojson" in result.stderr


def test_broker_files_writes_the_device_and_hub_files_and_conf_with_the_gateway_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDHUB_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("GRIDHUB_MQTT__HOST", "mqtt.example.internal")
    monkeypatch.setenv("GRIDHUB_MQTT__PASSWORD", "gateway-secret")
    result = CliRunner().invoke(cli, ["devices", "broker-files"])
    assert result.exit_code == 0, result.output
    assert "reload Mosquitto (SIGHUP)" in result.output
    assert len(read_password_file(tmp_path / "mqtt" / "passwd")) == 204  # the demo devices
    assert check_password("gateway-secret", read_password_file(tmp_path / "mqtt" / "hub-passwd")["gridhub-gateway"])
    for name in ("acl", "hub-acl", "mosquitto.conf"):
        assert (tmp_path / "mqtt" / name).exists()
