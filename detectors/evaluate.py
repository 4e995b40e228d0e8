"""`gridhub detect eval`: precision, recall and mean alert delay of detections against ground truth, per kind.

Matching (issue #5): a detection matches a truth event of the same clip, camera, zone and kind when their
intervals [start_s, end_s] overlap and the detection was raised (its `alert_s`, else its `start_s`) no earlier
than the truth's start (an episode raised before the plume rose is not that plume, even if it goes on into it) and
no later than the truth's end + 10 s, and, where both carry a box (`bbox`, x y w h in source pixels: the stalls), the
detection's foot (the middle of its box's bottom edge) lies in the truth's box grown by half its width and
height on every side: a detection of another patch of the zone, raised while a stall stood, is not that stall
(the stall's vendor or a customer in the detection's box moves its foot, by less than that). Each truth event
matches at most one detection and each detection at most one truth event. Among the allowed pairs the
assignment is a maximum one-to-one matching (augmenting paths), trying pairs in order of decreasing overlap,
so a detection that could serve two truth events takes the one it overlaps most unless that would leave the
other unmatched.

Precision = matched detections / detections; recall = matched truth events / truth events; alert delay of a
match = the detection's `alert_s` − the truth's `start_s`, averaged over the matches of the kind. The delay
beyond dwell of a match = that delay − the dwell of the truth's zone (the truth document's `dwell_s` map),
averaged over the matches whose zone has one: the target is "mean alert delay ≤ dwell + 5 s", zone by zone.

A truth document may say under what `conditions` its clip was made (the scene generators write the generator,
fps, resolution, night, shake, weather, …); `breakdown` scores the clips of each value of each condition
apart, so a weakness at night or at 25 fps is not averaged away. A truth event may name its `cause` (the second
generator's plume style or stall shape); `by_cause` gives the recall of each. `unmatched` lists the missed events
and the false alarms themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

LATE_ALERT_S = 10.0
KINDS = ("stall", "dust")


class EvalInputError(ValueError):
    """A truth or events file that cannot be read as events."""


@dataclass(frozen=True, slots=True)
class Interval:
    """A truth event or a detection, reduced to what matching needs."""

    clip: int
    camera_id: str
    zone_id: str
    kind: str
    start_s: float
    end_s: float
    alert_s: float
    dwell_s: float | None = None  # of the zone, on truth events whose document states it
    cause: str | None = None  # what made a truth event, where its document says ("digger", "cart")
    box: tuple[float, float, float, float] | None = None  # x, y, width, height in source pixels, where it has one

    @property
    def key(self) -> tuple[int, str, str, str]:
        """What must be equal for two intervals to match."""
        return (self.clip, self.camera_id, self.zone_id, self.kind)


@dataclass(frozen=True, slots=True)
class KindScore:
    """The figures of one kind."""

    kind: str
    truth: int
    detections: int
    matched: int
    mean_delay_s: float | None
    mean_over_dwell_s: float | None

    @property
    def precision(self) -> float | None:
        """Matched detections over detections (None without detections)."""
        return self.matched / self.detections if self.detections else None

    @property
    def recall(self) -> float | None:
        """Matched truth events over truth events (None without truth events)."""
        return self.matched / self.truth if self.truth else None

    def as_dict(self) -> dict[str, Any]:
        """For `--json`."""
        return {"truth": self.truth, "detections": self.detections, "matched": self.matched,
                "precision": _round(self.precision), "recall": _round(self.recall),
                "mean_alert_delay_s": _round(self.mean_delay_s),
                "mean_alert_delay_beyond_dwell_s": _round(self.mean_over_dwell_s)}


def read_events(path: Path, clip: int, dwell: Mapping[str, float] | None = None) -> list[Interval]:
    """Events of a file: JSON lines (`.jsonl`), else a JSON list or an object with an `events` list; each
    carries the `dwell` of its zone, if given."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EvalInputError(f"{path}: cannot read: {exc.strerror}") from None
    records: Any
    try:
        if path.suffix == ".jsonl":
            records = [orjson.loads(line) for line in data.splitlines() if line.strip()]
        else:
            document: Any = orjson.loads(data)
            records = document.get("events") if isinstance(document, dict) else document
    except orjson.JSONDecodeError as exc:
        raise EvalInputError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(records, list):
        raise EvalInputError(f"{path}: expected a list of events or an object with an 'events' list")
    return [_interval(record, path, clip, number, dwell or {}) for number, record in enumerate(records, 1)]


