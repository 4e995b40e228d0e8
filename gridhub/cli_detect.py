"""`gridhub detect ...` and `gridhub bench detect`: the camera detectors (issue #5)."""

from __future__ import annotations

import click

from gridhub.cli import _not_built


@click.group()
def detect() -> None:
    """Camera detectors: street stalls and construction dust."""


@detect.command("run")
def detect_run() -> None:
    """Run the detectors on the configured cameras."""
    _not_built("gridhub detect run", 5)


@detect.command("offline")
def detect_offline() -> None:
    """Run the detectors over a clip and write one JSON line per detection."""
    _not_built("gridhub detect offline", 5)


@detect.command("eval")
def detect_eval() -> None:
    """Score detections against ground truth: precision, recall, alert delay."""
    _not_built("gridhub detect eval", 5)


@click.command("detect")
def bench_detect() -> None:
    """Detector pipeline frames per second against bare decode + MOG2."""
    _not_built("gridhub bench detect", 5)
