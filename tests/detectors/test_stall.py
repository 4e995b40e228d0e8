"""The stall detector on short generated street clips."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from core.city.config import camera_from_mapping
from core.detect_settings import StallSettings
from core.settings import DetectSettings
from detectors.offline import ClipDetection, detect_clip
from domain.registry import Camera
from tests.detectors.conftest import street_camera, walkers
from tests.detectors.scenes import Light, Scene, Stall, Walker


def _detect(clip: Path, dwell_s: float = 20) -> list[ClipDetection]:
    return detect_clip(street_camera(str(clip), dwell_s), str(clip)).detections


def test_a_stall_that_stays_past_the_dwell_time_is_one_detection_from_its_arrival_to_its_departure(
        stall_clip: Path) -> None:
    [detection] = _detect(stall_clip)
    assert (detection.zone_id, detection.kind) == ("sidewalk", "stall")
    assert 14 <= detection.start_s <= 21  # it stops at 18 s
    assert detection.start_s + 20 <= detection.alert_s <= detection.start_s + 22  # raised after the dwell time
    assert 62 <= detection.end_s <= 70  # carried off from 65 s
    x, y, w, h = detection.bbox or (0, 0, 0, 0)
    assert 100 <= x + w / 2 <= 190 and 150 <= y + h <= 180  # the table's bottom centre is (155, 165)


def test_a_stall_shorter_than_the_dwell_time_is_not_reported(stall_clip: Path) -> None:
    assert _detect(stall_clip, dwell_s=60) == []


def test_a_person_pausing_for_a_few_seconds_is_not_a_stall(clips: Callable[[str, Scene], Path]) -> None:
    people = [*walkers(60), Walker(5, 160, 30, (50, 50, 160), height=40, pause_x=150, pause_s=12),
              Walker(20, 150, 20, (200, 200, 40), height=34, pause_x=60, pause_s=8)]
    assert _detect(clips("pause", Scene(seconds=60, walkers=people))) == []


@pytest.mark.parametrize("gain", [[(30.0, 0.6)], [(30.0, 1.35)], [(20.0, 0.8), (30.0, 0.65), (40.0, 0.5)]],
                         ids=["sudden-darker", "sudden-brighter", "dusk"])
def test_a_change_of_lighting_is_not_a_stall(clips: Callable[[str, Scene], Path],
                                             gain: list[tuple[float, float]]) -> None:
    clip = clips(f"light-{gain}", Scene(seconds=75, walkers=walkers(75), gain=gain, seed=3))
    assert _detect(clip, dwell_s=15) == []


def test_a_pool_of_light_that_stays_on_is_not_a_stall(clips: Callable[[str, Scene], Path]) -> None:
    """At night a parked car's headlights light up a patch of the pavement for minutes: everything there gets
    four times brighter, far more than the change of brightness that counts as an object on its own, but the
    paving's texture is what it was. Light is not a thing: without that rule, the pool is a stall."""
    clip = clips("light-pool", Scene(seconds=75, walkers=walkers(75), lights=[Light(10, (120, 120, 90, 50), gain=4)],
                                     gain=[(0, 0.3)], seed=4))
    assert _detect(clip, dwell_s=15) == []


def test_a_stall_outside_every_zone_is_not_reported(clips: Callable[[str, Scene], Path]) -> None:
    clip = clips("outside", Scene(seconds=60, walkers=walkers(60), stalls=[Stall(10, 60, 150, 80, width=50)]))
    assert _detect(clip, dwell_s=15) == []


def test_the_stall_tunables_come_from_the_settings(stall_clip: Path) -> None:
    larger_than_the_stall = DetectSettings(stall=StallSettings(min_area_share=0.2))
    assert detect_clip(street_camera(str(stall_clip)), str(stall_clip), larger_than_the_stall).detections == []


