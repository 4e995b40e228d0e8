"""The case taxonomy (部件事件分类), loaded from rows so that a city can bring its own table."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from domain.taxonomy import Category, CategoryKind, TaxonomyError, taxonomy_from_rows

DEMO_TAXONOMY = Path(__file__).parents[2] / "core" / "city" / "demo" / "taxonomy.csv"


def row(code: str = "0101", name_zh: str = "上水井盖", name_en: str = "water-supply manhole cover",
        kind: str = "component") -> dict[str, str]:
    return {"code": code, "name_zh": name_zh, "name_en": name_en, "kind": kind}


def test_rows_become_categories_looked_up_by_code() -> None:
    taxonomy = taxonomy_from_rows([row(), row("0406", "道路积水", "waterlogging", "event")])

    assert taxonomy["0406"] == Category("0406", "道路积水", "waterlogging", CategoryKind.EVENT)
    assert taxonomy["0101"].kind is CategoryKind.COMPONENT


def test_the_label_shows_code_chinese_and_english_names() -> None:
    assert Category("0103", "雨水井盖", "rain-water manhole cover", CategoryKind.COMPONENT).label == (
        "0103 雨水井盖 (rain-water manhole cover)"
    )


def test_fields_are_trimmed_and_the_english_name_is_optional() -> None:
    taxonomy = taxonomy_from_rows([{"code": " 0302 ", "name_zh": " 工地扬尘 ", "kind": " event "}])

    assert taxonomy["0302"] == Category("0302", "工地扬尘", "", CategoryKind.EVENT)


def test_an_unknown_code_raises_taxonomy_error() -> None:
    with pytest.raises(TaxonomyError, match="unknown taxonomy code '9999'"):
        taxonomy_from_rows([row()])["9999"]


def test_membership_length_and_iteration_follow_the_rows() -> None:
    taxonomy = taxonomy_from_rows([row("0102", "污水井盖"), row("0101")])

    assert "0102" in taxonomy
    assert "0103" not in taxonomy
    assert len(taxonomy) == 2
    assert [c.code for c in taxonomy] == ["0102", "0101"]


def test_a_code_listed_twice_raises() -> None:
    with pytest.raises(TaxonomyError, match="0101 appears twice"):
        taxonomy_from_rows([row(), row()])


@pytest.mark.parametrize("code", ["", "101", "01010", "01a1", None])
def test_a_code_must_be_4_digits(code: str | None) -> None:
    with pytest.raises(TaxonomyError, match=r"row 1: code .* must be 4 digits"):
        taxonomy_from_rows([{"code": code, "name_zh": "x", "kind": "event"}])  # type: ignore[dict-item]


def test_a_code_must_be_4_ascii_digits() -> None:
    # '٠١٠١' is 0101 in Arabic-Indic digits: it can never match a component id's ASCII class digits.
    with pytest.raises(TaxonomyError, match="must be 4 digits"):
        taxonomy_from_rows([row(code="٠١٠١")])


@pytest.mark.parametrize("kind", ["", "Component ", "incident", None])
def test_the_kind_must_be_component_or_event(kind: str | None) -> None:
    with pytest.raises(TaxonomyError, match="must be component or event"):
        taxonomy_from_rows([row(kind=kind)])  # type: ignore[arg-type]


@pytest.mark.parametrize("name_zh", ["", "   "])
def test_the_chinese_name_is_required(name_zh: str) -> None:
    with pytest.raises(TaxonomyError, match=r"row 2 \(0102\): name_zh is empty"):
        taxonomy_from_rows([row(), row("0102", name_zh)])


def test_the_demo_table_holds_the_design_codes_with_their_kinds() -> None:
    with DEMO_TAXONOMY.open(encoding="utf-8") as f:
        taxonomy = taxonomy_from_rows(csv.DictReader(f))

    components = {c.code for c in taxonomy if c.kind is CategoryKind.COMPONENT}
    events = {c.code for c in taxonomy if c.kind is CategoryKind.EVENT}
    assert components == {"0101", "0102", "0103"}
    assert events == {"0302", "0404", "0406", "0501", "0504", "9901", "9902", "9903"}
    assert taxonomy["0103"].name_zh == "雨水井盖"
