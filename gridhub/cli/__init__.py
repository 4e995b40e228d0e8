"""The `gridhub` command line: the commands other tools rely on are listed in docs/architecture.md."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from core.city import CityError, load_city
from core.lifecycle import NoFreeSlot, claim_slot
from core.settings import ConfigError
from gridhub import __version__
from gridhub.cli.common import EXIT_CONFIG, config_option, fail, load, print_bench, service_setup


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gridhub")
def cli() -> None:
    """GridHub: streaming IoT and video-sensor ingestion for urban grid management (网格化管理)."""


@cli.command()
@config_option
@click.option("--demo", is_flag=True, help="Use the demo city shipped with GridHub and start its simulators.")
@click.option("--state-dir", type=click.Path(path_type=Path), help="Where to keep the database, logs and ready.json.")
@click.option("--api-port", type=int, help="HTTP port (0: any free port).")
@click.option("--mqtt-port", type=int, help="Embedded MQTT broker port (0: any free port).")
@click.option("--kafka-port", type=int, help="Embedded Kafka broker port (0: any free port).")
def up(config_file: Path | None, demo: bool, state_dir: Path | None, api_port: int | None,
       mqtt_port: int | None, kafka_port: int | None) -> None:
    """Start everything on this machine and supervise it until Ctrl-C or SIGTERM."""
    from gridhub.runtime import up as runtime

    overrides: dict[str, Any] = {
        key: value for key, value in {
            "state_dir": state_dir, "api.port": api_port, "mqtt.port": mqtt_port, "kafka.port": kafka_port,
        }.items() if value is not None
    }
    if demo:
        overrides["city.dir"] = None
    settings = load(config_file, overrides)
    try:
        city = load_city(settings)
    except CityError as exc:
        fail(f"city error: {exc}", EXIT_CONFIG)
    sys.exit(runtime.main(settings, city, demo=demo, config_file=config_file))


@cli.command()
@config_option
def api(config_file: Path | None) -> None:
    """Serve the HTTP API (started by `gridhub up`)."""
    import uvicorn

    from api.app import create_app
    from storage.schema import SchemaError

    settings = load(config_file)
    try:
        app = create_app(settings)
    except CityError as exc:
        fail(f"city error: {exc}", EXIT_CONFIG)
    except SchemaError as exc:
        fail(str(exc), EXIT_CONFIG)
    uvicorn.run(app, host=settings.api.host, port=settings.api.port, log_level=settings.log_level,
                timeout_graceful_shutdown=5)


@cli.command("kafka-topics")
@config_option
def kafka_topics(config_file: Path | None) -> None:
    """Create GridHub's Kafka topics that are missing (kafka.partitions, kafka.replication_factor), waiting for
    the cluster to answer; run once before the services on a Kafka cluster (`gridhub up` does it itself)."""
    import asyncio

    from core import kafka

    settings = load(config_file)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        created = asyncio.run(kafka.ensure_topics_when_reachable(settings.kafka))
    except kafka.TopicsRefused as exc:
        fail(f"Kafka at {settings.kafka.bootstrap_servers}: {exc}", EXIT_CONFIG)
    click.echo(f"created Kafka topics: {', '.join(created)}" if created else "GridHub's Kafka topics all exist")


@cli.command()
@config_option
@click.option("--client-id", help="MQTT client id; each gateway of a shared subscription needs its own.")
@click.option("--metrics-port", type=int, help="Serve Prometheus metrics on this port (when run on its own).")
@click.option("--retire", is_flag=True,
              help="Remove this gateway for good: unsubscribe its session, drain what the broker queued there into "
                   "Kafka, end the session and exit.")
def gateway(config_file: Path | None, client_id: str | None, metrics_port: int | None, retire: bool) -> None:
    """MQTT ingestion gateway: validate telemetry and produce it to Kafka.

    A stopped gateway's session keeps its share of the shared subscription's readings until it returns;
    `--retire --client-id ID` hands that share to the others for good (stop the gateway first)."""
    from ingest.gateway import main as run_gateway
    from storage.devices import is_demo_city, load_registry, seed_devices

    settings, city, engine = service_setup(config_file, metrics_port)
    if client_id is None and settings.gateway.slots_dir is not None and not retire:
        try:
            client_id = f"{settings.mqtt.username}-{claim_slot(settings.gateway.slots_dir)}"
        except (NoFreeSlot, OSError) as exc:
            fail(f"gateway.slots_dir: {exc}", EXIT_CONFIG)
    seed_devices(engine, city, demo=is_demo_city(settings))
    sys.exit(run_gateway(settings, load_registry(engine, city), client_id=client_id,
                         reload_registry=lambda: load_registry(engine, city), retire=retire))


@cli.command()
@config_option
@click.option("--metrics-port", type=int, help="Serve Prometheus metrics on this port (when run on its own).")
def worker(config_file: Path | None, metrics_port: int | None) -> None:
    """Faust stream worker: turn telemetry and detections into grid cases (several split the partitions)."""
    from streams.app import serve

    sys.exit(serve(*service_setup(config_file, metrics_port)))


@cli.group()
def simulate() -> None:
    """Simulators for the demo city: the sensor fleet and camera scenes."""


@simulate.command("sensors")
@config_option
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same scenario.")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True),
              help="Report FACTOR times more often and run storms and incidents FACTOR times faster [default: 1].")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), metavar="MSGS_PER_S",
              help="Set the speed so that the fleet sends about this many readings per second.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Stop after this long (default: until Ctrl-C or SIGTERM).")
@click.option("--malformed-share", type=click.FloatRange(0, 0.5, max_open=True), default=0.01, show_default=True,
              help="Share of telemetry messages that are deliberately malformed.")
@click.option("--devices", type=click.IntRange(min=1), metavar="N", help="Simulate N devices of the city, all kinds.")
@click.option("--ready", "ready_file", type=click.Path(path_type=Path),
              help="Take the MQTT broker from this ready.json of `gridhub up` (waits for it to appear).")
def simulate_sensors(config_file: Path | None, seed: int, speed: float | None, rate: float | None,
                     duration: float | None, malformed_share: float, devices: int | None,
                     ready_file: Path | None) -> None:
    """Publish realistic telemetry from the demo city's devices."""
    from simulators.sensors import SensorOptions, SimulatorError, run_sensors

    settings = load(config_file)
    options = SensorOptions(seed=seed, speed=speed, rate=rate, duration_s=duration,
                            malformed_share=malformed_share, devices=devices, ready_file=ready_file)
    try:
        sys.exit(run_sensors(settings, load_city(settings), options))
    except CityError as exc:
        fail(f"city error: {exc}", EXIT_CONFIG)
    except SimulatorError as exc:
        fail(str(exc), EXIT_CONFIG)


