"""`gridhub bench detect` on a short clip: it runs at the default and at another `--size`, and refuses a bad one.

Not a timing test: the figures belong to the full-length run, the target to the benchmark itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import orjson
import pytest
from click.testing import CliRunner

from gridhub.bench import detect as bench
from gridhub.cli import cli

Work = Callable[[npt.NDArray[np.uint8], float], object]


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The shapes of the frames both loops decode, as the benchmark runs."""
    shapes: list[tuple[int, ...]] = []
    rate = bench._rate

    def recording(path: Path, work: Work) -> float:
        def recorded(image: npt.NDArray[np.uint8], t: float) -> object:
            shapes.append(image.shape)
            return work(image, t)

        return rate(path, recorded)

    monkeypatch.setattr(bench, "_rate", recording)
    return shapes


def _bench(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(cli, ["bench", "detect", "--seconds", "0.4", *args, "--json"])
    assert result.exit_code == 0, result.output
    document: dict[str, object] = orjson.loads(result.output.strip().splitlines()[-1])
    return document


def test_the_default_run_is_640x360_and_judges_the_target(decoded: list[tuple[int, ...]]) -> None:
    document = _bench()

    assert (document["name"], document["unit"]) == ("detect", "frames/s per core")
    details = document["details"]
    assert isinstance(details, dict)
    assert details["resolution"] == "640x360" and details["frames"] == 10
    assert isinstance(document["value"], float) and document["value"] > 0
    assert isinstance(document["baseline"], float) and document["baseline"] > 0
    assert details["cameras_at_5fps_per_core"] == int(document["value"] // 5)
    assert document["target"] == "ratio >= 0.6 and >= 100 frames/s per core"
    assert isinstance(document["met"], bool)
    assert set(decoded) == {(360, 640, 3)} and len(decoded) == 2 * 2 * 10  # two loops, twice each


def test_another_size_renders_and_decodes_the_clip_at_that_size_and_leaves_the_target_unjudged(
        decoded: list[tuple[int, ...]]) -> None:
    document = _bench("--size", "1280x720")

    details = document["details"]
    assert isinstance(details, dict)
    assert details["resolution"] == "1280x720" and details["frames"] == 10
    assert isinstance(document["value"], float) and document["value"] > 0
    assert isinstance(document["baseline"], float) and document["baseline"] > 0
    assert details["cameras_at_5fps_per_core"] == int(document["value"] // 5)
    assert document["target"] == "n/a at 1280x720 (the target, ratio >= 0.6 and >= 100 frames/s per core, " \
                                 "applies at 640x360)"
    assert document["met"] is None
    assert set(decoded) == {(720, 1280, 3)} and len(decoded) == 2 * 2 * 10


@pytest.mark.parametrize(("size", "complaint"), [
    ("1920", "'1920' is not WIDTHxHEIGHT"),
    ("1920x1080x3", "is not WIDTHxHEIGHT"),
    ("widexhigh", "is not WIDTHxHEIGHT"),
    ("158x90", "158x90 is outside 160x90 to 3840x2160"),
    ("160x88", "160x88 is outside 160x90 to 3840x2160"),
    ("3842x2160", "3842x2160 is outside 160x90 to 3840x2160"),
    ("3840x2162", "3840x2162 is outside 160x90 to 3840x2160"),
    ("1281x720", "1281x720: width and height must be even"),
])
def test_a_malformed_or_out_of_range_size_is_a_usage_error(size: str, complaint: str) -> None:
    result = CliRunner().invoke(cli, ["bench", "detect", "--seconds", "0.4", "--size", size])

    assert result.exit_code == 2, result.output
    assert "Invalid value for '--size'" in result.output and complaint in result.output


def test_the_size_limits_themselves_are_accepted() -> None:
    assert bench.parse_size("160x90") == (160, 90)
    assert bench.parse_size("3840x2160") == (3840, 2160)
    assert bench.parse_size("1920x1080") == (1920, 1080)


def test_the_scene_and_its_zones_scale_from_the_640x360_design(tmp_path: Path) -> None:
    """The stall (from 3 s) and the zones sit at the same place in the picture at 640×360 and at half that."""
    frames = []
    for width, height in ((640, 360), (320, 180)):
        path = tmp_path / f"{width}.mp4"
        assert bench.write_clip(path, 3.2, width, height) == 80
        capture = cv2.VideoCapture(str(path))
        capture.set(cv2.CAP_PROP_POS_FRAMES, 79)
        ok, image = capture.read()
        capture.release()
        assert ok and image.shape == (height, width, 3)
        frames.append(image)
    design, half = frames
    shrunk = cv2.resize(design, (320, 180), interpolation=cv2.INTER_AREA)
    # The stall (BGR 40, 60, 200, at 300..380 × 250..330 in the design) covers the same part of the picture.
    for image in (half, shrunk):
        assert np.abs(image[130:160, 155:185].astype(int) - (40, 60, 200)).max() < 40
        assert np.abs(image[100:120, 200:220].astype(int) - (40, 60, 200)).max() > 60
    assert np.abs(half.astype(int) - shrunk.astype(int)).mean() < 8

    camera, scaled = bench.camera(), bench.camera(1920, 1080)
    assert (scaled.width, scaled.height) == (1920, 1080) and (camera.width, camera.height) == (640, 360)
    for zone, zone3 in zip(camera.zones, scaled.zones, strict=True):
        assert (zone3.id, zone3.kind) == (zone.id, zone.kind)
        assert zone3.polygon == tuple((3 * x, 3 * y) for x, y in zone.polygon)
