"""The case taxonomy (部件事件分类), loaded from data so that a city can bring its own table."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

# The codes GridHub's own rules and detectors file cases under (the demo city's table names them).
WATER_SUPPLY_COVER = "0101"  # 上水井盖
SEWAGE_COVER = "0102"  # 污水井盖
RAIN_WATER_COVER = "0103"  # 雨水井盖
CONSTRUCTION_DUST = "0302"  # 工地扬尘
SEWER_BLOCKED = "0404"  # 下水道堵塞或破损
WATERLOGGING = "0406"  # 道路积水
STREET_VENDING = "0501"  # 无照经营游商
SHOP_SPILL_OUT = "0504"  # 店外经营
CROWD_GATHERING = "9901"  # 人群聚集
DEVICE_OFFLINE = "9902"  # 设备离线
LOW_BATTERY = "9903"  # 设备低电量


class TaxonomyError(ValueError):
    """A malformed taxonomy table or an unknown code."""


class CategoryKind(StrEnum):
    """Components (部件) are physical objects; events (事件) are things that happen."""

    COMPONENT = "component"
    EVENT = "event"


@dataclass(frozen=True, slots=True)
class Category:
    """One taxonomy entry: a 4-digit code with its Chinese and English names."""

    code: str
    name_zh: str
    name_en: str
    kind: CategoryKind

    @property
    def label(self) -> str:
        """Display label: code, Chinese name and English name."""
        return f"{self.code} {self.name_zh} ({self.name_en})"


class Taxonomy:
    """A lookup table of categories by code."""

    def __init__(self, categories: Iterable[Category]) -> None:
        self._by_code: dict[str, Category] = {}
        for category in categories:
            if category.code in self._by_code:
                raise TaxonomyError(f"taxonomy code {category.code} appears twice")
            self._by_code[category.code] = category

    def __getitem__(self, code: str) -> Category:
        try:
            return self._by_code[code]
        except KeyError:
            raise TaxonomyError(f"unknown taxonomy code {code!r}") from None

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def __iter__(self) -> Iterator[Category]:
        return iter(self._by_code.values())

    def __len__(self) -> int:
        return len(self._by_code)


def taxonomy_from_rows(rows: Iterable[Mapping[str, str]]) -> Taxonomy:
    """Build a taxonomy from rows with `code`, `name_zh`, `name_en`, `kind` (e.g. from a CSV file)."""
    categories = []
    for i, row in enumerate(rows, start=1):
        code = (row.get("code") or "").strip()
        if len(code) != 4 or not code.isascii() or not code.isdigit():
            raise TaxonomyError(f"taxonomy row {i}: code {code!r} must be 4 digits")
        kind = (row.get("kind") or "").strip()
        try:
            category_kind = CategoryKind(kind)
        except ValueError:
            raise TaxonomyError(f"taxonomy row {i} ({code}): kind {kind!r} must be component or event") from None
        name_zh = (row.get("name_zh") or "").strip()
        if not name_zh:
            raise TaxonomyError(f"taxonomy row {i} ({code}): name_zh is empty")
        categories.append(Category(code, name_zh, (row.get("name_en") or "").strip(), category_kind))
    return Taxonomy(categories)
