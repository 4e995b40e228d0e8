"""Camera sources: files sampled at the camera's fps, MJPEG over HTTP, reconnection, unreadable input."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors.sources import ClipReader, Frame, LiveSource, SourceError
from tests.detectors.mjpeg import MjpegCamera


def _numbered_clip(path: Path, frames: int, fps: float) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (64, 48))
    for index in range(frames):
        writer.write(np.full((48, 64, 3), index * 4 % 256, np.uint8))
    writer.release()
    return path


def _wait_frame(source: LiveSource, after: int, timeout: float) -> Frame:
    frame = source.next_frame(after, timeout)
    assert frame is not None, f"no frame within {timeout} s (last error: {source.last_error!r})"
    return frame


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_file_is_sampled_at_the_camera_fps_with_times_from_the_clip_start(tmp_path: Path) -> None:
    clip = _numbered_clip(tmp_path / "clip.avi", frames=50, fps=25)  # 2 s
    times = [frame.t for frame in ClipReader(str(clip)).frames(fps=5)]
    assert times == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8])


def test_a_file_slower_than_the_camera_fps_gives_every_frame(tmp_path: Path) -> None:
    clip = _numbered_clip(tmp_path / "clip.avi", frames=6, fps=2)
    assert [frame.seq for frame in ClipReader(str(clip)).frames(fps=5)] == [0, 1, 2, 3, 4, 5]


def test_a_whole_file_is_read_as_announced(tmp_path: Path) -> None:
    reader = ClipReader(str(_numbered_clip(tmp_path / "clip.avi", frames=50, fps=25)))
    assert len(list(reader.frames(fps=5))) == 10
    assert (reader.read, reader.announced, reader.delivered, reader.truncated) == (50, 50, 10, False)
    assert reader.describe() == "50 frames read of 50 announced (2.0 s), 10 analysed"


def test_a_truncated_file_is_read_as_far_as_it_goes_and_says_so(tmp_path: Path) -> None:
    whole = _numbered_clip(tmp_path / "clip.avi", frames=100, fps=10).read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole[:len(whole) // 2])
    reader = ClipReader(str(cut))
    frames = list(reader.frames(fps=10))
    assert 0 < len(frames) == reader.read < 100
    assert reader.announced == 100 and reader.truncated
    assert reader.describe().startswith(f"{reader.read} frames read of 100 announced")


def test_garbage_bytes_are_a_clear_error(tmp_path: Path) -> None:
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(np.random.default_rng(1).bytes(200_000))
    with pytest.raises(SourceError, match=r"broken\.mp4: not a video FFmpeg can decode"):
        list(ClipReader(str(garbage)).frames(fps=5))


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        list(ClipReader(str(tmp_path / "absent.avi")).frames(fps=5))


def test_an_mjpeg_stream_over_http_delivers_its_latest_frames() -> None:
    with MjpegCamera() as camera:
        source = LiveSource(camera.url, name="mjpeg")
        source.start()
        try:
            first = _wait_frame(source, 0, timeout=15)
            newest = _wait_frame(source, first.seq + 1, timeout=5)  # two more frames arrived meanwhile
            later = _wait_frame(source, first.seq, timeout=5)
        finally:
            source.stop()
    assert later.seq >= newest.seq  # the frame right after `first` was dropped: only the latest is kept
    assert later.image.shape == (90, 160, 3)


def test_a_dropped_stream_is_reconnected_when_it_comes_back() -> None:
    with MjpegCamera() as camera:
        source = LiveSource(camera.url, name="flaky")
        source.start()
        try:
            before = _wait_frame(source, 0, timeout=15)
            camera.drop(down_s=1.5)
            _wait_until(lambda: bool(source.last_error), timeout=10, what="the source to notice the drop")
            after = _wait_frame(source, before.seq + 5, timeout=30)
        finally:
            source.stop()
    assert camera.connections >= 2
    assert source.reconnects >= 1 and after.seq > before.seq
    assert source.last_error == ""


def test_a_live_file_source_plays_in_real_time(tmp_path: Path) -> None:
    clip = _numbered_clip(tmp_path / "clip.avi", frames=100, fps=10)
    source = LiveSource(str(clip), name="file")
    started = time.time()
    source.start()
    try:
        frame = _wait_frame(source, 10, timeout=30)
    finally:
        source.stop()
    # Frame n of the clip is due (n - 1) / fps after the start, not as soon as it is decoded (frame 101 is
    # the first of the second pass, due after the 100th).
    assert frame.t - started >= (min(frame.seq, 100) - 1) / 10


def test_a_stuck_reader_is_replaced_on_restart(tmp_path: Path) -> None:
    clip = _numbered_clip(tmp_path / "clip.avi", frames=100, fps=10)
    source = LiveSource(str(clip), name="file")
    source.start()
    try:
        frame = _wait_frame(source, 0, timeout=5)
        source.restart()
        assert _wait_frame(source, frame.seq, timeout=5).seq > frame.seq
    finally:
        source.stop()
