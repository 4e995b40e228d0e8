"""Render speed of the second generator on one core: `python -m simulators.cameras.second.bench [FRAMES]`.

The targets are 6 ms a frame at 640×360 and 60 ms at 1920×1080. Frames are rendered in order from 150 s into
the scene, where stalls, parked cars and dust are about, so the figures include the static layer's redraw
every few seconds (clear weather) and planning as it comes due.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import cv2

from simulators.cameras.second.params import Spec
from simulators.cameras.second.scene import SecondScene

SIZES = ((640, 360), (1280, 720), (1920, 1080))
CASES = {
    "overcast": {"night": "0", "weather": "overcast", "shake": "0", "exposure_pumping": "0",
                 "compression": "normal", "dropped_frames": "0"},
    "clear, shadows": {"night": "0", "weather": "clear", "shake": "0", "exposure_pumping": "0",
                       "compression": "normal", "dropped_frames": "0"},
    "night, rain": {"night": "1", "weather": "rain", "shake": "0", "exposure_pumping": "1",
                    "compression": "normal", "dropped_frames": "0"},
    "all on": {"night": "0", "weather": "rain", "shake": "1", "exposure_pumping": "1", "compression": "blocky",
               "dropped_frames": "1"},
}
SEEDS = (11, 12)


def measure(kind: str, case: dict[str, str], size: tuple[int, int], frames: int) -> list[float]:
    """Milliseconds per frame for `frames` consecutive frames of each seed."""
    times = []
    for seed in SEEDS:
        scene = SecondScene(Spec.of(kind, seed, case.items()), fps=10, width=size[0], height=size[1])
        scene.render(1500)
        for index in range(1501, 1501 + frames):
            started = time.perf_counter()
            scene.render(index)
            times.append((time.perf_counter() - started) * 1000)
    return times


def main(frames: int) -> None:
    """Print mean, 95th percentile and worst milliseconds per frame for every size, scene and condition set."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)
    print(f"{'size':>10} {'scene':>13} {'conditions':>15} {'mean':>7} {'p95':>7} {'max':>7}  (ms per frame)")
    for size in SIZES:
        for kind in ("street", "construction"):
            for name, case in CASES.items():
                times = sorted(measure(kind, case, size, frames))
                p95 = times[int(0.95 * (len(times) - 1))]
                print(f"{size[0]:>5}x{size[1]:<4} {kind:>13} {name:>15} {statistics.mean(times):7.1f} {p95:7.1f} "
                      f"{times[-1]:7.1f}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 150)
