"""Camera files: a minimal valid camera, and each way of getting one wrong refused with the camera and the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.city.config import CityError, camera_from_mapping, load_cameras
from domain.registry import Camera, Ground, Zone, ZoneKind

SHOPFRONT = [[320, 200], [630, 200], [630, 350], [320, 350]]


@pytest.fixture
def camera() -> dict[str, Any]:
    """A valid camera of the demo city, to mutate."""
    return {
        "id": "cam-hunan-02", "source": "sim://street?seed=202", "grid_code": "310104004001007", "fps": 5,
        "zones": [{"id": "shopfront-east", "kind": "shopfront", "polygon": copy.deepcopy(SHOPFRONT), "dwell_s": 45}],
    }


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(CityError) as caught:
        camera_from_mapping(data)
    return str(caught.value)


def test_a_camera_mapping_becomes_a_camera_with_its_zones(camera: dict[str, Any]) -> None:
    camera["zones"].append({"id": "crossing", "kind": "no_vending", "polygon": [[10, 220], [310, 220], [310, 350]]})

    assert camera_from_mapping(camera) == Camera(
        "cam-hunan-02", "sim://street?seed=202", "310104004001007", 5.0,
        (
            Zone("shopfront-east", ZoneKind.SHOPFRONT, ((320, 200), (630, 200), (630, 350), (320, 350)), 45.0),
            Zone("crossing", ZoneKind.NO_VENDING, ((10, 220), (310, 220), (310, 350)), 60.0),  # the default dwell
        ),
        640, 360,
    )


def test_a_camera_with_only_an_id_gets_the_defaults() -> None:
    assert camera_from_mapping({"id": "cam-01"}) == Camera("cam-01", "", "", 5.0, (), 640, 360)


def test_numbers_may_be_written_as_text_and_codes_as_numbers(camera: dict[str, Any]) -> None:
    camera.update(fps="2.5", grid_code=310104004001007)

    parsed = camera_from_mapping(camera)

    assert (parsed.fps, parsed.grid_code) == (2.5, "310104004001007")


def test_a_misspelt_camera_key_is_refused_by_name(camera: dict[str, Any]) -> None:
    camera["fsp"] = 25
    assert refused(camera) == "camera cam-hunan-02: fsp: unknown key"


def test_a_misspelt_zone_key_is_refused_by_name(camera: dict[str, Any]) -> None:
    camera["zones"][0]["dwel_s"] = 5
    assert refused(camera) == "camera cam-hunan-02: zone shopfront-east: dwel_s: unknown key"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "nan"])
def test_a_zone_point_must_be_finite(camera: dict[str, Any], value: Any) -> None:
    camera["zones"][0]["polygon"][1][0] = value
    assert refused(camera) == ("camera cam-hunan-02: zone shopfront-east: polygon point 2: "
                               "Input should be a finite number")


@pytest.mark.parametrize(("index", "point"), [(2, [700, 350]), (2, [630, 400]), (0, [-1, 200])])
def test_a_zone_must_lie_inside_the_frame(camera: dict[str, Any], index: int, point: list[int]) -> None:
    camera["zones"][0]["polygon"][index] = point
    assert f"zone shopfront-east: point ({point[0]}, {point[1]}) lies outside the 640×360 frame" in refused(camera)


def test_a_camera_with_larger_frames_says_so_and_its_zones_may_use_them(camera: dict[str, Any]) -> None:
    camera.update(width=1280, height=720)
    camera["zones"][0]["polygon"][1] = [1200, 200]

    parsed = camera_from_mapping(camera)

    assert (parsed.width, parsed.height, parsed.zones[0].polygon[1]) == (1280, 720, (1200, 200))


@pytest.mark.parametrize(("key", "value"), [("width", 16), ("height", 10_000), ("width", 640.5)])
def test_the_frame_size_is_whole_pixels_within_bounds(camera: dict[str, Any], key: str, value: float) -> None:
    camera[key] = value
    assert refused(camera).startswith(f"camera cam-hunan-02: {key}: ")


def test_a_zone_must_not_cross_itself(camera: dict[str, Any]) -> None:
    camera["zones"][0]["polygon"] = [[320, 200], [630, 350], [630, 200], [320, 350]]  # a bow tie
    assert "zone shopfront-east: polygon: must be a simple polygon" in refused(camera)


def test_a_zone_needs_three_points(camera: dict[str, Any]) -> None:
    camera["zones"][0]["polygon"] = [[320, 200], [630, 200]]
    assert refused(camera) == "camera cam-hunan-02: zone shopfront-east: polygon: needs at least 3 entries, not 2"


def test_zone_ids_are_unique_per_camera(camera: dict[str, Any]) -> None:
    camera["zones"].append(copy.deepcopy(camera["zones"][0]))
    assert "zone id shopfront-east appears 2 times" in refused(camera)


def test_a_zone_kind_must_be_known(camera: dict[str, Any]) -> None:
    camera["zones"][0]["kind"] = "parking"
    assert refused(camera) == ("camera cam-hunan-02: zone shopfront-east: kind: "
                               "must be no_vending, shopfront or construction, not 'parking'")


@pytest.mark.parametrize("dwell_s", [-1, 3601, float("nan")])
def test_a_dwell_time_is_bounded(camera: dict[str, Any], dwell_s: float) -> None:
    camera["zones"][0]["dwell_s"] = dwell_s
    assert refused(camera).startswith("camera cam-hunan-02: zone shopfront-east: dwell_s: ")


@pytest.mark.parametrize("fps", [1e9, 61, 0, -5, "nan", "fast", None])
def test_fps_is_above_zero_and_at_most_60(camera: dict[str, Any], fps: Any) -> None:
    camera["fps"] = fps
    assert refused(camera).startswith("camera cam-hunan-02: fps: ")


def test_60_fps_is_allowed(camera: dict[str, Any]) -> None:
    camera["fps"] = 60
    assert camera_from_mapping(camera).fps == 60


def test_a_camera_needs_an_id(camera: dict[str, Any]) -> None:
    del camera["id"]
    assert refused(camera) == "camera: id: required"


def test_every_zone_is_a_mapping(camera: dict[str, Any]) -> None:
    camera["zones"].append("crossing")
    assert refused(camera) == "camera cam-hunan-02: zone #2: must be a mapping"


def test_more_problems_than_the_first_are_counted(camera: dict[str, Any]) -> None:
    camera.update(fsp=25, fps=1e9)
    assert refused(camera).endswith("(and 1 more)")


# --- files -------------------------------------------------------------------------------------------------


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "cameras.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_a_file_holds_a_list_of_cameras_or_one(tmp_path: Path, camera: dict[str, Any]) -> None:
    other = {**camera, "id": "cam-tianping-01"}

    assert [c.id for c in load_cameras(write(tmp_path, [camera, other]))] == ["cam-hunan-02", "cam-tianping-01"]
    assert [c.id for c in load_cameras(write(tmp_path, camera))] == ["cam-hunan-02"]


def test_an_error_names_the_file_the_camera_and_the_key(tmp_path: Path, camera: dict[str, Any]) -> None:
    camera["fsp"] = 25
    path = write(tmp_path, [camera])
    with pytest.raises(CityError, match=rf"^{path}: camera cam-hunan-02: fsp: unknown key$"):
        load_cameras(path)


def test_camera_ids_are_unique_in_a_file(tmp_path: Path, camera: dict[str, Any]) -> None:
    with pytest.raises(CityError, match="camera id cam-hunan-02 appears 2 times"):
        load_cameras(write(tmp_path, [camera, camera]))


def test_an_entry_that_is_not_a_mapping_is_named_by_its_place(tmp_path: Path, camera: dict[str, Any]) -> None:
    with pytest.raises(CityError, match=r"cameras\.yaml: camera #2: must be a mapping"):
        load_cameras(write(tmp_path, [camera, "cam-tianping-01"]))


def test_a_file_that_is_not_utf8_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "cameras.yaml"
    path.write_bytes("- id: 天平路-01\n".encode("gb18030"))
    with pytest.raises(CityError, match=r"cameras.yaml: not UTF-8 text \(byte 0xcc at offset 6\)"):
        load_cameras(path)


def test_invalid_yaml_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "cameras.yaml"
    path.write_text("- id: cam-01\n  zones: [unclosed\n", encoding="utf-8")
    with pytest.raises(CityError, match=r"cameras.yaml:3: invalid YAML"):
        load_cameras(path)


GROUND = {"image": [[160, 342], [480, 342], [480, 216], [160, 216]],
          "metres": [[-4, 10], [4, 10], [8, 21], [-8, 21]]}


def test_a_ground_calibration_is_four_image_points_and_where_they_are_in_metres(camera: dict[str, Any]) -> None:
    camera["ground"] = copy.deepcopy(GROUND)
    assert camera_from_mapping(camera).ground == Ground(((160, 342), (480, 342), (480, 216), (160, 216)),
                                                        ((-4, 10), (4, 10), (8, 21), (-8, 21)))
    assert camera_from_mapping({"id": "cam-01"}).ground is None


@pytest.mark.parametrize(("key", "points", "says"), [
    ("image", [[160, 342], [480, 342], [480, 216]], "image: needs at least 4 entries, not 3"),
    ("metres", [[0, 0], [1, 1], [2, 2], [0, 5]], "metres: three of the four points lie in a line"),
    ("image", [[160, 342], [480, 342], [700, 216], [160, 216]], "image point (700, 216) lies outside the 640×360"),
])
def test_a_ground_calibration_that_fixes_no_perspective_is_refused(camera: dict[str, Any], key: str,
                                                                   points: list[list[int]], says: str) -> None:
    camera["ground"] = {**copy.deepcopy(GROUND), key: points}
    assert says in refused(camera)
