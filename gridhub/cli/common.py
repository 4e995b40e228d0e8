"""What every `gridhub` subcommand shares: the --config option, settings and city loading, failing with
an exit code, service set-up, and printing benchmark results."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from core.city import CityError, load_city
from core.settings import ConfigError, Settings, load_settings
from gridhub.bench import BenchResult

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from domain.city import City

F = TypeVar("F", bound=Callable[..., Any])
EXIT_CONFIG = 2


def config_option(func: F) -> F:
    """`--config FILE`: the YAML settings file (also `GRIDHUB_CONFIG`)."""
    return click.option(
        "--config", "config_file", type=click.Path(path_type=Path), default=None,
        help="YAML settings file (default: $GRIDHUB_CONFIG, else built-in defaults).",
    )(func)


def load(config_file: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """The settings, with logging set up by them; exit 2 with the reason if they are wrong."""
    try:
        settings = load_settings(config_file, overrides)
    except ConfigError as exc:
        fail(f"config error: {exc}", EXIT_CONFIG)
    logging.basicConfig(
        level=settings.log_level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return settings


def service_setup(config_file: Path | None, metrics_port: int | None) -> tuple[Settings, City, Engine]:
    """What a long-running service needs first: settings, the city, metrics and a database with its tables."""
    from core.metrics import serve_metrics
    from storage.db import connect
    from storage.schema import SchemaError, init_db

    settings = load(config_file)
    try:
        city = load_city(settings)
    except CityError as exc:
        fail(f"city error: {exc}", EXIT_CONFIG)
    if metrics_port is not None:
        serve_metrics(settings.metrics.host, metrics_port)
    engine = connect(settings.database_url)
    try:
        init_db(engine)
    except SchemaError as exc:
        fail(str(exc), EXIT_CONFIG)
    return settings, city, engine


def fail(message: str, code: int) -> NoReturn:
    """Print `gridhub: message` to stderr and exit with `code`."""
    click.echo(f"gridhub: {message}", err=True)
    sys.exit(code)


def print_bench(result: BenchResult, env: dict[str, Any], as_json: bool) -> None:
    """A benchmark's table, and with `as_json` its JSON object as the last line."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"gridhub bench {result.name}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(f"{result.name} ({result.unit})", f"{result.value:,.0f}")
    table.add_row(f"baseline ({result.unit})", f"{result.baseline:,.0f}")
    table.add_row("ratio", f"{result.ratio:.2f}")
    for key, value in result.details.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int | float) else str(value))
    table.add_row("target", result.target)
    table.add_row("met", "n/a" if result.met is None else "yes" if result.met else "NO")
    table.add_row("cpu", f"{env['cpu']} × {env['cores']}")
    Console().print(table)
    if as_json:
        click.echo(result.as_json(env).decode())
