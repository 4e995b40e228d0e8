"""The command line: every DESIGN.md §4 subcommand exists; unbuilt ones say so and fail."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from gridhub.cli import EXIT_NOT_BUILT, cli


def test_help_lists_the_subcommands_of_the_design() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("up", "gateway", "worker", "detect", "api", "simulate", "bench"):
        assert f"  {name} " in result.output


@pytest.mark.parametrize(("argv", "issue"), [
    (["detect", "run"], 5),
    (["detect", "offline"], 5),
    (["detect", "eval"], 5),
    (["bench", "detect"], 5),
])
def test_unbuilt_subcommand_says_so_and_exits_non_zero(argv: list[str], issue: int) -> None:
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == EXIT_NOT_BUILT
    assert f"not built yet (issue #{issue})" in result.output
