"""One typed settings tree, loaded from a YAML file and `GRIDHUB_*` environment variables.

Precedence: command-line overrides > environment > YAML file > defaults. Nested keys use `__` in the
environment (`GRIDHUB_MQTT__PORT=1884`). Unknown keys are errors that name the key and where it came
from. Secrets (`SecretStr` fields) come only from the environment or from a `*_file` setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date, time
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url

from core.detect_settings import DustSettings, StallSettings
from core.lifecycle import READY_FILE_ENV

ENV_PREFIX = "GRIDHUB_"
#: Environment variables with the prefix that are not settings.
ENV_NOT_SETTINGS = frozenset({"GRIDHUB_CONFIG", READY_FILE_ENV, "GRIDHUB_TEST_POSTGRES_URL"})


class ConfigError(Exception):
    """A configuration problem, phrased as one line: where, which key, and why."""


def read_secret(key: str, path: Path) -> str:
    """A secret from its file (a Docker or Kubernetes secret), stripped; ConfigError naming `key` if unreadable.

    Read when used, not when the settings load: a command that does not need the secret does not need its file."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CitySettings(_Section):
    """Which city to load: a directory with city.yaml, cells.geojson, devices.csv, cameras.yaml,
    taxonomy.csv and routing.csv. Empty means the demo city shipped with GridHub."""

    dir: Path | None = None


class MqttSettings(_Section):
    """The MQTT broker devices publish to. No host means the embedded broker on `bind`:`port`: Mosquitto
    when its binary is installed (`embedded: auto`), amqtt otherwise. Devices connect to `port`, where the
    broker uses each device's username as its client id; the hub's own accounts (gateways) connect to
    `hub_port` (empty: `port`, for a broker without a separate hub listener). `auth_dir` holds the broker's
    password and ACL files; empty means `mqtt/` in the state directory."""

    host: str | None = None
    embedded: Literal["auto", "mosquitto", "amqtt"] = "auto"
    bind: str = "127.0.0.1"
    port: int = Field(1883, ge=0, le=65535)
    hub_bind: str = "127.0.0.1"
    hub_port: int | None = Field(None, ge=0, le=65535)
    # The largest MQTT packet the broker accepts: the gateway's largest valid payload plus topic and header.
    max_packet_bytes: int = Field(8192, ge=1024, le=268_435_455)
    # Per persistent session (the gateway's): messages sent and not yet acknowledged, and messages queued
    # beyond those while the session is slow or offline. Overflow is logged and counted, never silent.
    max_inflight_messages: int = Field(5000, ge=1, le=65535)
    max_queued_messages: int = Field(1_000_000, ge=1)
    max_queued_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    username: str = "gridhub-gateway"
    password: SecretStr | None = None
    password_file: Path | None = None
    auth_dir: Path | None = None

    @model_validator(mode="after")
    def _one_password_source(self) -> MqttSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give the MQTT password either in the environment or in password_file, not both")
        return self


class KafkaSettings(_Section):
    """The Kafka cluster. No bootstrap means the embedded Kafka-compatible broker (Tansu) on `port`.

    GridHub creates its topics when they are missing, with `partitions` (the most workers that share the load)
    and `replication_factor` (3 on a production cluster of three or more brokers)."""

    bootstrap: str | None = None
    port: int = Field(9092, ge=0, le=65535)
    partitions: int = Field(6, ge=1, le=256)
    replication_factor: int = Field(1, ge=1, le=16)
    # Idempotent producers (no duplicate or reordered batch when a send is retried). Empty: on for a Kafka
    # cluster, off for the embedded Tansu, which answers InitProducerId with an error.
    idempotence: bool | None = None
    tansu_bin: Path | None = None

    @property
    def idempotent(self) -> bool:
        """Whether producers ask the cluster for idempotent delivery."""
        return self.idempotence if self.idempotence is not None else self.bootstrap is not None

    @property
    def bootstrap_servers(self) -> str:
        """Where clients connect: the configured bootstrap, or the embedded broker on this machine's `port`."""
        return self.bootstrap or f"127.0.0.1:{self.port}"


