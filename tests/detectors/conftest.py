"""Fixtures for the detector tests: cameras and short generated clips (rendered once per session)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from core.city.config import camera_from_mapping
from domain.registry import Camera
from tests.detectors.scenes import Plume, Scene, Stall, Walker, write_clip

SIDEWALK = [[0, 100], [320, 100], [320, 180], [0, 180]]
SITE = [[20, 20], [300, 20], [300, 170], [20, 170]]


def street_camera(source: str = "clip.avi", dwell_s: float = 20) -> Camera:
    """A 320×180 street camera whose lower half is a no-vending zone."""
    return camera_from_mapping({"id": "cam-street", "source": source, "grid_code": "310104003001002", "fps": 5,
                                "zones": [{"id": "sidewalk", "kind": "no_vending", "polygon": SIDEWALK,
                                           "dwell_s": dwell_s}]})


def site_camera(source: str = "clip.avi", dwell_s: float = 20) -> Camera:
    """A 320×180 camera over a construction site."""
    return camera_from_mapping({"id": "cam-site", "source": source, "grid_code": "310104014001005", "fps": 5,
                                "zones": [{"id": "site", "kind": "construction", "polygon": SITE,
                                           "dwell_s": dwell_s}]})


def walkers(seconds: float, every_s: float = 4.0) -> list[Walker]:
    """A steady stream of pedestrians of different colours, heights and speeds along the pavement."""
    colours = [(200, 60, 60), (60, 200, 60), (30, 30, 30), (220, 220, 220), (90, 60, 40)]
    return [Walker(i * every_s, 150 + (i % 3) * 10, 25 + (i % 4) * 8, colours[i % 5], height=30 + (i % 3) * 8)
            for i in range(int(seconds / every_s))]


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, Scene], Path]:
    """Render a named scene once per session and return the clip's path."""
    directory = tmp_path_factory.mktemp("clips")
    made: dict[str, Path] = {}

    def clip(name: str, scene: Scene) -> Path:
        if name not in made:
            made[name] = write_clip(scene, directory / f"{name}.avi")
        return made[name]

    return clip


@pytest.fixture(scope="session")
def stall_clip(clips: Callable[[str, Scene], Path]) -> Path:
    """90 s of street: a stall is carried in at 15 s (stops at 18 s), stays, and leaves at 65 s; walkers pass."""
    return clips("stall", Scene(seconds=90, walkers=walkers(90), stalls=[Stall(18, 65, 120, 165)]))


@pytest.fixture(scope="session")
def plume_clip(clips: Callable[[str, Scene], Path]) -> Path:
    """100 s of site: a dust plume rises from 20 s, holds, and has settled by 85 s."""
    return clips("plume", Scene(seconds=100, walkers=walkers(100, 9.0),
                                plumes=[Plume(20, 85, (160, 95), 70, density=0.6)], seed=5))
