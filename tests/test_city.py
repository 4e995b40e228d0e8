"""Loading a city directory: the shipped demo city, and broken cities failing with the file named."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from core.city import DEMO_CITY_DIR, CityError, load_city
from core.settings import Settings, load_settings
from domain.registry import DeviceKind

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
import make_demo_city


def settings_for(directory: Path | None) -> Settings:
    return load_settings(overrides={"city.dir": directory}, environ={})


@pytest.fixture
def city_copy(tmp_path: Path) -> Path:
    target = tmp_path / "city"
    shutil.copytree(DEMO_CITY_DIR, target)
    return target


def test_demo_city_is_the_default_and_meets_its_brief() -> None:
    city = load_city(settings_for(None))
    streets = {c.code.street for c in city.cells}
    communities = {c.code.community for c in city.cells}
    kinds = {kind: sum(1 for d in city.registry if d.kind is kind) for kind in DeviceKind}
    assert city.county_code == "310104"
    assert len(city.cells) >= 60
    assert len(streets) >= 3
    assert all(sum(1 for c in communities if c.startswith(s)) >= 2 for s in streets)
    assert len(city.registry) >= 200
    assert all(count > 0 for count in kinds.values())
    assert len(city.registry.cameras) >= 4
    assert all(code in city.routing for code in ("0101", "0102", "0103", "0302", "0404", "0406", "0501",
                                                 "0504", "9901", "9902", "9903"))


def test_shipped_demo_files_are_what_the_generator_makes() -> None:
    for name, text in make_demo_city.render().items():
        assert (DEMO_CITY_DIR / name).read_text(encoding="utf-8") == text, f"{name} differs; rerun the tool"


def test_missing_file_is_named(city_copy: Path) -> None:
    (city_copy / "routing.csv").unlink()
    with pytest.raises(CityError, match=r"missing city file\(s\): routing\.csv"):
        load_city(settings_for(city_copy))


def test_device_in_the_wrong_cell_names_file_and_device(city_copy: Path) -> None:
    devices = city_copy / "devices.csv"
    lines = devices.read_text(encoding="utf-8").splitlines()
    fields = lines[1].split(",")
    fields[2] = "310104014002012"  # a cell at the other end of the district
    lines[1] = ",".join(fields)
    devices.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CityError, match=rf"{devices}: device {fields[0]}: position .* not in its grid cell"):
        load_city(settings_for(city_copy))


def test_bad_routing_term_names_file_and_row(city_copy: Path) -> None:
    routing = city_copy / "routing.csv"
    routing.write_text(routing.read_text(encoding="utf-8").replace("2h natural", "2 hours"), encoding="utf-8")
    with pytest.raises(CityError, match=r"routing.csv: routing row 1 \(0101\): SLA term '2 hours'"):
        load_city(settings_for(city_copy))


def test_malformed_geojson_names_file(city_copy: Path) -> None:
    (city_copy / "cells.geojson").write_text("{not json", encoding="utf-8")
    with pytest.raises(CityError, match=r"cells\.geojson"):
        load_city(settings_for(city_copy))


def test_bad_camera_zone_names_file_camera_zone_and_key(city_copy: Path) -> None:
    cameras = city_copy / "cameras.yaml"
    cameras.write_text(cameras.read_text(encoding="utf-8").replace("kind: shopfront", "kind: parking"),
                       encoding="utf-8")
    with pytest.raises(CityError, match=r"cameras\.yaml: camera cam-hunan-02: zone shopfront-east: kind: must be"):
        load_city(settings_for(city_copy))


def test_a_misspelt_camera_key_names_file_camera_and_key(city_copy: Path) -> None:
    cameras = city_copy / "cameras.yaml"
    cameras.write_text(cameras.read_text(encoding="utf-8").replace("fps: 5", "fsp: 25", 1), encoding="utf-8")
    with pytest.raises(CityError, match=rf"^{cameras}: camera cam-tianping-01: fsp: unknown key$"):
        load_city(settings_for(city_copy))


def test_a_camera_file_that_is_not_utf8_is_named(city_copy: Path) -> None:
    cameras = city_copy / "cameras.yaml"
    cameras.write_bytes(cameras.read_text(encoding="utf-8").replace("cam-hunan-02", "湖南路-02").encode("gb18030"))
    with pytest.raises(CityError, match=r"cameras\.yaml: not UTF-8 text"):
        load_city(settings_for(city_copy))


@pytest.mark.parametrize(("line", "message"), [
    ("districts: 3", "districts: unknown key"),
    ("code_length: 16", "code_length: Input should be 15 or 14"),
    ('county_code: "3101"', "county_code: String should match pattern"),
])
def test_city_yaml_is_strict(city_copy: Path, line: str, message: str) -> None:
    meta = city_copy / "city.yaml"
    key = line.split(":")[0]
    kept = [other for other in meta.read_text(encoding="utf-8").splitlines() if not other.startswith(f"{key}:")]
    meta.write_text("\n".join([*kept, line]) + "\n", encoding="utf-8")
    with pytest.raises(CityError, match=rf"^{meta}: {message}"):
        load_city(settings_for(city_copy))
