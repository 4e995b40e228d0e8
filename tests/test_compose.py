"""docker-compose.yml, the production deployment (docs/deploy.md): what must hold for it to start, scale and
stay secret, checked on the configuration Compose itself resolves (`docker-compose config`), with GridHub's
own settings loader, and the shipped Mosquitto configuration run on a real Mosquitto.

CI installs Debian's docker-compose; no Docker engine is needed, and none is used.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from prometheus_client.metrics import MetricWrapperBase
from sqlalchemy.engine import make_url

from core import kafka, metrics
from core.city import DEMO_CITY_DIR, load_city
from core.credentials import demo_secret
from core.settings import ENV_NOT_SETTINGS, MqttSettings, Settings, load_settings
from gridhub.localbrokers import free_port, mosquitto_binary, running, tansu, wait_for_port
from storage.broker_files import ACL_FILE, HUB_ACL_FILE, HUB_PASSWORD_FILE, PASSWORD_FILE, production_mosquitto_conf

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "env.example"
MOSQUITTO_DIR = ROOT / "deploy" / "mosquitto"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
SCALED = ("gateway", "worker")
SECRETS_DIR = "/run/secrets/"
#: Names of settings and image variables whose value is a secret, unless they name a file.
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET", re.IGNORECASE)


def compose_command() -> list[str]:
    """Debian's docker-compose, or the Compose plugin of a Docker CLI; fail (never skip) without either."""
    found = shutil.which("docker-compose")
    if found:
        return [found]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    pytest.fail("docker-compose is not installed: `apt-get install docker-compose` (CI does); it checks "
                "docker-compose.yml without a Docker engine")


def run_compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """docker-compose on docker-compose.yml with `env_file` in place of a .env, and no COMPOSE_* variables."""
    environ = {name: value for name, value in os.environ.items() if not name.startswith("COMPOSE_")}
    command = [*compose_command(), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), *args]
    return subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The file as Compose resolves it, with deploy/env.example's values: anchors merged, variables filled in."""
    done = run_compose(ENV_EXAMPLE, "config")
    assert done.returncode == 0, done.stderr
    resolved: dict[str, Any] = yaml.safe_load(done.stdout)
    return resolved


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def hub_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from this repository, but the one-container demo."""
    return {name: service for name, service in services(compose).items()
            if "build" in service and "embedded" not in service.get("profiles", [])}


def one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def unescape(text: str) -> str:
    """A string of the resolved file as the container sees it (`$$` is Compose's escape for `$`)."""
    return text.replace("$$", "$")


def gridhub_env(service: dict[str, Any]) -> dict[str, str]:
    return {name: str(value) for name, value in service.get("environment", {}).items()
            if name.startswith("GRIDHUB_")}


def settings_of(service: dict[str, Any]) -> Settings:
    return load_settings(environ=gridhub_env(service))


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Target path in the container → named volume or host path."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found[volume["target"]] = volume.get("source", "")
        else:
            source, target = volume.split(":")[:2]
            found[target] = source
    return found


def secrets_read(service: dict[str, Any]) -> set[str]:
    """Names of the secrets a service's environment, entrypoint, command or healthcheck reads."""
    text = json.dumps([service.get(key) for key in ("environment", "entrypoint", "command", "healthcheck")])
    return set(re.findall(re.escape(SECRETS_DIR) + r"([A-Za-z0-9_.-]+)", text))


def secrets_mounted(service: dict[str, Any]) -> set[str]:
    return {secret["source"] if isinstance(secret, dict) else secret for secret in service.get("secrets", [])}


# --- The file as a whole --------------------------------------------------------------------------------

def test_compose_accepts_the_file_without_an_env_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.touch()
    done = run_compose(empty, "config", "-q")
    assert done.returncode == 0, f"docker-compose config -q: {done.stderr}"


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        if one_shot(service):
            continue
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: {check['test']}"


def test_dependencies_wait_for_a_healthcheck_or_a_finished_one_shot(compose: dict[str, Any]) -> None:
    every = services(compose)
    for name, service in every.items():
        for target, condition in service.get("depends_on", {}).items():
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in every[target], f"{name} waits for {target} to be healthy: it has no check"
            else:
                assert condition["condition"] == "service_completed_successfully", f"{name} → {target}"
                assert one_shot(every[target]), f"{name} waits for {target} to finish: it is not a one-shot"


def test_hub_services_and_the_registry_reader_start_after_the_schema_upgrade(compose: dict[str, Any]) -> None:
    hub = hub_services(compose)
    for name, service in hub.items():
        if not one_shot(service) or name == "broker-files":
            assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
    assert hub["migrate"]["command"] == ["db", "upgrade"]


def test_gateways_and_workers_scale_without_fixed_names_or_host_ports(compose: dict[str, Any]) -> None:
    for name in SCALED:
        service = services(compose)[name]
        for key in ("container_name", "hostname", "ports"):
            assert key not in service, f"{name} sets {key}: `--scale {name}=N` would clash"


def python_check(service: dict[str, Any]) -> str:
    """The Python source of a `CMD python -c SOURCE` healthcheck, as the container runs it."""
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], test
    return unescape(test[3])


