"""The command line: every documented subcommand exists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from core import metrics
from gridhub.cli import cli
from gridhub.cli.common import service_setup


def test_help_lists_the_subcommands_of_the_design() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("up", "gateway", "worker", "detect", "api", "simulate", "bench"):
        assert f"  {name} " in result.output


def test_a_service_serves_its_metrics_on_the_configured_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[tuple[str, int]] = []
    monkeypatch.setattr(metrics, "serve_metrics", lambda host, port: served.append((host, port)))
    monkeypatch.setenv("GRIDHUB_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("GRIDHUB_METRICS__HOST", "10.0.0.7")

    service_setup(None, metrics_port=9464)

    assert served == [("10.0.0.7", 9464)]


def test_a_missing_secret_file_is_a_config_error_naming_its_setting(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GRIDHUB_")}
    environ.update(GRIDHUB_DATABASE__URL="postgresql+psycopg://gridhub@127.0.0.1:1/gridhub",
                   GRIDHUB_DATABASE__PASSWORD_FILE=str(tmp_path / "postgres_password"))
    done = subprocess.run([sys.executable, "-m", "gridhub", "db", "upgrade"], env=environ, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2
    missing = tmp_path / "postgres_password"
    assert done.stderr.strip().endswith(
        f"config error: database.password_file: cannot read {missing}: No such file or directory")