def read_conditions(path: Path) -> dict[str, str]:
    """The `conditions` of a truth document, each value as text ("true", "10", "rain"); none for a bare list."""
    return {str(name): _as_text(value) for name, value in _object(path, "conditions").items()}


def read_dwell(path: Path) -> dict[str, float]:
    """The `dwell_s` of a truth document, seconds by zone id; none for a bare list."""
    try:
        return {str(zone): float(seconds) for zone, seconds in _object(path, "dwell_s").items()}
    except (TypeError, ValueError):
        raise EvalInputError(f"{path}: 'dwell_s' must map zone ids to seconds") from None


def _object(path: Path, name: str) -> dict[Any, Any]:
    """The object `name` at the top of a JSON document; empty if it has none."""
    try:
        document: Any = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise EvalInputError(f"{path}: cannot read: {exc}") from None
    value = document.get(name) if isinstance(document, dict) else None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EvalInputError(f"{path}: '{name}' must be an object")
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _interval(record: Any, path: Path, clip: int, number: int, dwell: Mapping[str, float]) -> Interval:
    try:
        start, end = float(record["start_s"]), float(record["end_s"])
        alert = record.get("alert_s")
        zone = str(record["zone_id"])
        cause = record.get("cause")
        box = record.get("bbox")
        if box is not None and len(box) != 4:
            raise ValueError(f"bbox {box!r} is not [x, y, width, height]")
        return Interval(clip, str(record["camera_id"]), zone, str(record["kind"]), start, end,
                        float(alert) if alert is not None else start, dwell.get(zone),
                        str(cause) if cause is not None else None,
                        None if box is None else (float(box[0]), float(box[1]), float(box[2]), float(box[3])))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EvalInputError(f"{path}: event {number}: missing or invalid field ({exc!r})") from None


def pair_files(truth: Sequence[Path], events: Sequence[Path]) -> list[tuple[Path, Path]]:
    """Pair truth and events files, one pair per clip: directories expand to their sorted `*.json` (truth)
    and `*.jsonl` (events) files, searched recursively, and the n-th truth file goes with the n-th events file."""
    truth_files = _expand(truth, "*.json")
    event_files = _expand(events, "*.jsonl")
    if len(truth_files) != len(event_files):
        raise EvalInputError(f"{len(truth_files)} truth file(s) but {len(event_files)} events file(s); "
                             "give one events file per truth file")
    if not truth_files:
        raise EvalInputError("no truth files found")
    return list(zip(truth_files, event_files, strict=True))


def _expand(paths: Sequence[Path], pattern: str) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.rglob(pattern)) if path.is_dir() else [path])
    return files


def evaluate(clips: Iterable[tuple[list[Interval], list[Interval]]]) -> dict[str, KindScore]:
    """Scores per kind over (truth, detections) of each clip."""
    truth, detections = _joined(clips)
    pairs = match(truth, detections)
    scores = {}
    for kind in sorted({*KINDS, *(i.kind for i in truth), *(i.kind for i in detections)}):
        matches = [(truth[t], detections[d]) for t, d in pairs if truth[t].kind == kind]
        delays = [found.alert_s - event.start_s for event, found in matches]
        beyond = [found.alert_s - event.start_s - event.dwell_s for event, found in matches
                  if event.dwell_s is not None]
        scores[kind] = KindScore(kind, sum(1 for i in truth if i.kind == kind),
                                 sum(1 for i in detections if i.kind == kind), len(matches),
                                 _mean(delays), _mean(beyond))
    return scores


def _joined(clips: Iterable[tuple[list[Interval], list[Interval]]]) -> tuple[list[Interval], list[Interval]]:
    """The truth events and the detections of all clips (each interval knows its clip)."""
    truth: list[Interval] = []
    detections: list[Interval] = []
    for clip_truth, clip_detections in clips:
        truth.extend(clip_truth)
        detections.extend(clip_detections)
    return truth, detections


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


Clip = tuple[list[Interval], list[Interval], Mapping[str, str]]  # truth, detections, conditions
Breakdown = dict[str, dict[str, dict[str, KindScore]]]  # condition → value → kind → score