@cli.group()
def bench() -> None:
    """Benchmarks that report a ratio against a baseline measured in the same run."""


@bench.command("gateway")
@click.option("--messages", "-n", default=40_000, show_default=True, help="Messages to publish per phase.")
@click.option("--devices", "-m", default=8, show_default=True, help="Simulated devices (one C publisher each).")
@click.option("--broker", type=click.Choice(["mosquitto", "embedded"]), default="mosquitto", show_default=True)
@click.option("--mqtt", "protocol", type=click.Choice(["3.1.1", "5"]), default="3.1.1", show_default=True,
              help="MQTT protocol of the gateway and of the bare subscriber.")
@click.option("--json", "as_json", is_flag=True, help="Also print one JSON object as the last line.")
def bench_gateway(messages: int, devices: int, broker: str, protocol: str, as_json: bool) -> None:
    """Gateway accepted-message rate against a bare paho subscriber."""
    from gridhub.bench import environment
    from gridhub.bench.gateway import run

    logging.basicConfig(level=logging.WARNING)
    result = run(messages, devices, broker, protocol)
    print_bench(result, environment(str(result.details.get("broker_version"))), as_json)


@bench.command("streams")
@click.option("--readings", "-n", default=200_000, show_default=True, help="Readings to preload.")
@click.option("--rate", default=10_000, show_default=True,
              help="Readings per second of the simulated gateway that packed them (sets readings per record).")
@click.option("--linger-ms", default=20, show_default=True, help="The simulated gateway's batch linger.")
@click.option("--partitions", default=6, show_default=True, help="Partitions of gridhub.telemetry.")
@click.option("--profile", type=click.Choice(["embedded", "production"]), default="embedded", show_default=True,
              help="Servers: Tansu and SQLite, or fresh Apache Kafka and PostgreSQL (gridhub services).")
