"""`gridhub detect eval`: precision, recall and mean alert delay by the issue's matching rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from detectors.evaluate import Interval, evaluate, match
from gridhub.cli import EXIT_CONFIG, cli


def _event(kind: str, start: float, end: float, zone: str = "z1", alert: float | None = None,
           camera: str = "cam") -> dict[str, Any]:
    record: dict[str, Any] = {"camera_id": camera, "zone_id": zone, "kind": kind, "start_s": start, "end_s": end,
                              "bbox": None}
    if alert is not None:
        record["alert_s"] = alert
    return record


def _interval(kind: str, start: float, end: float, alert: float | None = None, zone: str = "z1",
              dwell: float | None = None) -> Interval:
    return Interval(0, "cam", zone, kind, start, end, start if alert is None else alert, dwell)


def _write(tmp_path: Path, name: str, truth: list[dict[str, Any]], events: list[dict[str, Any]],
           wrap: bool = False) -> tuple[Path, Path]:
    directory = tmp_path / name
    directory.mkdir()
    truth_path = directory / "truth.json"
    truth_path.write_bytes(orjson.dumps({"camera_id": "cam", "events": truth} if wrap else truth))
    events_path = directory / "events.jsonl"
    events_path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return truth_path, events_path


def test_eval_prints_precision_recall_and_mean_alert_delay_per_kind(tmp_path: Path) -> None:
    truth = [_event("stall", 100, 300), _event("stall", 500, 700), _event("dust", 50, 200)]
    events = [_event("stall", 98, 310, alert=160),  # delay 60
              _event("stall", 505, 690, alert=570),  # delay 70
              _event("stall", 900, 990, alert=960),  # nothing there: a false positive
              _event("dust", 60, 150, alert=90)]  # delay 40
    truth_path, events_path = _write(tmp_path, "clip", truth, events)
    result = CliRunner().invoke(cli, ["detect", "eval", "--truth", str(truth_path), "--events", str(events_path),
                                      "--json"])
    assert result.exit_code == 0, result.output
    kinds = orjson.loads(result.output.splitlines()[-1])["kinds"]
    assert kinds["stall"] == {"truth": 2, "detections": 3, "matched": 2, "precision": 0.667, "recall": 1.0,
                              "mean_alert_delay_s": 65.0, "mean_alert_delay_beyond_dwell_s": None}
    assert kinds["dust"] == {"truth": 1, "detections": 1, "matched": 1, "precision": 1.0, "recall": 1.0,
                             "mean_alert_delay_s": 40.0, "mean_alert_delay_beyond_dwell_s": None}
    assert "0.667" in result.output


def test_each_truth_event_matches_at_most_one_detection() -> None:
    truth = [_interval("stall", 100, 300)]
    detections = [_interval("stall", 100, 200, alert=160), _interval("stall", 210, 300, alert=270)]
    [score] = [s for s in evaluate([(truth, detections)]).values() if s.kind == "stall"]
    assert (score.matched, score.precision, score.recall) == (1, 0.5, 1.0)
    assert score.mean_delay_s == 60.0  # the one that overlaps most is the match


def test_the_matching_is_one_to_one_and_maximal() -> None:
    # Greedy by overlap would give the long detection to the first truth event and leave the second unmatched.
    truth = [_interval("stall", 0, 100), _interval("stall", 60, 200)]
    detections = [_interval("stall", 0, 180, alert=70), _interval("stall", 10, 60)]
    assert sorted(match(truth, detections)) == [(0, 1), (1, 0)]


@pytest.mark.parametrize(("detection", "matches"), [
    (_interval("stall", 250, 400, alert=309), True),  # raised 9 s after the truth ended
    (_interval("stall", 250, 400, alert=311), False),  # raised more than 10 s after
    (_interval("stall", 301, 400, alert=301), False),  # no overlap
    (_interval("stall", 40, 300, alert=99), False),  # raised before the stall was there: something else
    (_interval("stall", 40, 300, alert=100), True),  # raised as it was set down
    (_interval("dust", 100, 300), False),  # another kind
    (_interval("stall", 100, 300, zone="z2"), False),  # another zone
])
def test_a_detection_matches_only_its_camera_zone_and_kind_overlapping_and_raised_in_time(
        detection: Interval, matches: bool) -> None:
    assert bool(match([_interval("stall", 100, 300)], [detection])) is matches


@pytest.mark.parametrize(("box", "matches"), [
    ((100, 200, 60, 40), True),  # the same box
    ((80, 180, 140, 70), True),  # with its vendor beside it: the foot moves down, by less than half its height
    ((70, 150, 20, 60), True),  # a piece at the left edge: the foot half a width outside
    ((300, 200, 60, 40), False),  # another patch of the zone
    ((100, 200, 60, 90), False),  # standing in front of it, its foot well below the stall's
    (None, True),  # a detection without a box is matched on time alone
])
def test_a_stall_detection_matches_only_where_the_stall_stands(box: tuple[int, ...] | None, matches: bool,
                                                              tmp_path: Path) -> None:
    truth = {**_event("stall", 100, 300), "bbox": [100, 200, 60, 40]}
    truth_path, events_path = _write(tmp_path, "a", [truth], [{**_event("stall", 110, 300), "bbox": box}])
    result = CliRunner().invoke(cli, ["detect", "eval", "--truth", str(truth_path), "--events", str(events_path),
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.output.splitlines()[-1])["kinds"]["stall"]["matched"] == int(matches)


def test_a_box_that_is_not_four_numbers_is_refused(tmp_path: Path) -> None:
    truth_path, events_path = _write(tmp_path, "a", [{**_event("stall", 100, 300), "bbox": [1, 2, 3]}], [])
    result = CliRunner().invoke(cli, ["detect", "eval", "--truth", str(truth_path), "--events", str(events_path)])
    assert result.exit_code == EXIT_CONFIG and "bbox" in result.output


def test_clips_are_scored_together_and_never_matched_across(tmp_path: Path) -> None:
    first = _write(tmp_path, "a", [_event("dust", 0, 100)], [], wrap=True)
    second = _write(tmp_path, "b", [], [_event("dust", 0, 100, alert=30)], wrap=True)
    result = CliRunner().invoke(cli, ["detect", "eval", "--truth", str(tmp_path), "--events", str(tmp_path),
                                      "--json"])
    assert result.exit_code == 0, result.output
    document = orjson.loads(result.output.splitlines()[-1])
    assert document["clips"] == 2 and first[0].parent.name == "a" and second[0].parent.name == "b"
    assert document["kinds"]["dust"] == {"truth": 1, "detections": 1, "matched": 0, "precision": 0.0,
                                         "recall": 0.0, "mean_alert_delay_s": None,
                                         "mean_alert_delay_beyond_dwell_s": None}


def test_unpaired_files_are_refused(tmp_path: Path) -> None:
    truth_path, events_path = _write(tmp_path, "a", [], [])
    result = CliRunner().invoke(cli, ["detect", "eval", "--truth", str(truth_path), "--truth", str(truth_path),
                                      "--events", str(events_path)])
    assert result.exit_code == EXIT_CONFIG
    assert "2 truth file(s) but 1 events file(s)" in result.output


def test_a_truth_file_that_is_not_events_is_refused(tmp_path: Path) -> None:
    truth_path, events_path = _write(tmp_path, "a", [], [])
    truth_path.write_text('[{"camera_id": "cam"}]', encoding="utf-8")
    result = CliRunner().invoke(cli, ["detect", "eval", "--truth", str(truth_path), "--events", str(events_path)])
    assert result.exit_code == EXIT_CONFIG
    assert "event 1: missing or invalid field" in result.output


def test_the_delay_beyond_dwell_subtracts_the_dwell_of_each_truth_events_own_zone() -> None:
    truth = [_interval("stall", 100, 300, zone="short", dwell=30),
             _interval("stall", 100, 300, zone="long", dwell=90),
             _interval("stall", 100, 300, zone="unknown")]  # no dwell: counts for the delay only
    detections = [_interval("stall", 100, 300, alert=150, zone="short"),  # 50 s late, 20 s beyond dwell
                  _interval("stall", 100, 300, alert=200, zone="long"),  # 100 s late, 10 s beyond dwell
                  _interval("stall", 100, 300, alert=130, zone="unknown")]  # 30 s late
    score = evaluate([(truth, detections)])["stall"]
    assert (score.mean_delay_s, score.mean_over_dwell_s) == (60.0, 15.0)
    without_dwell = evaluate([(truth[2:], detections[2:])])["stall"]
    assert (without_dwell.mean_delay_s, without_dwell.mean_over_dwell_s) == (30.0, None)


def test_eval_reads_the_dwell_of_the_truth_document_and_reports_the_delay_beyond_it(tmp_path: Path) -> None:
    truth_path, events_path = _write(tmp_path, "clip", [_event("stall", 100, 300, zone="short"),
                                                       _event("stall", 100, 300, zone="long")],
                                     [_event("stall", 100, 300, zone="short", alert=150),
                                      _event("stall", 100, 300, zone="long", alert=200)])
    truth_path.write_bytes(orjson.dumps({"camera_id": "cam", "dwell_s": {"short": 30, "long": 90},
                                         "events": orjson.loads(truth_path.read_bytes())}))
    report = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["detect", "eval", "--truth", str(truth_path), "--events", str(events_path),
                                      "--report", str(report), "--json"])
    assert result.exit_code == 0, result.output
    for document in (orjson.loads(report.read_bytes()), orjson.loads(result.output.splitlines()[-1])):
        stall = document["kinds"]["stall"]
        assert (stall["mean_alert_delay_s"], stall["mean_alert_delay_beyond_dwell_s"]) == (75.0, 15.0)
    assert "delay beyond dwell (s)" in result.output
    row = next(line for line in result.output.splitlines() if line.startswith("│ stall"))
    assert [cell.strip() for cell in row.split("│")[-3:-1]] == ["75.0", "15.0"]  # after the mean alert delay


def test_a_truth_dwell_that_is_not_seconds_is_refused(tmp_path: Path) -> None:
    truth_path, events_path = _write(tmp_path, "a", [], [])
    truth_path.write_text('{"dwell_s": {"z1": "long"}, "events": []}', encoding="utf-8")
    result = CliRunner().invoke(cli, ["detect", "eval", "--truth", str(truth_path), "--events", str(events_path)])
    assert result.exit_code == EXIT_CONFIG
    assert "'dwell_s' must map zone ids to seconds" in result.output


def _clip_with_conditions(tmp_path: Path, name: str, conditions: dict[str, Any], truth: list[dict[str, Any]],
                          events: list[dict[str, Any]]) -> None:
    directory = tmp_path / name
    directory.mkdir(parents=True)
    (directory / "truth.json").write_bytes(orjson.dumps({"camera_id": "cam", "conditions": conditions,
                                                         "events": truth}))
    (directory / "events.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))


def test_eval_breaks_the_figures_down_by_each_condition_of_the_clips_and_writes_them(tmp_path: Path) -> None:
    stall = _event("stall", 100, 300)
    found = _event("stall", 100, 300, alert=150)
    false_alarm = _event("stall", 500, 600, alert=560)
    _clip_with_conditions(tmp_path / "clips", "day-10", {"night": False, "fps": 10.0}, [stall], [found])
    _clip_with_conditions(tmp_path / "clips", "night-10", {"night": True, "fps": 10.0}, [stall], [found, false_alarm])
    _clip_with_conditions(tmp_path / "clips", "night-25", {"night": True, "fps": 25}, [stall], [])
    report = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["detect", "eval", "--truth", str(tmp_path / "clips"),
                                      "--events", str(tmp_path / "clips"), "--report", str(report), "--json"])
    assert result.exit_code == 0, result.output
    document = orjson.loads(report.read_bytes())
    assert orjson.loads(result.output.splitlines()[-1]) == document
    assert document["kinds"]["stall"]["recall"] == 0.667
    night = document["by_condition"]["night"]
    assert (night["false"]["stall"]["precision"], night["false"]["stall"]["recall"]) == (1.0, 1.0)
    assert (night["true"]["stall"]["precision"], night["true"]["stall"]["recall"]) == (0.5, 0.5)
    fps = document["by_condition"]["fps"]
    assert (fps["10"]["stall"]["recall"], fps["25"]["stall"]["recall"]) == (1.0, 0.0)
    assert "dust" not in fps["25"]  # no dust in those clips: no row of zeros
    assert "by condition" in result.output


def test_eval_gives_the_recall_of_each_cause_the_truth_names(tmp_path: Path) -> None:
    digger = {**_event("dust", 100, 200), "cause": "digger"}
    column = {**_event("dust", 300, 400), "cause": "column"}
    unnamed = _event("dust", 500, 600)
    _clip_with_conditions(tmp_path / "clips", "a", {}, [digger, column, unnamed],
                          [_event("dust", 310, 400, alert=350), _event("dust", 510, 600, alert=550)])
    _clip_with_conditions(tmp_path / "clips", "b", {}, [digger], [_event("dust", 100, 190, alert=140)])
    result = CliRunner().invoke(cli, ["detect", "eval", "--truth", str(tmp_path / "clips"),
                                      "--events", str(tmp_path / "clips"), "--json"])
    assert result.exit_code == 0, result.output
    causes = orjson.loads(result.output.splitlines()[-1])["by_cause"]
    assert causes == {"dust": {"column": {"truth": 1, "matched": 1, "recall": 1.0},
                               "digger": {"truth": 2, "matched": 1, "recall": 0.5}}}
    assert "recall by cause" in result.output


def test_eval_lists_the_missed_events_and_the_false_alarms(tmp_path: Path) -> None:
    missed = {**_event("dust", 100, 200), "cause": "digger"}
    _clip_with_conditions(tmp_path / "clips", "a", {}, [missed, _event("dust", 300, 400)],
                          [_event("dust", 310, 400, alert=350), _event("dust", 600, 700, alert=640)])
    report = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["detect", "eval", "--truth", str(tmp_path / "clips"),
                                      "--events", str(tmp_path / "clips"), "--report", str(report), "--list"])
    assert result.exit_code == 0, result.output
    document = orjson.loads(report.read_bytes())
    clip = tmp_path / "clips" / "a"
    assert document["missed"] == [{"truth": str(clip / "truth.json"), "events": str(clip / "events.jsonl"),
                                   "kind": "dust", "zone_id": "z1", "start_s": 100.0, "end_s": 200.0,
                                   "cause": "digger"}]
    assert [(alarm["start_s"], alarm["alert_s"]) for alarm in document["false_alarms"]] == [(600.0, 640.0)]
    assert "missed (1)" in result.output and "false alarms (1)" in result.output
    assert "640.0" in result.output


def test_truth_from_the_first_generator_states_its_conditions(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["simulate", "cameras", "--scene", "street", "--seed", "3", "--seconds", "2",
                                      "--fps", "5", "--out", str(tmp_path / "clip")])
    assert result.exit_code == 0, result.output
    conditions = orjson.loads((tmp_path / "clip" / "truth.json").read_bytes())["conditions"]
    assert conditions == {"generator": "first", "fps": 5.0, "resolution": "640x360", "night": False, "shake": False,
                          "weather": "clear", "exposure_pumping": False, "compression": "normal",
                          "dropped_frames": False}
