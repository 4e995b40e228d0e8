"""`gridhub bench streams|e2e --profile`: which servers a benchmark runs on, and the settings its GridHub
processes get for them. The last two tests run the streams benchmark at a tiny size on each profile."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from gridhub.bench.profiles import embedded_env, production_env, servers
from gridhub.cli import cli
from gridhub.localbrokers import TANSU_CLIENT_ENV
from gridhub.services import Kafka, Mosquitto, Postgres, Services

STATE = Path("/srv/gridhub-bench/state")


def production_services(directory: Path) -> Services:
    """Handles of services that were never started: their URLs follow from their ports alone."""
    return Services(directory, {
        "kafka": Kafka(directory, ports={"port": 19092, "controller_port": 19093}),
        "postgres": Postgres(directory, ports={"port": 15432}),
        "mosquitto": Mosquitto(directory, ports={"port": 11883, "hub_port": 11884}),
    })


def test_production_processes_get_apache_kafka_and_postgresql(tmp_path: Path) -> None:
    started = production_services(tmp_path)

    env = production_env(started, STATE)

    assert env["GRIDHUB_KAFKA__BOOTSTRAP"] == "127.0.0.1:19092" == started.kafka.url
    assert env["GRIDHUB_DATABASE__URL"] == started.postgres.url
    assert env["GRIDHUB_STATE_DIR"] == str(STATE)


def test_production_producers_stay_idempotent(tmp_path: Path) -> None:
    env = production_env(production_services(tmp_path), STATE)

    assert not TANSU_CLIENT_ENV.keys() & env.keys()


def test_production_gateways_log_in_on_the_hub_listener(tmp_path: Path) -> None:
    started = production_services(tmp_path)

    env = production_env(started, STATE)

    assert (env["GRIDHUB_MQTT__PORT"], env["GRIDHUB_MQTT__HUB_PORT"]) == ("11883", "11884")
    assert env["GRIDHUB_MQTT__PASSWORD_FILE"] == str(started.mosquitto.gateway_secret_file)


def test_embedded_processes_get_tansu_without_idempotence_and_sqlite_in_the_state_dir() -> None:
    env = embedded_env("127.0.0.1:9092", STATE, mqtt_port=1883)

    assert env["GRIDHUB_KAFKA__BOOTSTRAP"] == "127.0.0.1:9092"
    assert TANSU_CLIENT_ENV.items() <= env.items()
    assert "GRIDHUB_DATABASE__URL" not in env and env["GRIDHUB_STATE_DIR"] == str(STATE)
    assert env["GRIDHUB_MQTT__PORT"] == "1883"


def test_an_unknown_profile_is_refused_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="unknown profile 'staging'"), servers("staging", STATE):
        pass


@pytest.mark.integration
@pytest.mark.parametrize(("profile", "servers_named"), [("embedded", "tansu + SQLite"),
                                                         ("production", "Apache Kafka 4.4")])
def test_bench_streams_names_its_profile_in_the_environment(profile: str, servers_named: str) -> None:
    # Enough readings to time: the worker can get through 20,000 on Tansu within one 50 ms look at its metrics.
    result = CliRunner().invoke(cli, ["bench", "streams", "-n", "100000", "--profile", profile, "--json"])

    assert result.exit_code == 0, result.output
    document = orjson.loads(result.output.strip().splitlines()[-1])
    assert document["environment"]["broker"].startswith(f"{profile} profile: ")
    assert servers_named in document["environment"]["broker"]
    assert document["value"] > 0 and document["baseline"] > 0