def test_hub_healthchecks_are_python_that_compiles(compose: dict[str, Any]) -> None:
    for name, service in hub_services(compose).items():
        if not one_shot(service):
            compile(python_check(service), f"{name} healthcheck", "exec")


def test_a_gateway_is_healthy_only_while_it_holds_its_subscriptions(compose: dict[str, Any]) -> None:
    registry = CollectorRegistry()
    subscribed = Gauge("gridhub_gateway_subscribed", "as core.metrics", ["client_id"], registry=registry)
    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    check = python_check(services(compose)["gateway"]).replace(":9100/", f":{port}/")
    try:
        subscribed.labels(client_id="gridhub-gateway-c0ffee0123ab").set(1)
        assert _run([sys.executable, "-c", check]).returncode == 0
        subscribed.labels(client_id="gridhub-gateway-c0ffee0123ab").set(0)
        assert _run([sys.executable, "-c", check]).returncode == 1
    finally:
        server.shutdown()
        server.server_close()


def test_a_worker_is_healthy_once_ready_while_its_metrics_answer(compose: dict[str, Any], tmp_path: Path) -> None:
    port = free_port()
    ready = tmp_path / "ready"
    worker = services(compose)["worker"]
    assert worker["environment"]["GRIDHUB_READY_FILE"] == "/run/gridhub/ready"
    assert "/run/gridhub" in worker["tmpfs"]  # a restarted container starts not ready
    check = python_check(worker).replace(":9100/", f":{port}/").replace("/run/gridhub/ready", str(ready))
    server, _ = start_http_server(port, addr="127.0.0.1", registry=CollectorRegistry())
    try:
        assert _run([sys.executable, "-c", check]).returncode != 0
        ready.touch()
        assert _run([sys.executable, "-c", check]).returncode == 0
    finally:
        server.shutdown()
        server.server_close()
    assert _run([sys.executable, "-c", check]).returncode != 0


# --- GridHub's settings ---------------------------------------------------------------------------------

