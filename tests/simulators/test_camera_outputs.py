"""What the simulator hands to others: video clips, truth and camera files, a live MJPEG stream, the CLI."""

from __future__ import annotations

from pathlib import Path

import cv2
import orjson
import pytest
import yaml
from click.testing import CliRunner

from core.city.config import camera_from_mapping
from gridhub.cli import EXIT_CONFIG, cli
from simulators.cameras import LiveCapture, MjpegServer, Scene, open_live, parse_sim_url, write_clip


def _frames_in(path: Path | str, limit: int = 1000) -> list[tuple[int, int, int]]:
    capture = cv2.VideoCapture(str(path))
    shapes: list[tuple[int, int, int]] = []
    while len(shapes) < limit:
        ok, frame = capture.read()
        if not ok:
            break
        shapes.append(frame.shape)
    capture.release()
    return shapes


def test_a_clip_round_trips_through_opencv_with_every_frame_at_its_size(tmp_path: Path) -> None:
    scene = Scene(parse_sim_url("sim://construction?seed=4"), fps=5, width=320, height=180)
    files = write_clip(scene, 20, tmp_path)
    assert files.frames == 100
    assert _frames_in(files.video) == [(180, 320, 3)] * 100


def test_a_clip_comes_with_its_truth_and_a_camera_yaml_that_points_at_it(tmp_path: Path) -> None:
    scene = Scene(parse_sim_url("sim://street?seed=6"), fps=5, width=320, height=180, camera_id="cam-x")
    files = write_clip(scene, 8, tmp_path, grid_code="310104003001002")
    truth = orjson.loads(files.truth.read_bytes())
    assert truth["camera_id"] == "cam-x"
    assert truth["scene"]["source"] == "sim://street?seed=6"
    assert truth["events"] == [event.to_json() for event in scene.truth(8)]
    camera = camera_from_mapping(yaml.safe_load(files.camera.read_text()))
    assert (camera.id, camera.source, camera.fps, camera.zones) == ("cam-x", str(files.video), 5, scene.zones)
    assert camera.ground == scene.ground  # where the ground is, in metres: the stall detector measures vehicles


def test_the_mjpeg_stream_can_be_opened_by_opencv() -> None:
    scene = Scene(parse_sim_url("sim://street?seed=7"), fps=10, width=320, height=180)
    with MjpegServer(scene) as server:
        assert _frames_in(server.url, limit=5) == [(180, 320, 3)] * 5


def test_the_cli_writes_the_clip_truth_and_camera_yaml(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["simulate", "cameras", "--scene", "construction", "--seed", "3",
                                      "--seconds", "6", "--size", "320x180", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["camera.yaml", "clip.avi", "truth.json"]
    assert "sim://construction?seed=3: 30 frames" in result.output


def test_the_cli_writes_numbered_clips_with_consecutive_seeds(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["simulate", "cameras", "--seed", "40", "--clips", "2", "--seconds", "2",
                                      "--size", "160x96", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    seeds = [orjson.loads((tmp_path / f"clip-00{i}" / "truth.json").read_bytes())["scene"]["seed"] for i in (0, 1)]
    assert seeds == [40, 41]


def test_the_cli_takes_id_zones_and_scene_from_a_camera_yaml(tmp_path: Path) -> None:
    demo = Path(__file__).parents[2] / "core" / "city" / "demo" / "cameras.yaml"
    result = CliRunner().invoke(cli, ["simulate", "cameras", "--camera", str(demo), "--camera-id", "cam-hunan-02",
                                      "--seconds", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    camera = yaml.safe_load((tmp_path / "camera.yaml").read_text())
    assert (camera["id"], camera["grid_code"]) == ("cam-hunan-02", "310104004001007")
    assert [zone["id"] for zone in camera["zones"]] == ["shopfront-east", "crossing"]
    assert "sim://street?seed=202" in result.output


@pytest.mark.parametrize(("content", "reason"), [
    ("id: [unclosed", "invalid YAML"),
    ("- {id: a, source: x}\n- {id: b, source: y}\n", "choose one with --camera-id"),
    ("id: cam\nzones: [{id: z, kind: beach, polygon: [[0, 0], [1, 0], [1, 1]]}]\n", "kind: must be no_vending"),
])
def test_the_cli_refuses_a_bad_camera_yaml_with_the_reason(tmp_path: Path, content: str, reason: str) -> None:
    camera = tmp_path / "camera.yaml"
    camera.write_text(content)
    result = CliRunner().invoke(cli, ["simulate", "cameras", "--camera", str(camera), "--out", str(tmp_path / "o")])
    assert result.exit_code == EXIT_CONFIG
    assert reason in result.output
    assert "Traceback" not in result.output


def test_the_cli_refuses_an_unwritable_output_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = CliRunner().invoke(cli, ["simulate", "cameras", "--seconds", "1", "--out", str(blocker / "clips")])
    assert result.exit_code == EXIT_CONFIG
    assert f"cannot create {blocker / 'clips'}" in result.output


def test_the_cli_refuses_a_bad_parameter_override() -> None:
    result = CliRunner().invoke(cli, ["simulate", "cameras", "--param", "stalls_per_hour=lots", "--out", "x"])
    assert result.exit_code == EXIT_CONFIG
    assert "stalls_per_hour must be a number" in result.output


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_live_capture_paces_frames_at_the_scene_fps_and_drops_rather_than_lags() -> None:
    clock = _Clock()
    capture = LiveCapture(Scene(parse_sim_url("sim://street?seed=9"), width=160, height=96), clock, clock.sleep)
    times = []
    for _ in range(3):
        ok, frame = capture.read()
        assert ok and frame is not None and frame.shape == (96, 160, 3)
        times.append(clock.now - 100.0)
    clock.now += 10.0  # the reader was busy for ten seconds
    capture.read()
    assert times == pytest.approx([0.0, 0.2, 0.4])
    assert capture.read()[1] is not None and clock.now == pytest.approx(110.6)


def test_a_live_capture_of_a_camera_uses_its_zones_and_fps() -> None:
    camera = camera_from_mapping({"id": "cam-9", "source": "sim://construction?seed=9", "fps": 2, "zones": [
        {"id": "pit", "kind": "construction", "polygon": [[50, 50], [300, 50], [300, 170], [50, 170]]}]})
    capture = open_live(camera, width=320, height=180)
    assert (capture.scene.fps, [z.id for z in capture.scene.zones]) == (2, ["pit"])
    capture.release()
    assert capture.read() == (False, None)
