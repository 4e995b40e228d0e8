"""Grid cells (单元网格) from GeoJSON, point-in-cell lookup and hierarchy prefix queries."""

from __future__ import annotations

import math
from typing import Any

import pytest
from shapely.geometry import box

from domain.cells import CellGeometryError, CellIndex, GridCell, cells_from_geojson
from domain.gridcode import GridCodeError, Level, parse_grid_code

LON0, LAT0 = 121.43, 31.20
# About 100 m on a spherical earth (R = 6371 km, 111,195 m per degree of latitude); kept independent of the
# code's own ellipsoid constants so that the area check is a real check.
DLAT = 100 / 111_195
DLON = 100 / (111_195 * math.cos(math.radians(LAT0)))

# Four ~100 m squares in a row, west to east. The first two share an edge and the western one has the
# higher code, so "lowest code wins on a boundary" is not the same as "first feature wins".
ROW = [
    ("310104003001002", "天平路街道", "宛南社区"),
    ("310104003001001", "天平路街道", "宛南社区"),
    ("310104003002001", "天平路街道", "建襄社区"),
    ("310104004001001", "湖南路街道", "湖南社区"),
]


def square(i: int) -> list[list[list[float]]]:
    """Ring of the i-th square of the row."""
    west, east = LON0 + i * DLON, LON0 + (i + 1) * DLON
    return [[[west, LAT0], [east, LAT0], [east, LAT0 + DLAT], [west, LAT0 + DLAT], [west, LAT0]]]


def centre(i: int) -> tuple[float, float]:
    return LON0 + (i + 0.5) * DLON, LAT0 + DLAT / 2


def feature(code: Any, geometry: Any, **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "properties": {"code": code, **props}, "geometry": geometry}