class GatewaySettings(_Section):
    """The MQTT ingestion gateway: validation limits, batching and back-pressure."""

    client_id: str = "gridhub-gateway-1"
    # Replicas of one scaled gateway service share this directory: each takes the lowest free slot N (a lock
    # held while it runs) and is `<mqtt.username>-N`, the same session after a restart. Unset: `client_id`.
    slots_dir: Path | None = None
    # paho parses MQTT 5 properties on every message: measured here, a bare paho subscriber receives
    # 13,700 QoS 1 msg/s over 3.1.1 but 6,600 over 5. Mosquitto and EMQX accept $share over 3.1.1 too.
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    shared_subscription: bool = True  # off for brokers without $share, such as the embedded amqtt
    share_group: str = "gridhub"
    max_payload_bytes: int = Field(4096, ge=64, le=1_048_576)
    future_tolerance_s: int = Field(300, ge=0)
    late_after_s: int = Field(300, ge=0)
    max_lateness_s: int = Field(6 * 3600, ge=0)
    dedupe_cache_size: int = Field(200_000, ge=1000)
    batch_linger_ms: int = Field(20, ge=0, le=1000)
    max_inflight: int = Field(20_000, ge=10)

    @model_validator(mode="after")
    def _windows_in_order(self) -> GatewaySettings:
        if self.late_after_s > self.max_lateness_s:
            raise ValueError("late_after_s must not exceed max_lateness_s")
        return self


class TelemetryStoreSettings(_Section):
    """Where normalised telemetry is kept for queries: the SQL database, or InfluxDB 2."""

    backend: Literal["sql", "influxdb"] = "sql"
    batch_max: int = Field(5000, ge=1)
    linger_ms: int = Field(200, ge=0, le=10_000)  # longest a fetched record waits for its batch to fill
    influx_url: str = "http://127.0.0.1:8086"
    influx_org: str = "gridhub"
    influx_bucket: str = "telemetry"
    influx_token: SecretStr | None = None
    influx_token_file: Path | None = None

    def token(self) -> str | None:
        """The InfluxDB token from the environment or its file, if any."""
        if self.influx_token is not None:
            return self.influx_token.get_secret_value()
        if self.influx_token_file is not None:
            return read_secret("telemetry_store.influx_token_file", self.influx_token_file)
        return None


class DatabaseSettings(_Section):
    """The case and registry database. No URL means SQLite in the state directory.

    `password_file` keeps the password out of the URL (and out of the environment): a Docker or Kubernetes
    secret, read when the URL is used."""

    url: str | None = None
    password_file: Path | None = None

    @model_validator(mode="after")
    def _password_for_a_url(self) -> DatabaseSettings:
        if self.password_file is not None and self.url is None:
            raise ValueError("database.password_file needs database.url (SQLite has no password)")
        return self