def _camera(clip: Path, zones: dict[str, list[list[int]]]) -> Camera:
    """A 5 fps street camera on the clip with these no-vending zones (20 s dwell)."""
    return camera_from_mapping({"id": "cam-street", "source": str(clip), "grid_code": "310104003001002", "fps": 5,
                                "zones": [{"id": name, "kind": "no_vending", "dwell_s": 20, "polygon": polygon}
                                          for name, polygon in zones.items()]})


def test_the_smallest_stall_is_smaller_far_up_the_frame_than_near_its_foot(
        clips: Callable[[str, Scene], Path]) -> None:
    """Two small stalls, one standing far up the frame and one near the camera at its foot, the same size in the
    image: far away that is a stall's size, near the camera a bag's. Held to one smallest size all over the frame
    (`perspective=0`), both are reported."""
    clip = clips("perspective", Scene(seconds=80, walkers=walkers(80),
                                      stalls=[Stall(10, 75, 100, 55, width=6), Stall(10, 75, 200, 176, width=6)]))
    camera = _camera(clip, {"far": [[0, 20], [320, 20], [320, 60], [0, 60]],
                            "near": [[0, 130], [320, 130], [320, 180], [0, 180]]})
    smallest = DetectSettings(stall=StallSettings(min_box_share=0.005))
    assert [detection.zone_id for detection in detect_clip(camera, str(clip), smallest).detections] == ["far"]
    flat = DetectSettings(stall=StallSettings(min_box_share=0.005, perspective=0.0))
    assert len(detect_clip(camera, str(clip), flat).detections) == 2


def test_a_stall_set_down_against_something_that_stood_there_long_before_is_an_object_of_its_own(
        clips: Callable[[str, Scene], Path]) -> None:
    """A cart set down against a parked car: the car, outside the zone, stood for a minute before; the cart's
    stationary pixels touch it, yet the cart is reported alone, with its own box and its own arrival."""
    clip = clips("against-older", Scene(seconds=120, walkers=walkers(120),
                                        stalls=[Stall(5, 200, 60, 150, colour=(90, 90, 90)), Stall(65, 200, 132, 150)]))
    camera = _camera(clip, {"right": [[140, 100], [320, 100], [320, 180], [140, 180]]})
    [detection] = detect_clip(camera, str(clip)).detections
    assert 60 <= detection.start_s <= 70  # it stops at 65 s; the other object at 5 s
    x, _, w, _ = detection.bbox or (0, 0, 0, 0)
    assert x >= 115 and x + w <= 215  # the cart spans 132-202; the older object 60-130


def test_a_stall_whose_box_reaches_a_little_past_the_zone_edge_stands_in_the_zone(
        clips: Callable[[str, Scene], Path]) -> None:
    """The box's foot takes in legs, wheels and shadow: a stall standing at the zone's near edge is in it.
    Without the reach (`foot_reach=0`) its box's bottom centre, 5 px past the edge, puts it outside."""
    clip = clips("edge", Scene(seconds=90, walkers=walkers(90), stalls=[Stall(18, 65, 110, 165, width=100)]))
    camera = _camera(clip, {"pavement": [[0, 140], [320, 140], [320, 163], [0, 163]]})
    [detection] = detect_clip(camera, str(clip)).detections
    assert (detection.zone_id, 14 <= detection.start_s <= 21) == ("pavement", True)  # it stops at 18 s
    at_the_bottom_centre = DetectSettings(stall=StallSettings(foot_reach=0))
    assert detect_clip(camera, str(clip), at_the_bottom_centre).detections == []