def test_hub_services_environment_is_gridhub_settings(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        if "build" not in service:
            continue
        for variable in gridhub_env(service):  # the ready file is the one variable of GridHub's that is no setting
            assert variable not in ENV_NOT_SETTINGS or variable == "GRIDHUB_READY_FILE", f"{name}: {variable}"
        settings_of(service)  # raises ConfigError naming an unknown key or a bad value


def test_hub_services_point_at_services_of_this_file(compose: dict[str, Any]) -> None:
    every = services(compose)
    kafka_advertised = every["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    for name, service in hub_services(compose).items():
        settings = settings_of(service)
        assert settings.database.url is not None, name
        database = make_url(settings.database.url)
        influx = urlsplit(settings.telemetry_store.influx_url)
        for host in (settings.mqtt.host, settings.kafka.bootstrap_servers.split(":")[0], database.host,
                     influx.hostname):
            assert host in every, f"{name} points at {host}, not a service of docker-compose.yml"
        assert database.get_backend_name() == "postgresql", name
        assert database.database == every["postgres"]["environment"]["POSTGRES_DB"], name
        assert f"PLAINTEXT://{settings.kafka.bootstrap_servers}" in kafka_advertised, name
        assert settings.telemetry_store.backend == "influxdb", name


HUB_SERVICES = ("gateway", "worker", "store", "detect", "api", "migrate", "broker-files", "kafka-topics")


def test_hub_services_run_gridhub_with_their_command_and_connect_with_the_database_secret(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "postgres_password").write_text("pg-secret\n", encoding="utf-8")
    for name in HUB_SERVICES:
        service = services(compose)[name]
        assert "entrypoint" not in service, f"{name}: the image's entrypoint runs `gridhub <command>`"
        environ = {key: _moved(value, {SECRETS_DIR: f"{tmp_path}/"}) for key, value in gridhub_env(service).items()}
        url = make_url(load_settings(environ=environ).database_url)
        assert (url.host, url.username, url.password) == ("postgres", "gridhub", "pg-secret"), name
        assert "postgres_password" in secrets_mounted(service), name


def test_gateway_replicas_number_themselves_on_a_volume_of_their_own(compose: dict[str, Any]) -> None:
    """Each replica is `gridhub-gateway-N` by the lowest free slot (core.lifecycle.claim_slot, tested with the
    real gateway in tests/integration/test_gateway.py); the slots must outlive the containers' file systems."""
    gateway = services(compose)["gateway"]
    slots_dir = settings_of(gateway).gateway.slots_dir
    assert slots_dir is not None
    assert mounts(gateway)[str(slots_dir)] == "gateway-slots"
    assert "gateway-slots" in compose["volumes"]


def test_kafka_topics_creates_gridhub_topics_with_the_configured_partitions(compose: dict[str, Any]) -> None:
    service = services(compose)["kafka-topics"]
    partitions = settings_of(service).kafka.partitions
    with tansu() as bootstrap:
        # `python` is the image's, which has GridHub: here, this interpreter's
        path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
        environ = {**gridhub_env(service), "GRIDHUB_KAFKA__BOOTSTRAP": bootstrap, "PATH": path}
        argv = ["gridhub", *service["command"]]
        runs = [subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=60, check=False)
                for _ in range(2)]
        assert [run.returncode for run in runs] == [0, 0], runs[0].stderr + runs[1].stderr
        assert asyncio.run(kafka.ensure_topics(bootstrap, partitions + 1)) == []  # all there already
        assert asyncio.run(_partitions(bootstrap)) == dict.fromkeys(kafka.TOPICS, partitions)


def test_influxdb_is_set_up_with_the_org_and_bucket_the_store_writes(compose: dict[str, Any]) -> None:
    influx = services(compose)["influxdb"]["environment"]
    store = settings_of(services(compose)["store"]).telemetry_store
    assert (influx["DOCKER_INFLUXDB_INIT_ORG"], influx["DOCKER_INFLUXDB_INIT_BUCKET"]) == (
        store.influx_org, store.influx_bucket)
    assert influx["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE"] == str(store.influx_token_file)


# --- Secrets --------------------------------------------------------------------------------------------

def test_no_secret_is_written_in_the_file(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        for variable, value in service.get("environment", {}).items():
            if not SECRET_NAME.search(variable):
                continue
            assert variable.upper().endswith("_FILE"), f"{name}: {variable} holds a secret; give it as a file"
            assert str(value).startswith(SECRETS_DIR), f"{name}: {variable}={value} is not a compose secret"
        if "build" in service:
            settings = settings_of(service)
            assert settings.mqtt.password is None and settings.telemetry_store.influx_token is None, name
            assert settings.database.url is None or make_url(settings.database.url).password is None, \
                f"{name}: a password in database.url"
    for secret, definition in compose["secrets"].items():
        assert Path(definition["file"]) == ROOT / "deploy" / "secrets" / secret, secret
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for generated in (ROOT / "deploy" / "secrets").glob("*"):  # tools/make-secrets.sh's, where it has run
        value = generated.read_text(encoding="utf-8").strip()
        if generated.name != "README.md" and value:
            assert value not in text, f"the value of deploy/secrets/{generated.name} is in docker-compose.yml"


def test_services_read_only_the_secrets_they_mount(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        missing = secrets_read(service) - secrets_mounted(service)
        assert not missing, f"{name} reads {sorted(missing)} from {SECRETS_DIR} without mounting them"


# --- Monitoring -----------------------------------------------------------------------------------------

def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((GRAFANA_DIR / "dashboards" / "gridhub.json").read_text(encoding="utf-8"))
    return document


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "gridhub.yml").read_text(
        encoding="utf-8"))
    return {source["uid"]: source for source in document["datasources"]}


def panel_targets() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def test_grafana_dashboard_uses_the_provisioned_datasources() -> None:
    provisioned = provisioned_datasources()
    used = set()
    for panel, target in panel_targets():
        for source in (panel["datasource"], target["datasource"]):
            assert source["uid"] in provisioned, f"panel {panel['title']!r}: datasource {source['uid']}"
            assert source["type"] == provisioned[source["uid"]]["type"], panel["title"]
            used.add(source["uid"])
    assert used == set(provisioned)


def test_grafana_dashboard_charts_metrics_gridhub_defines() -> None:
    defined = {family.name for collector in vars(metrics).values() if isinstance(collector, MetricWrapperBase)
               for family in collector.describe()}
    charted = {re.sub(r"_(total|bucket|count|sum)$", "", name)
               for _, target in panel_targets() for name in re.findall(r"gridhub_\w+", target.get("expr", ""))}
    assert charted and charted <= defined, f"not metrics of core/metrics.py: {sorted(charted - defined)}"


def test_grafana_reads_influxdb_as_gridhub_writes_it(compose: dict[str, Any]) -> None:
    store = settings_of(services(compose)["store"]).telemetry_store
    grafana = services(compose)["grafana"]
    influx = provisioned_datasources()["gridhub-influxdb"]
    assert influx["url"] == store.influx_url
    variables = {value.lstrip("$"): value for value in (influx["jsonData"]["organization"],
                                                       influx["jsonData"]["defaultBucket"])}
    assert {grafana["environment"][name] for name in variables} == {store.influx_org, store.influx_bucket}
    assert influx["secureJsonData"]["token"] == f"$__file{{{store.influx_token_file}}}"
    assert "influxdb_admin_token" in secrets_mounted(grafana)
    queries = [target["query"] for _, target in panel_targets() if "query" in target]
    assert queries and all(f'from(bucket: "{store.influx_bucket}")' in query for query in queries)


def test_prometheus_scrapes_every_metrics_port(compose: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS_FILE.read_text(encoding="utf-8"))
    scraped = {(name, sd["port"]) for job in config["scrape_configs"] for sd in job.get("dns_sd_configs", [])
               for name in sd["names"]}
    static = {target for job in config["scrape_configs"] for sc in job.get("static_configs", [])
              for target in sc["targets"]}
    for name, service in hub_services(compose).items():
        command = service.get("command", [])
        if "--metrics-port" in command:
            port = int(command[command.index("--metrics-port") + 1])
            assert (name, port) in scraped, f"Prometheus does not scrape {name}:{port}"
            assert settings_of(service).metrics.host == "0.0.0.0", name
    api = settings_of(services(compose)["api"]).api
    assert f"api:{api.port}" in static and api.public_metrics


# --- Mosquitto ------------------------------------------------------------------------------------------

def directives(text: str) -> list[tuple[str, str]]:
    """(section, line) for every directive: the section is the listener it follows, '' before the first."""
    section, found = "", []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("listener "):
            section = line.split()[1]
        found.append((section, line))
    return found


def broker_paths(compose: dict[str, Any]) -> tuple[Path, Path]:
    """Where broker-files writes the auth files, and where Mosquitto mounts the same volume."""
    writer = services(compose)["broker-files"]
    auth_dir = settings_of(writer).mqtt.auth_dir
    assert auth_dir is not None
    volume = mounts(writer)[str(auth_dir)]
    broker_side = [target for target, source in mounts(services(compose)["mosquitto"]).items() if source == volume]
    assert broker_side, f"mosquitto does not mount the {volume} volume broker-files writes"
    return auth_dir, Path(broker_side[0])


def test_mosquitto_conf_names_the_files_broker_files_writes(compose: dict[str, Any]) -> None:
    _, broker_dir = broker_paths(compose)
    mqtt = settings_of(services(compose)["gateway"]).mqtt
    found = set(directives((MOSQUITTO_DIR / "mosquitto.conf").read_text(encoding="utf-8")))
    device, hub = str(mqtt.port), str(mqtt.hub_port)
    for section, wanted in ((device, f"password_file {broker_dir / PASSWORD_FILE}"),
                            (device, f"acl_file {broker_dir / ACL_FILE}"),
                            (hub, f"password_file {broker_dir / HUB_PASSWORD_FILE}"),
                            (hub, f"acl_file {broker_dir / HUB_ACL_FILE}")):
        assert (section, wanted) in found, f"listener {section}: {wanted}"
    assert mounts(services(compose)["mosquitto"])["/mosquitto/config"] == str(MOSQUITTO_DIR)


def test_mosquitto_conf_keeps_the_generated_configuration(compose: dict[str, Any]) -> None:
    auth_dir, broker_dir = broker_paths(compose)
    mqtt: MqttSettings = settings_of(services(compose)["broker-files"]).mqtt
    generated = production_mosquitto_conf(auth_dir, mqtt).replace(str(auth_dir), str(broker_dir))
    shipped = set(directives((MOSQUITTO_DIR / "mosquitto.conf").read_text(encoding="utf-8")))
    for section, line in directives(generated):
        if line.startswith("listener "):  # the container's own bind address
            assert any(ours.split()[:2] == line.split()[:2] for _, ours in shipped), line
        elif not line.startswith("persistence_location "):
            assert (section, line) in shipped, f"mosquitto.conf lacks `{line}` (listener {section or 'none'})"
    # Sessions and queued messages are kept where a named volume outlives the container.
    location = next(ours.split()[1] for _, ours in shipped if ours.startswith("persistence_location "))
    volumes = compose["volumes"]
    assert mounts(services(compose)["mosquitto"]).get(location.rstrip("/")) in volumes, location


@pytest.mark.integration
def test_mosquitto_runs_the_shipped_configuration_on_the_files_broker_files_writes(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """broker-files as the service runs it (demo city), then Mosquitto with deploy/mosquitto/ and its TLS
    example: the healthcheck passes, devices log in on the device and TLS listeners, the gateway's account
    only on the hub listener."""
    _, broker_dir = broker_paths(compose)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "mqtt_gateway_password").write_text("gateway-secret", encoding="utf-8")
    state, config, data = tmp_path / "state", tmp_path / "config", tmp_path / "data"
    data.mkdir()
    shutil.copytree(MOSQUITTO_DIR, config)

    writer = services(compose)["broker-files"]
    paths = {SECRETS_DIR: f"{secrets}/", "/var/lib/gridhub": str(state), "/etc/gridhub/city": str(DEMO_CITY_DIR)}
    environ = {name: _moved(value, paths) for name, value in gridhub_env(writer).items()}
    environ.update(PATH=os.environ["PATH"], GRIDHUB_DATABASE__URL=f"sqlite:///{tmp_path / 'gridhub.db'}")
    environ.pop("GRIDHUB_DATABASE__PASSWORD_FILE")  # SQLite here, in place of PostgreSQL
    environ.pop("GRIDHUB_READY_FILE")
    done = subprocess.run([sys.executable, "-m", "gridhub", *writer["command"]], env=environ, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr

    port, hub_port, tls_port = free_port(), free_port(), free_port()
    certs = config / "certs"
    certs.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(certs / "server.key"),
                    "-out", str(certs / "server.crt")], capture_output=True, check=True)
    tls = (config / "conf.d" / "tls.conf.example").read_text(encoding="utf-8")
    (config / "conf.d" / "tls.conf").write_text(tls.replace("listener 8883", f"listener {tls_port} 127.0.0.1"),
                                                encoding="utf-8")
    moved = {"/mosquitto/config": str(config), "/mosquitto/data": str(data), str(broker_dir): str(state / "mqtt")}
    for conf in (config / "mosquitto.conf", config / "conf.d" / "tls.conf"):
        text = _moved(conf.read_text(encoding="utf-8"), moved)
        text = text.replace("listener 1883\n", f"listener {port} 127.0.0.1\n")
        text = text.replace("listener 1884\n", f"listener {hub_port} 127.0.0.1\n")
        if os.geteuid() == 0 and conf.name == "mosquitto.conf":
            text += "user root\n"  # as root Mosquitto would switch to `mosquitto`, who cannot read our 0640 files
        conf.write_text(text, encoding="utf-8")

    device = next(iter(load_city(load_settings(environ={})).registry))
    publish = ["mosquitto_pub", "-q", "1", "-u", device.id, "-P", demo_secret(device.id),
               "-t", f"gridhub/v1/{device.kind.value}/{device.id}/telemetry", "-m", "{}"]
    check = unescape(services(compose)["mosquitto"]["healthcheck"]["test"][1]).replace("-p 1884", f"-p {hub_port}")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "mqtt_gateway_password").write_text("not-the-secret", encoding="utf-8")
    with running([mosquitto_binary(), "-c", str(config / "mosquitto.conf")], port) as broker:
        wait_for_port(hub_port, broker)
        wait_for_port(tls_port, broker)
        healthy = _run(["sh", "-c", check.replace(SECRETS_DIR, f"{secrets}/")])
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert _run(["sh", "-c", check.replace(SECRETS_DIR, f"{wrong}/")]).returncode != 0
        assert _run([*publish, "-h", "127.0.0.1", "-p", str(port)]).returncode == 0
        tls_publish = _run([*publish, "-h", "localhost", "-p", str(tls_port), "--cafile", str(certs / "server.crt")])
        assert tls_publish.returncode == 0, tls_publish.stderr
        gateway_as_device = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-u", "gridhub-gateway",
                             "-P", "gateway-secret", "-t", "gridhub/v1/rain/x/telemetry", "-m", "{}"]
        assert _run(gateway_as_device).returncode != 0


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def _moved(text: str, paths: dict[str, str]) -> str:
    for container, here in paths.items():
        text = text.replace(container, here)
    return text


async def _partitions(bootstrap: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {topic["topic"]: len(topic["partitions"]) for topic in await admin.describe_topics(list(kafka.TOPICS))}
    finally:
        await admin.close()