class ApiSettings(_Section):
    """The HTTP API and web console."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(64 * 1024, ge=1024)  # a JSON request body
    max_upload_bytes: int = Field(8 * 1024 * 1024, ge=1024)  # a photo (Open311 media, handling feedback)
    write_rate_per_s: float = Field(5.0, gt=0)  # writes per token, sustained
    write_burst: int = Field(30, ge=1)  # writes per token in a burst
    citizen_rate_per_min: float = Field(10.0, gt=0)  # anonymous Open311 reports per client address
    public_docs: bool = False  # /docs and /openapi.json without a token from other machines
    public_metrics: bool = False  # /metrics without a token from other machines
    command_timeout_s: float = Field(10.0, gt=0)  # how long an action waits for the stream worker's answer


class MetricsSettings(_Section):
    """Prometheus metrics of a service run on its own (`--metrics-port`); under `gridhub up` the API serves them."""

    host: str = "127.0.0.1"  # the address the metrics port listens on; 0.0.0.0 for every interface


class SlaSettings(_Section):
    """The SLA calendar: time zone, working periods of a working day, and the city's own day overrides."""

    timezone: str = "Asia/Shanghai"
    working_periods: list[tuple[time, time]] = Field(default_factory=lambda: [(time(8, 30), time(17, 30))])
    extra_holidays: list[date] = Field(default_factory=list)
    extra_workdays: list[date] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class StreamsSettings(_Section):
    """The stream worker: rule thresholds, correlation and lifecycle automation."""

    app_id: str = "gridhub-streams"
    rain_short_heavy_1h_mm: float = Field(20.0, gt=0)  # 短时强降水
    rain_blue_12h_mm: float = Field(50.0, gt=0)
    rain_yellow_6h_mm: float = Field(50.0, gt=0)
    rain_orange_3h_mm: float = Field(50.0, gt=0)
    rain_red_3h_mm: float = Field(100.0, gt=0)
    manhole_tilt_deg: float = Field(15.0, gt=0)
    manhole_water_margin_cm: float = Field(30.0, ge=0)
    manhole_rain_lookback_s: int = Field(6 * 3600, ge=0)
    crowd_warning_per_m2: float = Field(2.0, gt=0)
    crowd_urgent_per_m2: float = Field(4.0, gt=0)
    crowd_sustain_s: int = Field(120, ge=0)
    offline_after_intervals: float = Field(3.0, gt=0)
    camera_autofile_confidence: float = Field(0.9, ge=0, le=1)
    allowed_lateness_s: int = Field(6 * 3600, ge=0)
    evidence_every_s: int = Field(600, ge=0)  # a source adds evidence to an open case at most this often
    undo_window_s: int = Field(120, ge=0)  # an operator may undo a review decision this long after making it
    batch_max: int = Field(2000, ge=1)
    linger_ms: int = Field(50, ge=0, le=10_000)
    checkpoint_interval_s: float = Field(2.0, gt=0)
    escalation_check_s: float = Field(10.0, gt=0)
    session_timeout_s: float = Field(6.0, ge=3)  # short: a group join takes about half of it on the embedded Kafka

    @model_validator(mode="after")
    def _ordered(self) -> StreamsSettings:
        if self.crowd_urgent_per_m2 < self.crowd_warning_per_m2:
            raise ValueError("crowd_urgent_per_m2 must be at least crowd_warning_per_m2")
        if self.rain_red_3h_mm < self.rain_orange_3h_mm:
            raise ValueError("rain_red_3h_mm must be at least rain_orange_3h_mm")
        return self


class DetectSettings(_Section):
    """Camera detectors (`gridhub detect run`, `detect offline`): where evidence snapshots go, and the
    detectors' tunables (`core/detect_settings.py`)."""

    evidence_dir: Path | None = None  # default: STATE_DIR/evidence
    stall: StallSettings = StallSettings()
    dust: DustSettings = DustSettings()


class Settings(_Section):
    """Everything GridHub can be told."""

    state_dir: Path = Path(".gridhub")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    city: CitySettings = CitySettings()
    mqtt: MqttSettings = MqttSettings()
    kafka: KafkaSettings = KafkaSettings()
    database: DatabaseSettings = DatabaseSettings()
    gateway: GatewaySettings = GatewaySettings()
    telemetry_store: TelemetryStoreSettings = TelemetryStoreSettings()
    api: ApiSettings = ApiSettings()
    metrics: MetricsSettings = MetricsSettings()
    sla: SlaSettings = SlaSettings()
    streams: StreamsSettings = StreamsSettings()
    detect: DetectSettings = DetectSettings()

    @model_validator(mode="after")
    def _packets_fit_payloads(self) -> Settings:
        if self.mqtt.max_packet_bytes < self.gateway.max_payload_bytes + 512:
            raise ValueError("mqtt.max_packet_bytes must exceed gateway.max_payload_bytes by at least 512 "
                             "(topic and header)")
        return self

    @property
    def evidence_dir(self) -> Path:
        """Where snapshots and photos are kept: `detect.evidence_dir`, or `evidence` in the state directory."""
        return self.detect.evidence_dir or self.state_dir / "evidence"

    @property
    def database_url(self) -> str:
        """The configured database URL (with the password from `database.password_file`), or SQLite in the
        state directory. It may hold a password: show it with `storage.db.shown`."""
        if self.database.url is None:
            return f"sqlite:///{self.state_dir / 'gridhub.db'}"
        if self.database.password_file is None:
            return self.database.url
        password = read_secret("database.password_file", self.database.password_file)
        return make_url(self.database.url).set(password=password).render_as_string(hide_password=False)

    def mqtt_password(self) -> str | None:
        """The MQTT password from the environment or its file, if any."""
        if self.mqtt.password is not None:
            return self.mqtt.password.get_secret_value()
        if self.mqtt.password_file is not None:
            return read_secret("mqtt.password_file", self.mqtt.password_file)
        return None


