"""`gridhub simulate sensors`: the city's sensor fleet publishing telemetry until stopped.

The click options live on the `simulate sensors` command in `gridhub/cli/__init__.py`; this module turns them
into a running fleet: where the broker is, which devices, how fast, then the display and the summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from rich.console import Console
from rich.logging import RichHandler

from core.city import DEMO_CITY_DIR
from core.lifecycle import stop_event
from core.settings import Settings
from domain.city import City
from domain.registry import Device
from simulators.fleet import Fleet, FleetError
from simulators.progress import Progress, summary
from simulators.scenario import ScenarioConfig, base_rate, select_devices, speed_for_rate

log = logging.getLogger("gridhub.simulate")

READY_WAIT_S = 60.0


class SimulatorError(Exception):
    """Options or endpoints the simulator cannot work with; the message says which and why."""


@dataclass(frozen=True)
class SensorOptions:
    """The command line of `gridhub simulate sensors`."""

    seed: int = 0
    speed: float | None = None
    rate: float | None = None
    duration_s: float | None = None
    malformed_share: float = 0.01
    devices: int | None = None
    ready_file: Path | None = None


def broker_endpoint(settings: Settings, ready_file: Path | None, wait_s: float = READY_WAIT_S) -> tuple[str, int]:
    """The MQTT broker's host and port: from `gridhub up`'s ready.json if given, else from the settings."""
    if ready_file is None:
        if settings.mqtt.host is not None:
            return settings.mqtt.host, settings.mqtt.port
        bind = settings.mqtt.bind
        return ("127.0.0.1" if bind in ("0.0.0.0", "") else bind), settings.mqtt.port
    deadline = time.monotonic() + wait_s
    while not ready_file.exists():  # `gridhub up` writes it once everything answers
        if time.monotonic() > deadline:
            raise SimulatorError(f"{ready_file}: not written within {wait_s:.0f} s; is `gridhub up` running?")
        time.sleep(0.25)
    try:
        ready = orjson.loads(ready_file.read_bytes())
        return str(ready["mqtt_host"]), int(ready["mqtt_port"])
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SimulatorError(f"{ready_file}: cannot read mqtt_host and mqtt_port: {exc}") from None


def fleet_plan(settings: Settings, city: City, options: SensorOptions) -> tuple[list[Device], ScenarioConfig]:
    """The devices to simulate and the scenario that drives them, with the options checked."""
    devices = list(city.registry)
    if options.devices is not None:
        if not 1 <= options.devices <= len(devices):
            raise SimulatorError(f"--devices must be between 1 and {len(devices)}")
        devices = select_devices(devices, options.devices)
    if options.speed is not None and options.rate is not None:
        raise SimulatorError("give --speed or --rate, not both")
    speed = speed_for_rate(devices, options.rate) if options.rate is not None else options.speed or 1.0
    try:
        config = ScenarioConfig(
            seed=options.seed,
            speed=speed,
            malformed_share=options.malformed_share,
            # over the gateway's limit, so that "too large" is the only thing wrong with it, and within the
            # broker's packet limit (at least 512 bytes above it), which would close the connection instead
            oversized_bytes=settings.gateway.max_payload_bytes + 256,
        )
    except ValueError as exc:
        raise SimulatorError(str(exc)) from None
    return devices, config


def run_sensors(settings: Settings, city: City, options: SensorOptions) -> int:
    """Run the fleet until Ctrl-C, SIGTERM or the duration; 0 after a clean stop, 1 if it could not connect."""
    devices, config = fleet_plan(settings, city, options)
    host, port = broker_endpoint(settings, options.ready_file)
    endpoint = f"{host}:{port}"
    if (settings.city.dir or DEMO_CITY_DIR).resolve() != DEMO_CITY_DIR.resolve():
        log.warning("devices log in with the demo city's credentials; a broker with provisioned secrets "
                    "will refuse them")
    fleet = Fleet(devices, config, host, port, tz=city.calendar.tz, is_workday=city.calendar.is_workday)
    console = Console()
    print(f"simulating {len(devices)} devices of {city.name} → {endpoint} at speed ×{config.speed:.4g} "
          f"(about {base_rate(devices) * config.speed:.1f} msg/s), seed {config.seed}; "
          "Ctrl-C to stop", flush=True)
    rich_log = RichHandler(console=console, show_path=False) if console.is_terminal else None
    if rich_log is not None:  # log lines above the live table instead of through it
        log.addHandler(rich_log)
        log.propagate = False
    try:
        asyncio.run(_run(fleet, Progress(fleet, endpoint, console), options.duration_s))
    except FleetError as exc:
        print(f"gridhub: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if rich_log is not None:
            log.removeHandler(rich_log)
            log.propagate = True
    print(summary(fleet, endpoint), flush=True)
    return 0


async def _run(fleet: Fleet, progress: Progress, duration_s: float | None) -> None:
    stop = stop_event()
    display = asyncio.create_task(progress.run())
    try:
        await fleet.run(stop, duration_s)
    finally:
        display.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await display
