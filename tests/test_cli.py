"""The command line: every DESIGN.md §4 subcommand exists."""

from __future__ import annotations

from click.testing import CliRunner

from gridhub.cli import cli


def test_help_lists_the_subcommands_of_the_design() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("up", "gateway", "worker", "detect", "api", "simulate", "bench"):
        assert f"  {name} " in result.output