def load_settings(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load settings; raise ConfigError naming the source, key and reason of the first problem."""
    environ = os.environ if environ is None else environ
    if config_file is None and environ.get("GRIDHUB_CONFIG"):
        config_file = Path(environ["GRIDHUB_CONFIG"])
    layers: list[tuple[str, dict[str, Any]]] = []
    if config_file is not None:
        layers.append((str(config_file), _read_yaml(config_file)))
    layers.append(("environment", _from_environment(environ)))
    layers.append(("command line", _nest(overrides or {})))

    merged: dict[str, Any] = {}
    for _, data in layers:
        _deep_merge(merged, data)
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        source = _source_of(error["loc"], layers)
        # pydantic prefixes the message of a rule's ValueError with "Value error, ": the rule says it all
        reason = "unknown key" if error["type"] == "extra_forbidden" else error["msg"].removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        if not key:  # a rule across sections: it names its keys itself
            raise ConfigError(f"settings: {reason}{more}") from None
        raise ConfigError(f"{source}: {key}: {reason}{more}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                          "save the file as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{line}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config file must be a mapping of settings, not {type(data).__name__}")
    _reject_secrets(path, data, Settings, ())
    return data


def _reject_secrets(path: Path, data: Mapping[str, Any], model: type[BaseModel], prefix: tuple[str, ...]) -> None:
    for key, value in data.items():
        field = model.model_fields.get(str(key))
        if field is None:
            continue
        dotted = ".".join((*prefix, str(key)))
        annotation = field.annotation
        if annotation is not None and SecretStr in getattr(annotation, "__args__", (annotation,)):
            env_name = ENV_PREFIX + "__".join((*prefix, str(key))).upper()
            raise ConfigError(
                f"{path}: {dotted}: secrets may not be written in the config file; "
                f"set {env_name} or {dotted}_file"
            )
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, Mapping):
            _reject_secrets(path, value, annotation, (*prefix, str(key)))


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    flat = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_NOT_SETTINGS:
            continue
        path = name[len(ENV_PREFIX):].lower()
        parsed: Any = value
        if value[:1] in "[{":
            try:
                parsed = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise ConfigError(f"environment {name}: value is not valid JSON") from None
        flat[path.replace("__", ".")] = parsed
    return _nest(flat)


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        parts = dotted.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{dotted}: {part} is not a section")
        node[parts[-1]] = value
    return nested


def _deep_merge(into: dict[str, Any], data: Mapping[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def _source_of(loc: tuple[int | str, ...], layers: list[tuple[str, dict[str, Any]]]) -> str:
    """Name the layer (file, environment, command line) that supplied the value at `loc`."""
    missing = object()
    for layer, data in reversed(layers):
        node: Any = data
        for part in loc:
            if not isinstance(node, Mapping):
                break  # the problem lies inside this value, e.g. an item of a list
            node = node.get(part, missing)
            if node is missing:
                break
        if node is not missing:
            if layer == "environment":
                return "environment " + ENV_PREFIX + "__".join(str(p) for p in loc[:2]).upper()
            return str(layer)
    return "settings"
