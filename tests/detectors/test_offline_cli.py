"""`gridhub detect offline`: its JSON-lines output format, and failing clearly on bad input."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import orjson
import yaml
from click.testing import CliRunner

from gridhub.cli import EXIT_CONFIG, cli
from gridhub.cli.detect import EXIT_SOURCE, EXIT_TRUNCATED
from tests.detectors.conftest import SIDEWALK


def _camera_yaml(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "camera.yaml"
    path.write_text(yaml.safe_dump({"id": "cam-street", "source": source, "grid_code": "310104003001002", "fps": 5,
                                    "zones": [{"id": "sidewalk", "kind": "no_vending", "polygon": SIDEWALK,
                                               "dwell_s": 20}]}), encoding="utf-8")
    return path


def test_offline_writes_one_json_line_per_detection_in_the_design_format(stall_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(cli, ["detect", "offline", "--camera", str(_camera_yaml(tmp_path, "unused.avi")),
                                      "--source", str(stall_clip), "--events", str(out)])
    assert result.exit_code == 0, result.output
    [line] = out.read_bytes().splitlines()
    record = orjson.loads(line)
    assert list(record) == ["camera_id", "zone_id", "kind", "start_s", "end_s", "confidence", "bbox", "alert_s"]
    assert (record["camera_id"], record["zone_id"], record["kind"]) == ("cam-street", "sidewalk", "stall")
    assert 0 < record["confidence"] <= 1 and len(record["bbox"]) == 4


def test_offline_reads_the_camera_source_when_no_clip_is_given(stall_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(cli, ["detect", "offline", "--camera", str(_camera_yaml(tmp_path, str(stall_clip))),
                                      "--events", str(out)])
    assert result.exit_code == 0, result.output
    assert len(out.read_bytes().splitlines()) == 1


def test_offline_on_garbage_bytes_fails_with_a_clear_message(tmp_path: Path) -> None:
    garbage = tmp_path / "clip.mp4"
    garbage.write_bytes(np.random.default_rng(2).bytes(100_000))
    result = CliRunner().invoke(cli, ["detect", "offline", "--camera", str(_camera_yaml(tmp_path, str(garbage))),
                                      "--events", str(tmp_path / "events.jsonl")])
    assert result.exit_code == EXIT_SOURCE
    assert "cannot analyse the clip" in result.output and "clip.mp4" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "events.jsonl").exists()


def test_offline_with_an_invalid_camera_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "camera.yaml"
    path.write_text("id: cam\nzones: [{id: z, kind: parking, polygon: [[0, 0], [1, 0], [1, 1]]}]\n",
                    encoding="utf-8")
    result = CliRunner().invoke(cli, ["detect", "offline", "--camera", str(path), "--source", "x.avi",
                                      "--events", str(tmp_path / "out.jsonl")])
    assert result.exit_code == EXIT_CONFIG
    assert "camera cam: zone z: kind: must be no_vending, shopfront or construction" in result.output


def test_offline_refuses_a_misspelt_camera_key_by_name(tmp_path: Path) -> None:
    path = tmp_path / "camera.yaml"
    path.write_text("id: cam\nfsp: 25\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["detect", "offline", "--camera", str(path), "--source", "x.avi",
                                      "--events", str(tmp_path / "out.jsonl")])
    assert result.exit_code == EXIT_CONFIG
    assert f"{path}: camera cam: fsp: unknown key" in result.output


def test_offline_refuses_a_camera_file_that_is_not_utf8_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "camera.yaml"
    path.write_bytes("id: 湖南路-02\n".encode("gb18030"))
    result = CliRunner().invoke(cli, ["detect", "offline", "--camera", str(path), "--source", "x.avi",
                                      "--events", str(tmp_path / "out.jsonl")])
    assert result.exit_code == EXIT_CONFIG
    assert "not UTF-8 text" in result.output and "Traceback" not in result.output


def test_an_events_path_that_cannot_be_written_is_refused_before_the_clip_is_read(tmp_path: Path) -> None:
    camera = _camera_yaml(tmp_path, str(tmp_path / "absent.avi"))  # reading it first would fail with EXIT_SOURCE
    for events, reason in ((tmp_path / "no-such-dir" / "events.jsonl", "No such file or directory"),
                           (tmp_path, "is a directory")):
        result = CliRunner().invoke(cli, ["detect", "offline", "--camera", str(camera), "--events", str(events)])
        assert result.exit_code == EXIT_CONFIG, result.output
        assert f"--events {events}: cannot write there: {reason}" in result.output


def test_a_truncated_clip_is_analysed_as_far_as_it_goes_and_reported(stall_clip: Path, tmp_path: Path) -> None:
    whole = stall_clip.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole[:len(whole) * 3 // 4])
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(cli, ["detect", "offline", "--camera", str(_camera_yaml(tmp_path, str(cut))),
                                      "--events", str(out)])
    assert result.exit_code == EXIT_TRUNCATED, result.output
    assert re.search(r"cut\.avi: the file ends after \d+ of the \d+ frames its container announces \(truncated "
                     r"or damaged\); the detections cover its first [\d.]+ s", result.output), result.output
    assert re.search(r"camera cam-street: \d+ frames read of \d+ announced", result.output)
    assert out.exists()  # what it found is written
