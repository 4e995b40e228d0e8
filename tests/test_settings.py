"""Settings: YAML plus GRIDHUB_* environment, strict keys, secrets only from env or files."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from core.settings import ConfigError, load_settings
from storage.db import shown

MINIMAL = {"state_dir": "/var/lib/gridhub", "mqtt": {"host": "broker.local", "port": 1883}}


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "gridhub.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_defaults_need_no_file_and_mean_embedded_brokers() -> None:
    settings = load_settings(environ={})
    assert settings.mqtt.host is None
    assert settings.kafka.bootstrap is None
    assert settings.database_url == "sqlite:///.gridhub/gridhub.db"
    assert settings.sla.working_periods == [(time(8, 30), time(17, 30))]


def test_without_a_bootstrap_clients_look_for_the_embedded_kafka_on_its_port() -> None:
    settings = load_settings(environ={"GRIDHUB_KAFKA__PORT": "19092"})
    assert settings.kafka.bootstrap_servers == "127.0.0.1:19092"


def test_a_configured_bootstrap_is_where_clients_connect() -> None:
    settings = load_settings(environ={"GRIDHUB_KAFKA__BOOTSTRAP": "kafka-1:9092,kafka-2:9092",
                                      "GRIDHUB_KAFKA__PORT": "19092"})
    assert settings.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"


def test_producers_are_idempotent_on_a_kafka_cluster_and_not_on_the_embedded_tansu() -> None:
    assert not load_settings(environ={}).kafka.idempotent  # Tansu refuses InitProducerId
    assert load_settings(environ={"GRIDHUB_KAFKA__BOOTSTRAP": "kafka-1:9092"}).kafka.idempotent
    assert not load_settings(environ={"GRIDHUB_KAFKA__BOOTSTRAP": "kafka-1:9092",
                                      "GRIDHUB_KAFKA__IDEMPOTENCE": "false"}).kafka.idempotent


def test_minimal_file_is_loaded(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), environ={})
    assert settings.mqtt.host == "broker.local"
    assert settings.state_dir == Path("/var/lib/gridhub")


def test_environment_overrides_file_and_command_line_overrides_both(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    settings = load_settings(path, environ={"GRIDHUB_MQTT__PORT": "1884", "GRIDHUB_API__PORT": "9000"},
                             overrides={"api.port": 0})
    assert settings.mqtt.port == 1884
    assert settings.api.port == 0
    assert settings.mqtt.host == "broker.local"


def test_config_file_can_come_from_gridhub_config(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    assert load_settings(environ={"GRIDHUB_CONFIG": str(path)}).mqtt.host == "broker.local"


def test_environment_lists_are_json(tmp_path: Path) -> None:
    settings = load_settings(environ={"GRIDHUB_SLA__EXTRA_HOLIDAYS": '["2027-01-01"]'})
    assert [d.isoformat() for d in settings.sla.extra_holidays] == ["2027-01-01"]


def test_unknown_key_in_file_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, {**MINIMAL, "mqtt": {"host": "x", "prot": 1}})
    with pytest.raises(ConfigError) as error:
        load_settings(path, environ={})
    assert str(error.value) == f"{path}: mqtt.prot: unknown key"


def test_unknown_environment_variable_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^environment GRIDHUB_KAFKA__BOOTSTRAPS: kafka.bootstraps: unknown key$"):
        load_settings(environ={"GRIDHUB_KAFKA__BOOTSTRAPS": "x:9092"})


def test_bad_value_names_key_and_reason(tmp_path: Path) -> None:
    path = write(tmp_path, {"api": {"port": 70000}})
    with pytest.raises(ConfigError, match=r"gridhub.yaml: api.port: Input should be less than or equal to 65535"):
        load_settings(path, environ={})


def test_unknown_time_zone_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sla.timezone: .*unknown time zone 'Mars/Olympus'"):
        load_settings(write(tmp_path, {"sla": {"timezone": "Mars/Olympus"}}), environ={})


def test_secret_in_file_is_refused_with_the_way_to_give_it(tmp_path: Path) -> None:
    path = write(tmp_path, {"mqtt": {"password": "hunter2"}})
    with pytest.raises(ConfigError) as error:
        load_settings(path, environ={})
    assert "mqtt.password: secrets may not be written in the config file" in str(error.value)
    assert "GRIDHUB_MQTT__PASSWORD" in str(error.value)


def test_secret_from_environment_or_file(tmp_path: Path) -> None:
    assert load_settings(environ={"GRIDHUB_MQTT__PASSWORD": "s3"}).mqtt_password() == "s3"
    secret = tmp_path / "mqtt-password"
    secret.write_text("from-file\n")
    assert load_settings(write(tmp_path, {"mqtt": {"password_file": str(secret)}}), environ={}).mqtt_password() \
        == "from-file"


def test_both_password_sources_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="either in the environment or in password_file"):
        load_settings(write(tmp_path, {"mqtt": {"password_file": "/run/secrets/x"}}),
                      environ={"GRIDHUB_MQTT__PASSWORD": "s3"})


def test_the_database_password_comes_from_its_file_into_the_url_and_is_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "postgres-password"
    secret.write_text("p@ss/word\n")  # characters a URL must escape
    settings = load_settings(environ={"GRIDHUB_DATABASE__URL": "postgresql+psycopg://gridhub@db:5432/gridhub",
                                      "GRIDHUB_DATABASE__PASSWORD_FILE": str(secret)})
    assert make_url(settings.database_url).password == "p@ss/word"
    assert shown(settings.database_url) == "postgresql+psycopg://gridhub:***@db:5432/gridhub"
    assert shown("not a url://user:secret@host") == "not a url://***@host"


def test_an_unreadable_secret_file_is_named_by_its_setting(tmp_path: Path) -> None:
    settings = load_settings(environ={"GRIDHUB_DATABASE__URL": "postgresql+psycopg://gridhub@db/gridhub",
                                      "GRIDHUB_DATABASE__PASSWORD_FILE": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match=r"^database\.password_file: cannot read .*missing: No such file"):
        _ = settings.database_url


def test_a_database_password_file_without_a_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"database\.password_file needs database\.url"):
        load_settings(environ={"GRIDHUB_DATABASE__PASSWORD_FILE": str(tmp_path / "x")})


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("mqtt:\n  host: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{path}:\d+: invalid YAML: "):
        load_settings(path, environ={})


def test_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be a mapping of settings, not list"):
        load_settings(write(tmp_path, ["a", "b"]), environ={})


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "nope.yaml", environ={})


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert load_settings(path, environ={}).api.port == 8000


def test_several_problems_are_counted_in_the_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\(and 1 more\)$"):
        load_settings(write(tmp_path, {"api": {"port": -1, "hots": "x"}}), environ={})


def test_a_packet_limit_below_the_largest_payload_is_refused_naming_both_keys() -> None:
    with pytest.raises(ConfigError, match=r"^settings: mqtt.max_packet_bytes must exceed gateway.max_payload_bytes"):
        load_settings(environ={"GRIDHUB_GATEWAY__MAX_PAYLOAD_BYTES": "100000"})


def test_a_config_file_that_is_not_utf8_says_so_with_the_offset(tmp_path: Path) -> None:
    path = tmp_path / "gridhub.yaml"
    path.write_bytes(b"mqtt:\n  port: 1884 # \xff\n")
    with pytest.raises(ConfigError, match=r"gridhub.yaml: not UTF-8 text \(byte 0xff at offset 21\)"):
        load_settings(path, environ={})


def test_a_rule_inside_a_section_is_stated_without_pydantics_prefix() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(environ={"GRIDHUB_STREAMS__CROWD_URGENT_PER_M2": "1",
                               "GRIDHUB_STREAMS__CROWD_WARNING_PER_M2": "2"})
    assert "Value error" not in str(refused.value)
    assert "crowd_urgent_per_m2 must be at least crowd_warning_per_m2" in str(refused.value)
