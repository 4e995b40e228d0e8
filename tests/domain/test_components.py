"""City components (部件) and their 16-digit ids."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.components import ComponentId, ComponentIdError, parse_component_id

FAST = settings(max_examples=200, deadline=None)


def test_a_component_id_splits_into_county_class_and_serial() -> None:
    component = parse_component_id("3101040103000012")

    assert (component.county, component.major, component.minor, component.serial) == (
        "310104", "01", "03", "000012",
    )


def test_the_taxonomy_code_is_the_major_and_minor_class() -> None:
    # 01 03 = 雨水井盖, a rain-water manhole cover.
    assert parse_component_id("3101040103000012").taxonomy_code == "0103"


def test_str_gives_the_digits_and_whitespace_is_ignored() -> None:
    assert str(parse_component_id(" 3101040103000012 ")) == "3101040103000012"


def test_component_ids_order_by_their_digits() -> None:
    assert ComponentId("3101040101000002") < ComponentId("3101040103000001")


@pytest.mark.parametrize("text", ["310104010300001A", "", "3101040103-00012", "３１０１０４０１０３０００００１２"])
def test_an_id_must_contain_only_ascii_digits(text: str) -> None:
    with pytest.raises(ComponentIdError, match="only digits"):
        parse_component_id(text)


@pytest.mark.parametrize("text", ["310104010300001", "31010401030000123"])
def test_an_id_must_have_16_digits(text: str) -> None:
    with pytest.raises(ComponentIdError, match=f"has {len(text)} digits, expected 16"):
        parse_component_id(text)


@pytest.mark.parametrize("text", ["3101040003000012", "3101040100000012"])
def test_neither_class_may_be_00(text: str) -> None:
    with pytest.raises(ComponentIdError, match="all-zero class"):
        parse_component_id(text)


def test_the_serial_may_not_be_000000() -> None:
    with pytest.raises(ComponentIdError, match="serial 000000"):
        parse_component_id("3101040103000000")


@st.composite
def valid_ids(draw: st.DrawFn) -> str:
    county = draw(st.integers(0, 999_999))
    major = draw(st.integers(1, 99))
    minor = draw(st.integers(1, 99))
    serial = draw(st.integers(1, 999_999))
    return f"{county:06d}{major:02d}{minor:02d}{serial:06d}"


@FAST
@given(valid_ids())
def test_a_well_formed_id_round_trips_and_its_parts_rebuild_it(text: str) -> None:
    component = parse_component_id(text)

    assert str(component) == text
    assert component.county + component.taxonomy_code + component.serial == text
    assert component.taxonomy_code == component.major + component.minor


@FAST
@given(st.text() | st.text(alphabet="0123456789 ", min_size=14, max_size=18))
def test_any_text_either_parses_to_a_valid_id_or_raises_component_id_error(text: str) -> None:
    try:
        component = parse_component_id(text)
    except ComponentIdError:
        return
    assert len(component.digits) == 16
    assert component.digits.isascii() and component.digits.isdigit()
    assert "00" not in (component.major, component.minor)
    assert int(component.serial) > 0
