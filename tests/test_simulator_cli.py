"""`gridhub simulate sensors`: options, where the broker is, and failing clearly when it is not there."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from core.settings import load_settings
from gridhub.cli import EXIT_CONFIG, cli
from simulators.sensors import SimulatorError, broker_endpoint
from tests.brokers import free_port


def test_speed_and_rate_are_alternatives() -> None:
    result = CliRunner().invoke(cli, ["simulate", "sensors", "--speed", "2", "--rate", "50"])
    assert result.exit_code == EXIT_CONFIG
    assert "give --speed or --rate, not both" in result.output


@pytest.mark.parametrize("argv", [["--devices", "0"], ["--devices", "205"], ["--malformed-share", "0.5"],
                                  ["--speed", "0"]])
def test_impossible_options_are_refused(argv: list[str]) -> None:
    result = CliRunner().invoke(cli, ["simulate", "sensors", *argv])
    assert result.exit_code == EXIT_CONFIG
    assert "Traceback" not in result.output


def test_an_unreachable_broker_fails_at_once_with_the_reason() -> None:
    result = CliRunner().invoke(cli, ["simulate", "sensors", "--duration", "1"],
                                env={"GRIDHUB_MQTT__HOST": "127.0.0.1", "GRIDHUB_MQTT__PORT": str(free_port())})
    assert result.exit_code == 1
    assert "Connection refused" in result.output


def test_the_broker_comes_from_the_settings_or_the_embedded_brokers_bind_address() -> None:
    assert broker_endpoint(load_settings(overrides={"mqtt.host": "mqtt.example", "mqtt.port": 8883},
                                         environ={}), None) == ("mqtt.example", 8883)
    assert broker_endpoint(load_settings(overrides={"mqtt.bind": "0.0.0.0", "mqtt.port": 1884},
                                         environ={}), None) == ("127.0.0.1", 1884)


def test_the_broker_comes_from_gridhub_ups_ready_file(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    ready.write_bytes(orjson.dumps({"mqtt_host": "127.0.0.1", "mqtt_port": 41883, "api_url": "http://x"}))
    assert broker_endpoint(load_settings(environ={}), ready) == ("127.0.0.1", 41883)


def test_a_ready_file_that_never_appears_or_lacks_the_broker_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SimulatorError, match="not written within"):
        broker_endpoint(load_settings(environ={}), tmp_path / "missing.json", wait_s=0.3)
    broken = tmp_path / "ready.json"
    broken.write_bytes(b'{"api_url": "http://x"}')
    with pytest.raises(SimulatorError, match="mqtt_host"):
        broker_endpoint(load_settings(environ={}), broken)