@click.option("--json", "as_json", is_flag=True, help="Also print one JSON object as the last line.")
def bench_streams(readings: int, rate: int, linger_ms: int, partitions: int, profile: str, as_json: bool) -> None:
    """Rules throughput of one worker against a bare aiokafka consumer."""
    from gridhub.bench import environment
    from gridhub.bench.streams import run

    logging.basicConfig(level=logging.WARNING)
    try:
        result = run(readings, rate, linger_ms, partitions, profile)
    except RuntimeError as exc:  # a server that did not start (ServiceError), a worker that could not be timed
        fail(str(exc), EXIT_CONFIG)
    print_bench(result, environment(str(result.details["servers"])), as_json)


@bench.command("e2e")
@click.option("--probes", default=60, show_default=True, help="Manhole covers to open, one case each.")
@click.option("--interval", default=0.5, show_default=True, help="Seconds between probes.")
@click.option("--background", default=1000, show_default=True, help="Background readings per second.")
@click.option("--profile", type=click.Choice(["embedded", "production"]), default="embedded", show_default=True,
              help="Servers: anonymous Mosquitto, Tansu and SQLite, or fresh production Mosquitto, Apache Kafka and "
                   "PostgreSQL (gridhub services).")
@click.option("--json", "as_json", is_flag=True, help="Also print one JSON object as the last line.")
def bench_e2e(probes: int, interval: float, background: int, profile: str, as_json: bool) -> None:
    """MQTT publish to case readable through the API: p50 and p99 under background load."""
    from gridhub.bench import environment
    from gridhub.bench.e2e import run

    logging.basicConfig(level=logging.WARNING)
    try:
        result = run(probes, interval, background, profile)
    except (ValueError, RuntimeError) as exc:  # a server that did not start raises a ServiceError, one of these
        fail(str(exc), EXIT_CONFIG)
    print_bench(result, environment(str(result.details["servers"])), as_json)


@bench.command("api")
@click.option("--cases", "case_count", default=200_000, show_default=True, help="Cases to seed the database with.")
@click.option("--clients", default=50, show_default=True, help="Concurrent clients listing cases.")
@click.option("--requests", default=3_000, show_default=True, help="Case-list requests (first and cursor pages).")
@click.option("--actions", "action_cases", default=50, show_default=True,
              help="Camera detections taken through confirm, handle and verify_pass (three timed actions each).")
@click.option("--think-ms", default=500.0, show_default=True,
              help="Mean pause of each client between requests (0: no pause, to measure capacity).")
@click.option("--json", "as_json", is_flag=True, help="Also print one JSON object as the last line.")
def bench_api(case_count: int, clients: int, requests: int, action_cases: int, think_ms: float,
              as_json: bool) -> None:
    """Case-list p95 at concurrent clients against the bare query, and the action round trip p50/p95."""
    from gridhub.bench import environment
    from gridhub.bench.api import run

    logging.basicConfig(level=logging.WARNING)
    try:
        result = run(case_count, clients, requests, action_cases, think_ms)
    except (ValueError, RuntimeError) as exc:
        fail(str(exc), EXIT_CONFIG)
    print_bench(result, environment("SQLite (embedded) + tansu (embedded)"), as_json)


from gridhub.cli.devices import devices  # noqa: E402 (registered last: they import gridhub.cli.common)

cli.add_command(devices)

from gridhub.cli.cameras import simulate_cameras  # noqa: E402 (registered last: they import gridhub.cli.common)
from gridhub.cli.detect import bench_detect, detect  # noqa: E402 (registered last: they import gridhub.cli.common)

cli.add_command(detect)
simulate.add_command(simulate_cameras, "cameras")
bench.add_command(bench_detect, "detect")


from gridhub.cli.store import store  # noqa: E402 (registered last: they import gridhub.cli.common)

cli.add_command(store)

from gridhub.cli.db import db  # noqa: E402 (registered last: they import gridhub.cli.common)

cli.add_command(db)


def main() -> None:
    """Console-script entry point."""
    try:
        cli()
    except ConfigError as exc:  # a secret file read when first used (core.settings.read_secret)
        fail(f"config error: {exc}", EXIT_CONFIG)

from gridhub.cli.tokens import tokens  # noqa: E402 (registered last: they import gridhub.cli.common)

cli.add_command(tokens)

from gridhub.cli.services import services  # noqa: E402 (registered last: they import gridhub.cli.common)

cli.add_command(services)
