"""`gridhub detect ...` and `gridhub bench detect`: the camera detectors (issue #5)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import click

from core.city import CityError, load_cameras, load_city
from domain.registry import Camera
from gridhub.cli.common import EXIT_CONFIG, config_option, fail, load, print_bench

if TYPE_CHECKING:
    from detectors.evaluate import Interval, KindScore

EXIT_SOURCE = 4  # the video source cannot be opened or decoded
EXIT_TRUNCATED = 5  # the file ends before the frames its container announces: analysed as far as it goes


@click.group()
def detect() -> None:
    """Camera detectors: street stalls and construction dust."""


@detect.command("run")
@config_option
@click.option("--camera", "camera_files", multiple=True, type=click.Path(path_type=Path),
              help="Camera YAML (one camera or a list); repeatable. Default: the city's cameras.")
@click.option("--metrics-port", type=int, help="Serve Prometheus metrics on this port (when run on its own).")
def detect_run(config_file: Path | None, camera_files: tuple[Path, ...], metrics_port: int | None) -> None:
    """Run the detectors on the configured cameras and produce detections to Kafka.

    Per camera, the metrics count frames analysed and dropped, source reconnects, pipeline failures and
    detections, and show whether the source delivers (gridhub_detect_*)."""
    from core.lifecycle import mark_ready, stop_event
    from core.metrics import serve_metrics
    from detectors.runner import run
    from simulators.cameras import Scene
    from storage.evidence import DirectoryEvidence

    settings = load(config_file)
    if camera_files:
        cameras = [camera for path in camera_files for camera in _read_cameras(path)]
    else:
        try:
            cameras = list(load_city(settings).registry.cameras.values())
        except CityError as exc:
            fail(f"city error: {exc}", EXIT_CONFIG)
    if not cameras:
        fail("no cameras configured", EXIT_CONFIG)
    twice = [camera_id for camera_id, count in Counter(camera.id for camera in cameras).items() if count > 1]
    if twice:
        fail(f"camera {twice[0]} is given more than once; camera ids must be unique", EXIT_CONFIG)
    evidence = DirectoryEvidence(settings.evidence_dir)
    if metrics_port is not None:
        serve_metrics(settings.metrics.host, metrics_port)

    async def main() -> None:
        await run(cameras, settings.kafka.bootstrap_servers, evidence, stop_event(), ready=mark_ready,
                  scenes=lambda camera: Scene.for_camera(camera, camera.width, camera.height).frame_at,
                  settings=settings.detect)

    asyncio.run(main())
    logging.getLogger("gridhub.detect").info("detectors stopped")


@detect.command("offline")
@config_option
@click.option("--camera", "camera_file", required=True, type=click.Path(path_type=Path),
              help="Camera YAML (as in the city's cameras.yaml): id, source, grid_code, fps, width, height, zones.")
@click.option("--camera-id", help="Which camera, when the YAML lists several.")
@click.option("--source", "clip", help="Video file to analyse (default: the camera's source).")
@click.option("--events", "events_file", required=True, type=click.Path(path_type=Path),
              help="Where to write one JSON line per detection.")
def detect_offline(config_file: Path | None, camera_file: Path, camera_id: str | None, clip: str | None,
                   events_file: Path) -> None:
    """Run the detectors over a clip and write one JSON line per detection.

    Exits 4 if the clip cannot be read at all, and 5 (after writing what it found) if it ends before the
    frames its container announces."""
    from detectors.offline import check_writable, detect_clip, write_jsonl
    from detectors.sources import SourceError

    settings = load(config_file)
    cameras = _read_cameras(camera_file)
    if not cameras:
        fail(f"{camera_file}: holds no camera", EXIT_CONFIG)
    chosen = [c for c in cameras if camera_id in (None, c.id)]
    if len(chosen) != 1:
        fail(f"{camera_file}: " + (f"no camera {camera_id}" if camera_id else
                                   "lists several cameras; choose one with --camera-id"), EXIT_CONFIG)
    camera = chosen[0]
    source = clip or camera.source
    if not source or source.startswith("sim://"):
        fail(f"camera {camera.id}: offline analysis needs a video file (--source)", EXIT_CONFIG)
    try:
        check_writable(events_file)
    except OSError as exc:
        fail(f"--events {events_file}: cannot write there: {exc.strerror or exc}", EXIT_CONFIG)
    try:
        analysis = detect_clip(camera, source, settings.detect)
    except SourceError as exc:
        fail(f"cannot analyse the clip: {exc}", EXIT_SOURCE)
    write_jsonl(analysis.detections, events_file)
    reader = analysis.reader
    click.echo(f"camera {camera.id}: {reader.describe()}; {len(analysis.detections)} detection(s) written to "
               f"{events_file}", err=True)
    if reader.truncated:
        fail(f"{source}: the file ends after {reader.read} of the {reader.announced} frames its container "
             f"announces (truncated or damaged); the detections cover its first {reader.last_t:.1f} s",
             EXIT_TRUNCATED)


@detect.command("eval")
@click.option("--truth", "truth", multiple=True, required=True, type=click.Path(exists=True, path_type=Path),
              help="Truth JSON (a list of events or {events: [...]}) or a directory of them; repeatable.")
@click.option("--events", "events", multiple=True, required=True, type=click.Path(exists=True, path_type=Path),
              help="Detections JSONL from `detect offline`, or a directory of them; repeatable, paired in order.")
@click.option("--json", "as_json", is_flag=True, help="Also print one JSON object as the last line.")
@click.option("--report", "report_file", type=click.Path(path_type=Path), default=None,
              help="Write the figures, overall, by condition and by cause, and the missed events and false alarms, "
                   "to this JSON file.")
@click.option("--list", "listing", is_flag=True, help="Also list the missed events and the false alarms.")
def detect_eval(truth: tuple[Path, ...], events: tuple[Path, ...], as_json: bool, report_file: Path | None,
                listing: bool) -> None:
    """Score detections against ground truth: precision, recall, alert delay; per kind, and per condition of
    the clips (generator, fps, resolution, night, shake, weather, …) where the truth files state them; recall
    per cause where the truth events name theirs."""
    import orjson
    from rich.console import Console
    from rich.table import Table

    from detectors.evaluate import (
        EvalInputError,
        breakdown,
        by_cause,
        evaluate,
        pair_files,
        read_conditions,
        read_dwell,
        read_events,
        unmatched,
    )

    try:
        pairs = pair_files(truth, events)
        clips = [(read_events(t, clip, read_dwell(t)), read_events(e, clip), read_conditions(t))
                 for clip, (t, e) in enumerate(pairs)]
    except EvalInputError as exc:
        fail(str(exc), EXIT_CONFIG)
    scores = evaluate((found, detected) for found, detected, _ in clips)
    by_condition = breakdown(clips)
    causes = by_cause((found, detected) for found, detected, _ in clips)
    missed, false_alarms = unmatched((found, detected) for found, detected, _ in clips)
    columns = ("truth", "detections", "matched", "precision", "recall", "mean alert delay (s)",
               "delay beyond dwell (s)")
    table = Table(title=f"gridhub detect eval ({len(pairs)} clip(s))")
    for column in ("kind", *columns):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for score in scores.values():
        table.add_row(score.kind, *_figures(score))
    console = Console(width=max(Console().width, 156))  # the breakdown's columns, unabridged in a log file too
    console.print(table)
    if by_condition:
        table = Table(title="by condition")
        for column in ("condition", "value", "clips", "kind", *columns):
            table.add_column(column, justify="left" if column in ("condition", "value", "kind") else "right")
        for name, values in by_condition.items():
            for value, kinds in values.items():
                count = sum(1 for _, _, conditions in clips if conditions.get(name, "unknown") == value)
                for score in kinds.values():
                    table.add_row(name, value, str(count), score.kind, *_figures(score))
        console.print(table)
    if causes:
        table = Table(title="recall by cause (as the truth names it)")
        for column in ("kind", "cause", "truth", "matched", "recall"):
            table.add_column(column, justify="left" if column in ("kind", "cause") else "right")
        for kind, by_kind in causes.items():
            for cause, cause_score in by_kind.items():
                table.add_row(kind, cause, str(cause_score.truth), str(cause_score.matched),
                              _figure(cause_score.recall))
        console.print(table)
    if listing:
        for title, intervals, detected in (("missed", missed, False), ("false alarms", false_alarms, True)):
            table = Table(title=f"{title} ({len(intervals)})")
            for column in ("clip", "kind", "zone", "start (s)", "end (s)", "alert (s)", "cause"):
                table.add_column(column, justify="right" if column.endswith("(s)") else "left")
            for interval in intervals:
                table.add_row(str(pairs[interval.clip][0].parent), interval.kind, interval.zone_id,
                              f"{interval.start_s:.1f}", f"{interval.end_s:.1f}",
                              f"{interval.alert_s:.1f}" if detected else "", interval.cause or "")
            console.print(table)
    document = {"clips": len(pairs), "kinds": {kind: score.as_dict() for kind, score in scores.items()},
                "by_condition": {name: {value: {kind: score.as_dict() for kind, score in kinds.items()}
                                        for value, kinds in values.items()} for name, values in by_condition.items()},
                "by_cause": {kind: {cause: cause_score.as_dict() for cause, cause_score in by_kind.items()}
                             for kind, by_kind in causes.items()},
                "missed": [_listed(event, pairs, False) for event in missed],
                "false_alarms": [_listed(detection, pairs, True) for detection in false_alarms]}
    if report_file is not None:
        try:
            report_file.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        except OSError as exc:
            fail(f"--report {report_file}: cannot write: {exc.strerror or exc}", EXIT_CONFIG)
    if as_json:
        click.echo(orjson.dumps(document).decode())


@click.command("detect")
@click.option("--seconds", default=30.0, show_default=True, help="Length of the generated clip (25 fps).")
@click.option("--size", default="640x360", show_default=True, metavar="WIDTHxHEIGHT",
              help="Frame size of the clip: the 640x360 scene scaled to it (even sizes, 160x90 to 3840x2160), "
                   "e.g. 1280x720 or 1920x1080. The target is judged at 640x360 only.")
@click.option("--json", "as_json", is_flag=True, help="Also print one JSON object as the last line.")
def bench_detect(seconds: float, size: str, as_json: bool) -> None:
    """Detector pipeline frames per second per core against bare decode + MOG2."""
    from gridhub.bench import environment
    from gridhub.bench.detect import parse_size, run

    try:
        width, height = parse_size(size)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=click.get_current_context(), param_hint="'--size'") from None
    logging.basicConfig(level=logging.WARNING)
    result = run(seconds, width, height)
    print_bench(result, environment(), as_json)


def _read_cameras(path: Path) -> list[Camera]:
    try:
        return load_cameras(path)
    except CityError as exc:
        fail(str(exc), EXIT_CONFIG)


def _listed(interval: Interval, pairs: list[tuple[Path, Path]], detected: bool) -> dict[str, object]:
    """A missed event or a false alarm in the report: which clip (its truth and events files), kind, zone, when,
    and when it was raised (a detection) or what made it (a truth event, where its document says)."""
    listed: dict[str, object] = {"truth": str(pairs[interval.clip][0]), "events": str(pairs[interval.clip][1]),
                                 "kind": interval.kind, "zone_id": interval.zone_id, "start_s": interval.start_s,
                                 "end_s": interval.end_s}
    if detected:
        listed["alert_s"] = interval.alert_s
    else:
        listed["cause"] = interval.cause
    return listed


def _figures(score: KindScore) -> tuple[str, ...]:
    return (str(score.truth), str(score.detections), str(score.matched), _figure(score.precision),
            _figure(score.recall), _figure(score.mean_delay_s, 1), _figure(score.mean_over_dwell_s, 1))


def _figure(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
