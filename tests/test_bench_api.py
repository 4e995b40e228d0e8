"""`gridhub bench api` at a tiny size: it runs end to end and its JSON line has the shape every benchmark reports.

Not a timing test: the figures belong to the full-size run, the targets to the benchmark itself.
"""

from __future__ import annotations

import orjson
import pytest
from click.testing import CliRunner

from gridhub.cli import cli

pytestmark = pytest.mark.integration


def test_bench_api_prints_a_json_line_with_value_baseline_ratio_target_and_environment() -> None:
    result = CliRunner().invoke(cli, ["bench", "api", "--cases", "2000", "--clients", "5", "--requests", "60",
                                      "--actions", "2", "--think-ms", "20", "--json"])

    assert result.exit_code == 0, result.output
    document = orjson.loads(result.output.strip().splitlines()[-1])
    assert {"name", "value", "unit", "baseline", "ratio", "target", "met", "environment"} <= document.keys()
    assert (document["name"], document["unit"]) == ("api", "ms p95")
    assert document["value"] > 0 and document["baseline"] > 0 and isinstance(document["met"], bool)
    assert document["details"]["cases"] == 2000
    assert document["details"]["actions"] == 6
    assert {"cpu", "cores", "python", "libraries"} <= document["environment"].keys()