def collection(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def row_collection() -> dict[str, Any]:
    return collection(*(
        feature(code, {"type": "Polygon", "coordinates": square(i)}, name=f"{community}第{code[-1]}网格",
                street=street, community=community)
        for i, (code, street, community) in enumerate(ROW)
    ))


@pytest.fixture
def index() -> CellIndex:
    return CellIndex(cells_from_geojson(row_collection()))


def test_features_become_cells_with_their_names() -> None:
    cells = cells_from_geojson(row_collection())

    first = cells[0]
    assert first.code == parse_grid_code("310104003001002")
    assert (first.name, first.street_name, first.community_name) == ("宛南社区第2网格", "天平路街道", "宛南社区")
    assert first.polygon.geom_type == "Polygon"


def test_names_default_to_the_code_and_empty_street_and_community() -> None:
    [cell] = cells_from_geojson(collection(feature("310104003001001", {"type": "Polygon", "coordinates": square(0)})))

    assert (cell.name, cell.street_name, cell.community_name) == ("310104003001001", "", "")


def test_a_numeric_code_property_is_accepted() -> None:
    [cell] = cells_from_geojson(collection(feature(310104003001001, {"type": "Polygon", "coordinates": square(0)})))

    assert cell.code.digits == "310104003001001"


def test_a_multipolygon_cell_is_accepted() -> None:
    geometry = {"type": "MultiPolygon", "coordinates": [square(0), square(2)]}

    [cell] = cells_from_geojson(collection(feature("310104003001001", geometry)))

    assert cell.polygon.geom_type == "MultiPolygon"


def test_14_digit_codes_are_read_when_configured() -> None:
    [cell] = cells_from_geojson(
        collection(feature("31010400300101", {"type": "Polygon", "coordinates": square(0)})), code_length=14
    )

    assert cell.code.sequence == "01"


def test_a_collection_without_features_gives_no_cells() -> None:
    assert cells_from_geojson({"type": "FeatureCollection"}) == []


@pytest.mark.parametrize("data", [{"type": "Feature"}, {"features": []}, {}])
def test_only_a_feature_collection_is_accepted(data: dict[str, Any]) -> None:
    with pytest.raises(CellGeometryError, match="must be a GeoJSON FeatureCollection"):
        cells_from_geojson(data)


@pytest.mark.parametrize("props", [{}, None, {"name": "no code here"}])
def test_a_feature_without_a_code_is_rejected(props: dict[str, Any] | None) -> None:
    geometry = {"type": "Polygon", "coordinates": square(0)}
    data = collection({"type": "Feature", "properties": props, "geometry": geometry})

    with pytest.raises(CellGeometryError, match=r"feature 0 \(no code\): missing 'code'"):
        cells_from_geojson(data)


def test_a_feature_without_a_geometry_is_rejected() -> None:
    data = collection({"type": "Feature", "properties": {"code": "310104003001001"}})

    with pytest.raises(CellGeometryError, match="missing 'geometry'"):
        cells_from_geojson(data)


def test_an_invalid_code_is_rejected_with_the_feature_named() -> None:
    data = collection(
        feature("310104003001001", {"type": "Polygon", "coordinates": square(0)}),
        feature("310104003001000", {"type": "Polygon", "coordinates": square(1)}),
    )

    with pytest.raises(CellGeometryError, match=r"feature 1 \(310104003001000\): .*all-zero cell sequence"):
        cells_from_geojson(data)


def test_a_15_digit_code_is_rejected_when_14_digits_are_configured() -> None:
    data = collection(feature("310104003001001", {"type": "Polygon", "coordinates": square(0)}))

    with pytest.raises(CellGeometryError, match="expected 14"):
        cells_from_geojson(data, code_length=14)


@pytest.mark.parametrize(
    "geometry",
    [
        None,
        "POLYGON ((0 0, 1 0, 1 1, 0 0))",
        {"type": "Polygon", "coordinates": [[[LON0, LAT0], [LON0 + DLON, LAT0]]]},  # a ring needs 4 points
        {"type": "Point", "coordinates": ["east", "north"]},
    ],
)
def test_malformed_geometry_is_rejected(geometry: Any) -> None:
    with pytest.raises(CellGeometryError, match="bad geometry"):
        cells_from_geojson(collection(feature("310104003001001", geometry)))


def test_an_unknown_geometry_type_is_rejected_as_bad_geometry() -> None:
    with pytest.raises(CellGeometryError):
        cells_from_geojson(collection(feature("310104003001001", {"type": "Circle", "coordinates": [LON0, LAT0]})))


@pytest.mark.parametrize(
    "geometry",
    [
        {"type": "Point", "coordinates": [LON0, LAT0]},
        {"type": "LineString", "coordinates": [[LON0, LAT0], [LON0 + DLON, LAT0]]},
        {"type": "Polygon", "coordinates": []},  # empty
        # A bow-tie: the ring crosses itself, so the polygon is invalid.
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
    ],
)
def test_only_valid_non_empty_polygons_are_cells(geometry: dict[str, Any]) -> None:
    with pytest.raises(CellGeometryError, match=r"must be a valid, non-empty \(Multi\)Polygon"):
        cells_from_geojson(collection(feature("310104003001001", geometry)))


def test_duplicate_codes_in_an_index_are_rejected_by_name() -> None:
    cells = cells_from_geojson(row_collection())
    duplicate = GridCell(cells[1].code, "copy", "", "", box(0, 0, 1, 1))

    with pytest.raises(CellGeometryError, match=r"duplicate grid cell codes: 310104003001001$"):
        CellIndex([*cells, duplicate])


def test_an_index_holds_its_cells_in_code_order(index: CellIndex) -> None:
    assert len(index) == 4
    assert [c.code.digits for c in index] == sorted(code for code, _, _ in ROW)


def test_get_finds_a_cell_by_its_exact_code(index: CellIndex) -> None:
    cell = index.get("310104003002001")

    assert cell is not None
    assert cell.community_name == "建襄社区"
    assert index.get("310104003002") is None


@pytest.mark.parametrize(("position", "code"), list(enumerate(code for code, _, _ in ROW)))
def test_locate_finds_the_cell_containing_a_point(index: CellIndex, position: int, code: str) -> None:
    cell = index.locate(*centre(position))

    assert cell is not None
    assert cell.code.digits == code


@pytest.mark.parametrize(
    ("lon", "lat"),
    [(LON0 - DLON / 2, LAT0 + DLAT / 2), (LON0 + 2 * DLON, LAT0 + 2 * DLAT), (LON0 + 4.5 * DLON, LAT0 + DLAT / 2)],
)
def test_locate_returns_none_outside_every_cell(index: CellIndex, lon: float, lat: float) -> None:
    assert index.locate(lon, lat) is None


def test_a_point_on_a_shared_edge_goes_to_the_lower_code(index: CellIndex) -> None:
    # The edge between the first two squares: 310104003001002 (west) and 310104003001001 (east).
    cell = index.locate(LON0 + DLON, LAT0 + DLAT / 2)

    assert cell is not None
    assert cell.code.digits == "310104003001001"


def test_a_point_on_the_outer_edge_of_a_cell_is_in_that_cell(index: CellIndex) -> None:
    cell = index.locate(LON0 + 2.5 * DLON, LAT0)

    assert cell is not None
    assert cell.code.digits == "310104003002001"


def test_a_point_in_a_hole_of_a_cell_is_not_in_that_cell() -> None:
    outer = square(0)[0]
    hole = [[LON0 + DLON / 4, LAT0 + DLAT / 4], [LON0 + 3 * DLON / 4, LAT0 + DLAT / 4],
            [LON0 + 3 * DLON / 4, LAT0 + 3 * DLAT / 4], [LON0 + DLON / 4, LAT0 + 3 * DLAT / 4],
            [LON0 + DLON / 4, LAT0 + DLAT / 4]]
    index = CellIndex(cells_from_geojson(collection(feature("310104003001001", {"type": "Polygon",
                                                                                "coordinates": [outer, hole]}))))

    assert index.locate(*centre(0)) is None
    assert index.locate(LON0 + DLON / 8, LAT0 + DLAT / 8) is not None


@pytest.mark.parametrize(
    ("prefix", "codes"),
    [
        ("310104", ["310104003001001", "310104003001002", "310104003002001", "310104004001001"]),
        ("310104003", ["310104003001001", "310104003001002", "310104003002001"]),
        ("310104003001", ["310104003001001", "310104003001002"]),
        ("310104003001002", ["310104003001002"]),
        ("310105", []),
        ("310104005", []),
    ],
)
def test_under_lists_the_cells_of_an_area_in_code_order(index: CellIndex, prefix: str, codes: list[str]) -> None:
    assert [c.code.digits for c in index.under(prefix)] == codes


@pytest.mark.parametrize("prefix", ["3101", "31010400", "310104x03", "310104003001000", ""])
def test_under_rejects_a_bad_prefix(index: CellIndex, prefix: str) -> None:
    with pytest.raises(GridCodeError):
        index.under(prefix)


def test_under_uses_the_index_code_length() -> None:
    index = CellIndex(cells_from_geojson(
        collection(feature("31010400300101", {"type": "Polygon", "coordinates": square(0)})), code_length=14
    ))

    assert index.code_length == 14
    assert [c.code.digits for c in index.under("31010400300101")] == ["31010400300101"]
    with pytest.raises(GridCodeError):
        index.under("310104003001001")


def test_an_empty_index_assumes_15_digit_codes_and_finds_nothing() -> None:
    index = CellIndex([])

    assert index.code_length == 15
    assert index.locate(LON0, LAT0) is None
    assert index.under("310104") == []


def test_areas_name_every_street_present(index: CellIndex) -> None:
    assert index.areas(Level.STREET) == {"310104003": "天平路街道", "310104004": "湖南路街道"}


def test_areas_name_every_community_present(index: CellIndex) -> None:
    assert index.areas(Level.COMMUNITY) == {
        "310104003001": "宛南社区", "310104003002": "建襄社区", "310104004001": "湖南社区",
    }


def test_areas_at_cell_level_give_the_cell_names(index: CellIndex) -> None:
    assert index.areas(Level.CELL)["310104003001002"] == "宛南社区第2网格"
    assert len(index.areas(Level.CELL)) == 4


def test_areas_at_district_level_are_named_by_their_code(index: CellIndex) -> None:
    assert index.areas(Level.DISTRICT) == {"310104": "310104"}


def test_the_area_of_a_100_m_square_is_about_10000_m2(index: CellIndex) -> None:
    # The square is 100 m × 100 m on a sphere; the code uses an ellipsoid-ish equirectangular scale,
    # which differs by well under 1 %.
    for cell in index:
        assert cell.area_m2 == pytest.approx(10_000, rel=0.01)


def test_the_area_of_a_rectangle_scales_with_its_sides() -> None:
    [cell] = cells_from_geojson(collection(feature("310104003001001", {
        "type": "Polygon",
        "coordinates": [[[LON0, LAT0], [LON0 + 3 * DLON, LAT0], [LON0 + 3 * DLON, LAT0 + 2 * DLAT],
                         [LON0, LAT0 + 2 * DLAT], [LON0, LAT0]]],
    })))

    assert cell.area_m2 == pytest.approx(60_000, rel=0.01)


def test_a_feature_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(CellGeometryError, match="feature 0 is not a GeoJSON Feature object"):
        cells_from_geojson({"type": "FeatureCollection", "features": ["not a feature"]})
