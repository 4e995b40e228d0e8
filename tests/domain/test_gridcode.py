"""Grid cell codes (单元网格编码): parsing, parts, prefixes and hierarchy levels."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.gridcode import GridCode, GridCodeError, Level, parse_grid_code, parse_prefix, prefix_length

FAST = settings(max_examples=200, deadline=None)


@st.composite
def valid_codes(draw: st.DrawFn, code_length: int = 15) -> str:
    """Digits of a well-formed code: province 11–82, no all-zero part."""
    province = draw(st.integers(11, 82))
    rest_of_county = draw(st.integers(0, 9999))
    street = draw(st.integers(1, 999))
    community = draw(st.integers(1, 999))
    sequence_digits = code_length - 12
    sequence = draw(st.integers(1, 10**sequence_digits - 1))
    return f"{province:02d}{rest_of_county:04d}{street:03d}{community:03d}{sequence:0{sequence_digits}d}"


any_valid_code = st.sampled_from([15, 14]).flatmap(lambda n: valid_codes(n).map(lambda code: (code, n)))


def test_a_15_digit_code_splits_into_county_street_community_and_sequence() -> None:
    code = parse_grid_code("310104003001002")

    assert (code.county, code.street, code.community, code.sequence) == (
        "310104", "310104003", "310104003001", "002",
    )


def test_a_14_digit_code_has_a_2_digit_sequence() -> None:
    code = parse_grid_code("31010400300107", code_length=14)

    assert code.community == "310104003001"
    assert code.sequence == "07"


def test_str_gives_the_digits() -> None:
    assert str(parse_grid_code("310104003001002")) == "310104003001002"


def test_surrounding_whitespace_is_ignored() -> None:
    assert parse_grid_code("  310104003001002\n") == GridCode("310104003001002")


def test_codes_order_by_their_digits() -> None:
    codes = [GridCode("310104004001001"), GridCode("310104003001002"), GridCode("310104003001001")]

    assert [c.digits for c in sorted(codes)] == ["310104003001001", "310104003001002", "310104004001001"]


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (Level.DISTRICT, "310104"),
        (Level.STREET, "310104003"),
        (Level.COMMUNITY, "310104003001"),
        (Level.CELL, "310104003001002"),
    ],
)
def test_prefix_names_the_ancestor_at_each_level(level: Level, expected: str) -> None:
    assert parse_grid_code("310104003001002").prefix(level) == expected


def test_prefix_at_cell_level_of_a_14_digit_code_is_the_whole_code() -> None:
    assert parse_grid_code("31010400300107", code_length=14).prefix(Level.CELL) == "31010400300107"


@pytest.mark.parametrize("prefix", ["", "310104", "310104003", "310104003001", "310104003001002"])
def test_a_cell_is_within_each_of_its_ancestors(prefix: str) -> None:
    assert parse_grid_code("310104003001002").within(prefix)


@pytest.mark.parametrize("prefix", ["310105", "310104004", "310104003002", "310104003001001"])
def test_a_cell_is_not_within_other_areas(prefix: str) -> None:
    assert not parse_grid_code("310104003001002").within(prefix)


@pytest.mark.parametrize(
    ("code_length", "expected"),
    [(15, {Level.DISTRICT: 6, Level.STREET: 9, Level.COMMUNITY: 12, Level.CELL: 15}),
     (14, {Level.DISTRICT: 6, Level.STREET: 9, Level.COMMUNITY: 12, Level.CELL: 14})],
)
def test_prefix_length_per_level(code_length: int, expected: dict[Level, int]) -> None:
    assert {level: prefix_length(level, code_length) for level in Level} == expected


@pytest.mark.parametrize("code_length", [0, 13, 16])
def test_only_15_and_14_digit_codes_are_supported(code_length: int) -> None:
    with pytest.raises(GridCodeError, match="15 or 14"):
        parse_grid_code("310104003001002", code_length=code_length)
    with pytest.raises(GridCodeError, match="15 or 14"):
        parse_prefix("310104", code_length=code_length)
    with pytest.raises(GridCodeError, match="15 or 14"):
        prefix_length(Level.CELL, code_length)


@pytest.mark.parametrize(
    "text",
    ["31010400300100A", "310104-03001002", "", "   ", "３１０１０４００３００１００２", "31010400300100²"],
)
def test_a_code_must_contain_only_ascii_digits(text: str) -> None:
    with pytest.raises(GridCodeError, match="only digits"):
        parse_grid_code(text)


@pytest.mark.parametrize(("text", "code_length"), [("31010400300100", 15), ("3101040030010021", 15),
                                                   ("310104003001002", 14)])
def test_a_code_must_have_the_configured_length(text: str, code_length: int) -> None:
    with pytest.raises(GridCodeError, match=f"has {len(text)} digits, expected {code_length}"):
        parse_grid_code(text, code_length)


@pytest.mark.parametrize(
    ("text", "part"),
    [("000000003001002", "county"), ("310104000001002", "street"), ("310104003000002", "community"),
     ("310104003001000", "cell sequence")],
)
def test_no_part_of_a_code_may_be_all_zeros(text: str, part: str) -> None:
    with pytest.raises(GridCodeError, match=f"all-zero {part} part"):
        parse_grid_code(text)


@pytest.mark.parametrize("text", ["100104003001002", "830104003001002", "990104003001002"])
def test_a_code_must_start_with_a_province_code_between_11_and_82(text: str) -> None:
    with pytest.raises(GridCodeError, match="province"):
        parse_grid_code(text)


@pytest.mark.parametrize("text", ["110101001001001", "820000001001001"])
def test_province_codes_11_and_82_are_accepted(text: str) -> None:
    assert parse_grid_code(text).digits == text


@pytest.mark.parametrize(
    ("text", "level"),
    [("310104", Level.DISTRICT), ("310104003", Level.STREET), ("310104003001", Level.COMMUNITY),
     ("310104003001002", Level.CELL), (" 310104003 ", Level.STREET)],
)
def test_parse_prefix_tells_the_level_from_the_length(text: str, level: Level) -> None:
    assert parse_prefix(text) == (text.strip(), level)


def test_parse_prefix_of_a_14_digit_code_is_a_cell() -> None:
    assert parse_prefix("31010400300107", code_length=14) == ("31010400300107", Level.CELL)


@pytest.mark.parametrize("text", ["3101", "3101040", "31010400300", "3101040030010", "3101040030010021"])
def test_parse_prefix_rejects_lengths_that_name_no_level(text: str) -> None:
    with pytest.raises(GridCodeError, match="expected one of 6, 9, 12, 15"):
        parse_prefix(text)


def test_parse_prefix_rejects_non_digits() -> None:
    with pytest.raises(GridCodeError, match="only digits"):
        parse_prefix("31010x")


def test_a_full_length_prefix_must_be_a_valid_cell_code() -> None:
    with pytest.raises(GridCodeError, match="all-zero cell sequence"):
        parse_prefix("310104003001000")


@FAST
@given(any_valid_code)
def test_a_well_formed_code_round_trips_through_parse_and_str(code_and_length: tuple[str, int]) -> None:
    text, code_length = code_and_length

    assert str(parse_grid_code(text, code_length)) == text


@FAST
@given(any_valid_code)
def test_every_prefix_of_a_code_is_a_prefix_of_its_digits_with_its_level(code_and_length: tuple[str, int]) -> None:
    text, code_length = code_and_length
    code = parse_grid_code(text, code_length)

    for level in Level:
        prefix = code.prefix(level)
        assert text.startswith(prefix)
        assert len(prefix) == prefix_length(level, code_length)
        assert code.within(prefix)
        assert parse_prefix(prefix, code_length) == (prefix, level)


@FAST
@given(st.text(), st.sampled_from([15, 14]))
def test_any_text_either_parses_to_a_valid_code_or_raises_grid_code_error(text: str, code_length: int) -> None:
    try:
        code = parse_grid_code(text, code_length)
    except GridCodeError:
        return
    assert len(code.digits) == code_length
    assert code.digits.isascii() and code.digits.isdigit()


@FAST
@given(st.text(alphabet="0123456789", min_size=15, max_size=15) | st.text(alphabet="0123456789 x", max_size=17))
def test_digit_heavy_text_either_parses_or_raises_grid_code_error(text: str) -> None:
    try:
        code = parse_grid_code(text)
    except GridCodeError:
        return
    assert code.digits == text.strip()
    assert 11 <= int(code.digits[:2]) <= 82


@FAST
@given(st.text())
def test_any_text_either_is_an_area_prefix_or_raises_grid_code_error(text: str) -> None:
    try:
        digits, level = parse_prefix(text)
    except GridCodeError:
        return
    assert len(digits) == prefix_length(level)
