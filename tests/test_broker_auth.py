"""Mosquitto's password and ACL files written from the registry, the configuration that names them, and the ACL
read back the way Mosquitto reads it."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.city import load_city
from core.credentials import check_password, password_hash
from core.settings import MqttSettings, load_settings
from domain.city import City
from domain.registry import Registry
from storage.broker_files import (
    Access,
    Acl,
    BrokerAuthError,
    auth_dir,
    configured_service_accounts,
    current_service_accounts,
    mosquitto_conf,
    production_mosquitto_conf,
    read_acl_file,
    read_password_file,
    render_device_acl,
    render_hub_acl,
    render_password_file,
    topic_matches,
    write_broker_files,
)
from storage.db import connect
from storage.devices import add_device, new_device, secret_hashes, seed_devices, set_enabled
from storage.schema import init_db

GATEWAY = "gridhub-gateway"
GATEWAY_HASH = password_hash("gateway-secret")
WRITE, READ = Access.WRITE, Access.READ


@pytest.fixture(scope="module")
def city() -> City:
    demo = load_city(load_settings(environ={}))
    return dataclasses.replace(demo, registry=Registry(list(demo.registry)[:3]))


@pytest.fixture
def engine(tmp_path: Path, city: City) -> Engine:
    engine = connect(f"sqlite:///{tmp_path / 'gridhub.db'}")
    init_db(engine)
    seed_devices(engine, city, demo=True)
    return engine


@pytest.fixture(scope="module")
def device_acl() -> Acl:
    return Acl.parse(render_device_acl())


@pytest.fixture(scope="module")
def hub_acl() -> Acl:
    return Acl.parse(render_hub_acl([GATEWAY]))


def test_the_device_password_file_holds_every_device_with_a_secret_and_nothing_else(
        engine: Engine, tmp_path: Path) -> None:
    files = write_broker_files(engine, tmp_path / "mqtt", {GATEWAY: GATEWAY_HASH})
    assert read_password_file(files.password_file) == secret_hashes(engine)
    assert len(secret_hashes(engine)) == 3


def test_the_hub_password_file_holds_the_service_accounts_and_nothing_else(engine: Engine, tmp_path: Path) -> None:
    files = write_broker_files(engine, tmp_path / "mqtt", {GATEWAY: GATEWAY_HASH})
    accounts = read_password_file(files.hub_password_file)
    assert accounts == {GATEWAY: GATEWAY_HASH}
    assert check_password("gateway-secret", accounts[GATEWAY])


def test_a_disabled_device_is_left_out_of_the_password_file(engine: Engine, tmp_path: Path) -> None:
    disabled = sorted(secret_hashes(engine))[0]
    set_enabled(engine, disabled, False)
    files = write_broker_files(engine, tmp_path / "mqtt", {GATEWAY: GATEWAY_HASH})
    assert disabled not in read_password_file(files.password_file)
    assert len(read_password_file(files.password_file)) == 2


def test_devices_without_a_secret_are_left_out(tmp_path: Path, city: City) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'other.db'}")
    init_db(engine)
    seed_devices(engine, city, demo=False)
    files = write_broker_files(engine, tmp_path / "mqtt", {})
    assert read_password_file(files.password_file) == {}


def test_the_files_are_group_readable_only_and_no_temporary_file_is_left(engine: Engine, tmp_path: Path) -> None:
    files = write_broker_files(engine, tmp_path / "mqtt", {GATEWAY: GATEWAY_HASH})
    write_broker_files(engine, tmp_path / "mqtt", {GATEWAY: GATEWAY_HASH})
    for path in (files.password_file, files.acl_file, files.hub_password_file, files.hub_acl_file, files.conf_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in (tmp_path / "mqtt").iterdir()) == [
        ".lock", "acl", "hub-acl", "hub-passwd", "mosquitto.conf", "passwd"]


def listener_sections(conf: str) -> list[str]:
    """The text of each `listener` section of a mosquitto.conf, up to the next blank line."""
    return [section.split("\n\n")[0] for section in conf.split("\nlistener ")[1:]]


def test_the_generated_mosquitto_conf_keeps_devices_and_service_accounts_on_listeners_of_their_own(
        engine: Engine, tmp_path: Path) -> None:
    files = write_broker_files(engine, tmp_path / "mqtt", {})
    conf = files.conf_file.read_text(encoding="utf-8")
    assert conf.index("per_listener_settings true\n") < conf.index("\nlistener ")
    devices, hub = listener_sections(conf)
    assert devices.splitlines() == ["1883", "allow_anonymous false", "use_username_as_clientid true",
                                    f"password_file {files.password_file}", f"acl_file {files.acl_file}"]
    assert hub.splitlines() == ["1884 127.0.0.1", "allow_anonymous false", f"password_file {files.hub_password_file}",
                                f"acl_file {files.hub_acl_file}"]


def test_the_generated_mosquitto_conf_takes_ports_and_limits_from_the_settings(engine: Engine, tmp_path: Path) -> None:
    mqtt = MqttSettings(port=8883, hub_port=8884, hub_bind="10.0.0.1", max_packet_bytes=16384,
                        max_inflight_messages=100, max_queued_messages=2000, max_queued_bytes=4096)
    files = write_broker_files(engine, tmp_path / "mqtt", {}, mqtt)
    conf = files.conf_file.read_text(encoding="utf-8")
    devices, hub = listener_sections(conf)
    assert (devices.splitlines()[0], hub.splitlines()[0]) == ("8883", "8884 10.0.0.1")
    for line in ("max_packet_size 16384", "max_inflight_messages 100", "max_queued_messages 2000",
                 "max_queued_bytes 4096", "persistence true"):
        assert f"\n{line}\n" in conf, line


def test_the_default_limits_are_the_settings_defaults(tmp_path: Path) -> None:
    conf = production_mosquitto_conf(tmp_path, MqttSettings())
    for line in ("max_packet_size 8192", "max_inflight_messages 5000", "max_queued_messages 1000000",
                 "max_queued_bytes 536870912"):
        assert f"\n{line}\n" in conf, line


def test_a_service_account_may_not_take_a_device_name(engine: Engine, tmp_path: Path) -> None:
    device_id = next(iter(secret_hashes(engine)))
    with pytest.raises(BrokerAuthError, match=f"registered device\\(s\\) {device_id} have a name that begins"):
        write_broker_files(engine, tmp_path / "mqtt", {device_id: GATEWAY_HASH})


def test_a_service_account_may_not_take_the_name_of_a_device_without_a_secret(tmp_path: Path, city: City) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'other.db'}")
    init_db(engine)
    seed_devices(engine, city, demo=False)
    device_id = next(iter(city.registry)).id
    with pytest.raises(BrokerAuthError, match=f"registered device\\(s\\) {device_id} have a name that begins"):
        write_broker_files(engine, tmp_path / "mqtt", {device_id: GATEWAY_HASH})


def test_no_device_may_have_a_name_that_a_gateways_client_id_could_have(
        engine: Engine, city: City, tmp_path: Path) -> None:
    # Gateways log in as gridhub-gateway with client ids gridhub-gateway-1, -2, ...; a device's client id is its name.
    add_device(engine, new_device(city, {"id": "gridhub-gateway-7", "kind": "rain", "lon": "121.430616",
                                         "lat": "31.195395", "report_interval_s": "60"}))
    with pytest.raises(BrokerAuthError, match="gridhub-gateway-7 have a name that begins with a service account's"):
        write_broker_files(engine, tmp_path / "mqtt", {GATEWAY: GATEWAY_HASH})


@pytest.mark.parametrize(("username", "hashed", "reason"), [
    ("gate way", GATEWAY_HASH, "a username is 1-64 characters"),
    ("gate:way", GATEWAY_HASH, "a username is 1-64 characters"),
    ("gateway+", GATEWAY_HASH, "a username is 1-64 characters"),
    (GATEWAY, "plain-password", "must be a \\$7\\$ hash"),
    (GATEWAY, GATEWAY_HASH + "\nintruder:" + GATEWAY_HASH, "must be a \\$7\\$ hash"),
])
def test_service_accounts_are_checked_before_anything_is_written(
        engine: Engine, tmp_path: Path, username: str, hashed: str, reason: str) -> None:
    with pytest.raises(BrokerAuthError, match=reason):
        write_broker_files(engine, tmp_path / "mqtt", {username: hashed})
    assert not (tmp_path / "mqtt").exists()


def test_the_service_accounts_in_place_are_those_of_the_hub_password_file(engine: Engine, tmp_path: Path) -> None:
    write_broker_files(engine, tmp_path / "mqtt", {GATEWAY: GATEWAY_HASH})
    assert current_service_accounts(engine, tmp_path / "mqtt") == {GATEWAY: GATEWAY_HASH}
    assert current_service_accounts(engine, tmp_path / "nowhere") == {}


def test_the_service_accounts_of_an_earlier_single_password_file_are_those_that_are_not_devices(
        engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text(render_password_file({**secret_hashes(engine), GATEWAY: GATEWAY_HASH}),
                                     encoding="utf-8")
    assert current_service_accounts(engine, tmp_path) == {GATEWAY: GATEWAY_HASH}


def test_the_configured_gateway_account_comes_from_the_password_setting(tmp_path: Path) -> None:
    settings = load_settings(environ={"GRIDHUB_MQTT__PASSWORD": "gateway-secret"})
    accounts = configured_service_accounts(settings)
    assert list(accounts) == [GATEWAY]
    assert check_password("gateway-secret", accounts[GATEWAY])
    assert configured_service_accounts(load_settings(environ={})) == {}


def test_the_auth_dir_defaults_to_mqtt_in_the_state_dir(tmp_path: Path) -> None:
    assert auth_dir(load_settings(overrides={"state_dir": tmp_path}, environ={})) == tmp_path / "mqtt"
    elsewhere = load_settings(overrides={"state_dir": tmp_path, "mqtt.auth_dir": tmp_path / "auth"}, environ={})
    assert auth_dir(elsewhere) == tmp_path / "auth"


def test_password_file_lines_are_sorted_and_read_back() -> None:
    text = render_password_file({"b": GATEWAY_HASH, "a": GATEWAY_HASH})
    assert [line.split(":")[0] for line in text.splitlines() if not line.startswith("#")] == ["a", "b"]


def test_a_malformed_password_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("# comment\nrain-0001\n", encoding="utf-8")
    with pytest.raises(BrokerAuthError, match=r"passwd:2: expected username:hash"):
        read_password_file(path)


@pytest.mark.parametrize("topic", ["gridhub/v1/rain/rain-0001/telemetry", "gridhub/v1/rain/rain-0001/status",
                                   "gridhub/v1/crowd/rain-0001/telemetry"])
def test_a_device_may_publish_its_own_telemetry_and_status(device_acl: Acl, topic: str) -> None:
    assert device_acl.allows("rain-0001", "client", topic, WRITE)


@pytest.mark.parametrize("topic", ["gridhub/v1/rain/rain-0002/telemetry", "gridhub/v1/rain/rain-0001/commands",
                                   "gridhub/v1/rain/rain-0001/telemetry/x", "other/rain-0001/telemetry",
                                   "gridhub/v1/rain/rain-00011/telemetry"])
def test_a_device_may_publish_nothing_else(device_acl: Acl, topic: str) -> None:
    assert not device_acl.allows("rain-0001", "client", topic, WRITE)


def test_a_device_reads_nothing_not_even_its_own_topics(device_acl: Acl) -> None:
    assert not device_acl.allows("rain-0001", "client", "gridhub/v1/rain/rain-0001/telemetry", READ)
    assert not device_acl.may_subscribe("rain-0001", "client", "gridhub/v1/rain/rain-0001/telemetry")
    assert not device_acl.may_subscribe("rain-0001", "client", "#")


def test_a_service_account_reads_everything_under_gridhub_v1(hub_acl: Acl) -> None:
    assert hub_acl.allows(GATEWAY, "gw-1", "gridhub/v1/manhole/manhole-0007/status", READ)
    for topic_filter in ("gridhub/v1/#", "gridhub/v1/+/+/telemetry", "gridhub/v1",
                         "$share/gridhub/gridhub/v1/#", "$share/g2/gridhub/v1/rain/+/status"):
        assert hub_acl.may_subscribe(GATEWAY, "gw-1", topic_filter), topic_filter


@pytest.mark.parametrize("topic_filter", ["#", "+/v1/#", "gridhub/#", "$SYS/#", "$share/gridhub/#",
                                          "$share//gridhub/v1/#", "$share/gridhub"])
def test_a_service_account_may_not_subscribe_beyond_gridhub_v1(hub_acl: Acl, topic_filter: str) -> None:
    assert not hub_acl.may_subscribe(GATEWAY, "gw-1", topic_filter)


def test_a_service_account_publishes_nothing_not_even_under_its_own_name(hub_acl: Acl) -> None:
    for topic in ("gridhub/v1/rain/rain-0001/telemetry", f"gridhub/v1/rain/{GATEWAY}/telemetry",
                  f"gridhub/v1/rain/{GATEWAY}/status"):
        assert not hub_acl.allows(GATEWAY, "gw-1", topic, WRITE), topic


def test_a_device_account_gets_nothing_on_the_hub_listener(hub_acl: Acl) -> None:
    assert not hub_acl.allows("rain-0001", "rain-0001", "gridhub/v1/rain/rain-0001/telemetry", WRITE)
    assert not hub_acl.may_subscribe("rain-0001", "rain-0001", "gridhub/v1/#")


def test_anonymous_clients_and_wildcard_names_get_nothing(device_acl: Acl) -> None:
    assert not device_acl.allows(None, "anon", "gridhub/v1/rain/anon/telemetry", WRITE)
    assert not device_acl.allows("rain-+", "client", "gridhub/v1/rain/rain-+/telemetry", WRITE)
    assert not device_acl.allows("#", "client", "gridhub/v1/rain/#/telemetry", WRITE)
    assert not device_acl.may_subscribe(None, "anon", "gridhub/v1/#")


def test_user_lines_come_before_patterns_and_denials_before_grants() -> None:
    acl = Acl.parse("topic read public/#\nuser ann\ntopic deny a/secret\ntopic readwrite a/#\npattern write u/%u/%c\n")
    assert acl.allows("ann", "c1", "a/b", WRITE)
    assert not acl.allows("ann", "c1", "a/secret", READ)
    assert acl.allows("ann", "c1", "u/ann/c1", WRITE)
    assert not acl.allows("ann", "c2", "u/ann/c1", WRITE)
    assert acl.allows(None, "c1", "public/news", READ)
    assert not acl.allows("ann", "c1", "public/news", READ)


@pytest.mark.parametrize(("text", "reason"), [
    ("topic\n", ":1: topic without a topic"),
    ("user\n", ":1: user without a name"),
    ("topic maybe a/b\n", ":1: access 'maybe' must be read, write, readwrite or deny"),
    ("# ok\ntopic read a/#/b\n", ":2: invalid topic 'a/#/b'"),
    ("allow all\n", ":1: unknown directive 'allow'"),
])
def test_an_acl_mosquitto_would_refuse_is_refused(text: str, reason: str) -> None:
    with pytest.raises(BrokerAuthError, match=reason):
        Acl.parse(text)


def test_a_missing_acl_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(BrokerAuthError, match="cannot read the ACL file"):
        read_acl_file(tmp_path / "acl")


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), [
    ("a/+/c", "a/b/c", True),
    ("a/#", "a", True),
    ("a/#", "a/b/c", True),
    ("a/+", "a/b/c", False),
    ("#", "$SYS/x", False),
    ("+/x", "$SYS/x", False),
    ("$SYS/#", "$SYS/x", True),
])
def test_topic_matching_follows_mqtt(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


def test_the_conf_listens_where_asked() -> None:
    conf = mosquitto_conf(Path("/etc/gridhub/mqtt"), MqttSettings(), port=8883, bind="10.0.0.5", hub_port=8884,
                          hub_bind="127.0.0.2", persistence_dir=Path("/data"))
    assert "\nlistener 8883 10.0.0.5\n" in conf
    assert "\nlistener 8884 127.0.0.2\n" in conf
    assert "persistence_location /data/\n" in conf