def test_a_big_stall_set_down_over_a_small_reported_one_is_an_object_of_its_own(
        clips: Callable[[str, Scene], Path]) -> None:
    """A cart with a wide table set down in front of a small stall reported a minute before hides it and its box
    takes the small one's in, yet it is not a piece of it (much bigger, and new): two stalls, two arrivals.
    Taken as a piece of the reported stall, the cart would never be reported."""
    clip = clips("engulfed", Scene(seconds=120, walkers=walkers(120),
                                   stalls=[Stall(5, 200, 150, 150, colour=(90, 90, 90), width=24),
                                           Stall(60, 200, 110, 165, width=110)]))
    camera = _camera(clip, {"pavement": [[0, 135], [320, 135], [320, 180], [0, 180]]})
    small, big = detect_clip(camera, str(clip)).detections
    assert small.start_s <= 10 and 55 <= big.start_s <= 65  # set down at 5 s and at 60 s
    _, y, w, h = big.bbox or (0, 0, 0, 0)
    assert w >= 100 and y + h >= 160  # the cart's table spans 110-220 and stands at 165


def test_a_stall_set_down_beside_a_reported_one_is_an_object_of_its_own(clips: Callable[[str, Scene], Path]) -> None:
    """A second vendor sets a stall down beside one reported a minute before, near enough for its umbrella to
    touch the first one's: as big as the first, and mostly outside its box, it is not a piece of it (its goods, an
    umbrella opened late): two stalls, two arrivals. Taken as a piece, the second is never reported."""
    clip = clips("beside-reported", Scene(seconds=120, walkers=walkers(120),
                                          stalls=[Stall(5, 200, 60, 155, colour=(60, 140, 60), width=60),
                                                  Stall(60, 200, 140, 160, width=60)]))
    camera = _camera(clip, {"pavement": [[0, 135], [320, 135], [320, 180], [0, 180]]})
    first, second = detect_clip(camera, str(clip)).detections
    assert first.start_s <= 10 and 55 <= second.start_s <= 65  # set down at 5 s and at 60 s
    x, _, w, _ = second.bbox or (0, 0, 0, 0)
    assert x >= 125 and x + w <= 215  # its table spans 140-200


def test_a_stall_set_down_beside_something_too_wide_to_be_a_stall_is_reported_on_its_own(
        clips: Callable[[str, Scene], Path]) -> None:
    """Something as wide as half the frame and a small stall arrive together, side by side (a car parking by a
    mat being laid out). Grouped, they would be one object too wide to be a stall, and the stall would never be
    reported: grouping stops short of that width."""
    clip = clips("beside-wide", Scene(seconds=90, walkers=walkers(90),
                                      stalls=[Stall(18, 80, 5, 165, colour=(60, 120, 60), width=180),
                                              Stall(18, 80, 200, 165, width=70)]))
    boxes = [detection.bbox or (0, 0, 0, 0) for detection in _detect(clip)]
    assert any(x >= 190 and x + w <= 290 for x, _, w, _ in boxes), boxes  # the small stall's table spans 200-270


def test_on_a_calibrated_camera_something_as_wide_as_a_car_is_not_a_stall(
        clips: Callable[[str, Scene], Path]) -> None:
    """A car parked on the pavement (4.2 m long) and a stall (2.2 m) stand side by side for a minute. The camera's
    ground calibration (3.5 cm a pixel where they stand) says which is which; without one, both are reported."""
    clip = clips("car-sized", Scene(seconds=90, walkers=walkers(90),
                                    stalls=[Stall(18, 85, 20, 165, colour=(60, 120, 60), width=120),
                                            Stall(18, 85, 200, 165, width=50)]))
    mapping = {"id": "cam-street", "source": str(clip), "fps": 5,
               "zones": [{"id": "pavement", "kind": "no_vending", "dwell_s": 20,
                          "polygon": [[0, 135], [320, 135], [320, 180], [0, 180]]}]}
    assert len(detect_clip(camera_from_mapping(mapping), str(clip)).detections) == 2
    calibrated = {**mapping, "ground": {"image": [[0, 100], [320, 100], [320, 180], [0, 180]],
                                        "metres": [[0, 0], [11.2, 0], [11.2, 2.8], [0, 2.8]]}}
    [stall] = detect_clip(camera_from_mapping(calibrated), str(clip)).detections
    x, _, w, _ = stall.bbox or (0, 0, 0, 0)
    assert x >= 185 and x + w <= 265  # the stall's table spans 200-250