def breakdown(clips: Sequence[Clip]) -> Breakdown:
    """Scores per condition and value (clips without the condition count as "unknown"), each over the clips of
    that value only, for the kinds that occur among them."""
    names = sorted({name for _, _, conditions in clips for name in conditions})
    result: Breakdown = {}
    for name in names:
        values = sorted({conditions.get(name, "unknown") for _, _, conditions in clips})
        result[name] = {}
        for value in values:
            chosen = [(truth, found) for truth, found, conditions in clips if conditions.get(name, "unknown") == value]
            result[name][value] = {kind: score for kind, score in evaluate(chosen).items()
                                   if score.truth or score.detections}
    return result


@dataclass(frozen=True, slots=True)
class CauseScore:
    """Recall over the truth events of one kind and cause (a false alarm has no cause: no precision here)."""

    truth: int
    matched: int

    @property
    def recall(self) -> float:
        """Matched truth events over truth events."""
        return self.matched / self.truth

    def as_dict(self) -> dict[str, Any]:
        """For `--json`."""
        return {"truth": self.truth, "matched": self.matched, "recall": _round(self.recall)}


def by_cause(clips: Iterable[tuple[list[Interval], list[Interval]]]) -> dict[str, dict[str, CauseScore]]:
    """Recall per kind and cause, over the truth events whose documents name their cause, matched as in
    `evaluate`: what a weakness is, a digger's dust or a ground mat, where the conditions cannot tell."""
    truth, detections = _joined(clips)
    found = {t for t, _ in match(truth, detections)}
    counts: dict[str, dict[str, list[int]]] = {}
    for index, event in enumerate(truth):
        if event.cause is not None:
            tally = counts.setdefault(event.kind, {}).setdefault(event.cause, [0, 0])
            tally[0] += 1
            tally[1] += index in found
    return {kind: {cause: CauseScore(*tally) for cause, tally in sorted(causes.items())}
            for kind, causes in sorted(counts.items())}


def unmatched(clips: Iterable[tuple[list[Interval], list[Interval]]]) -> tuple[list[Interval], list[Interval]]:
    """The truth events no detection matched (missed) and the detections that matched none (false alarms),
    matched as in `evaluate`: which ones, to look at, where the figures only say how many."""
    truth, detections = _joined(clips)
    pairs = match(truth, detections)
    found, used = {t for t, _ in pairs}, {d for _, d in pairs}
    return ([event for index, event in enumerate(truth) if index not in found],
            [detection for index, detection in enumerate(detections) if index not in used])


def match(truth: Sequence[Interval], detections: Sequence[Interval]) -> list[tuple[int, int]]:
    """A maximum one-to-one matching as (truth index, detection index) pairs."""
    candidates: list[list[int]] = []
    for event in truth:
        allowed = [(overlap, index) for index, detection in enumerate(detections)
                   if (overlap := _overlap(event, detection)) is not None]
        candidates.append([index for _, index in sorted(allowed, key=lambda pair: -pair[0])])
    owner: dict[int, int] = {}  # detection → truth

    def augment(t: int, visited: set[int]) -> bool:
        for d in candidates[t]:
            if d in visited:
                continue
            visited.add(d)
            if d not in owner or augment(owner[d], visited):
                owner[d] = t
                return True
        return False

    for t in range(len(truth)):
        augment(t, set())
    return sorted((t, d) for d, t in owner.items())


def _overlap(event: Interval, detection: Interval) -> float | None:
    """How long the two overlap, or None if they may not match."""
    if event.key != detection.key or not event.start_s <= detection.alert_s <= event.end_s + LATE_ALERT_S:
        return None
    if event.box is not None and detection.box is not None and not _stands_in(detection.box, event.box):
        return None
    overlap = min(event.end_s, detection.end_s) - max(event.start_s, detection.start_s)
    return overlap if overlap >= 0 else None


def _stands_in(found: tuple[float, float, float, float], truth: tuple[float, float, float, float]) -> bool:
    """Whether the foot of the found box lies in the truth box grown by half its size on every side."""
    x, y, width, height = truth
    foot_x, foot_y = found[0] + found[2] / 2, found[1] + found[3]
    return (x - width / 2 <= foot_x <= x + 1.5 * width) and (y - height / 2 <= foot_y <= y + 1.5 * height)


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None
