"""Grid cell codes (单元网格编码): county + street + community + cell sequence.

The 15-digit form follows Beijing DB11/T 2157: 6-digit county code (GB/T 2260), 3-digit street (街道),
3-digit community (社区) and 3-digit cell sequence. Some cities use a 2-digit sequence (14 digits).
Every prefix of a code names a level of the hierarchy, which is what prefix queries rely on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

COUNTY_DIGITS = 6
STREET_DIGITS = 3
COMMUNITY_DIGITS = 3
SEQUENCE_DIGITS = {15: 3, 14: 2}


class GridCodeError(ValueError):
    """A string that is not a valid grid code (or prefix) for the configured code length."""


class Level(IntEnum):
    """Levels of the grid hierarchy, from the district (区) down to the cell (单元网格)."""

    DISTRICT = 1
    STREET = 2
    COMMUNITY = 3
    CELL = 4


@dataclass(frozen=True, slots=True, order=True)
class GridCode:
    """A full grid cell code; `str()` gives the digits."""

    digits: str

    @property
    def county(self) -> str:
        """The 6-digit county (district) code, e.g. 310104 for Xuhui."""
        return self.digits[:COUNTY_DIGITS]

    @property
    def street(self) -> str:
        """The 9-digit street prefix (county + street)."""
        return self.digits[: COUNTY_DIGITS + STREET_DIGITS]

    @property
    def community(self) -> str:
        """The 12-digit community prefix (county + street + community)."""
        return self.digits[: COUNTY_DIGITS + STREET_DIGITS + COMMUNITY_DIGITS]

    @property
    def sequence(self) -> str:
        """The cell's sequence number within its community, as written."""
        return self.digits[COUNTY_DIGITS + STREET_DIGITS + COMMUNITY_DIGITS :]

    def prefix(self, level: Level) -> str:
        """The code's prefix that names its ancestor at `level` (the full code for CELL)."""
        return self.digits[: prefix_length(level, len(self.digits))]

    def within(self, prefix: str) -> bool:
        """True when this cell lies under the area named by `prefix` (any hierarchy prefix)."""
        return self.digits.startswith(prefix)

    def __str__(self) -> str:
        return self.digits


def prefix_length(level: Level, code_length: int = 15) -> int:
    """Number of digits that name an area at `level`."""
    _check_length(code_length)
    return {
        Level.DISTRICT: COUNTY_DIGITS,
        Level.STREET: COUNTY_DIGITS + STREET_DIGITS,
        Level.COMMUNITY: COUNTY_DIGITS + STREET_DIGITS + COMMUNITY_DIGITS,
        Level.CELL: code_length,
    }[level]


def parse_grid_code(text: str, code_length: int = 15) -> GridCode:
    """Parse a full cell code of `code_length` digits (15 or 14); raise GridCodeError with the reason."""
    _check_length(code_length)
    digits = text.strip()
    if not digits.isascii() or not digits.isdigit():
        raise GridCodeError(f"grid code {text!r} must contain only digits")
    if len(digits) != code_length:
        raise GridCodeError(f"grid code {text!r} has {len(digits)} digits, expected {code_length}")
    for name, part in (
        ("county", digits[:COUNTY_DIGITS]),
        ("street", digits[COUNTY_DIGITS : COUNTY_DIGITS + STREET_DIGITS]),
        ("community", digits[COUNTY_DIGITS + STREET_DIGITS : COUNTY_DIGITS + STREET_DIGITS + COMMUNITY_DIGITS]),
        ("cell sequence", digits[COUNTY_DIGITS + STREET_DIGITS + COMMUNITY_DIGITS :]),
    ):
        if int(part) == 0:
            raise GridCodeError(f"grid code {text!r} has an all-zero {name} part")
    if int(digits[:2]) < 11 or int(digits[:2]) > 82:
        raise GridCodeError(f"grid code {text!r} does not start with a GB/T 2260 province code (11-82)")
    return GridCode(digits)


def parse_prefix(text: str, code_length: int = 15) -> tuple[str, Level]:
    """Validate an area prefix (district, street, community or full cell) and return it with its level."""
    _check_length(code_length)
    digits = text.strip()
    if not digits.isascii() or not digits.isdigit():
        raise GridCodeError(f"grid prefix {text!r} must contain only digits")
    for level in Level:
        if len(digits) == prefix_length(level, code_length):
            if level is Level.CELL:
                parse_grid_code(digits, code_length)
            return digits, level
    allowed = ", ".join(str(prefix_length(level, code_length)) for level in Level)
    raise GridCodeError(f"grid prefix {text!r} has {len(digits)} digits; expected one of {allowed}")


def _check_length(code_length: int) -> None:
    if code_length not in SEQUENCE_DIGITS:
        raise GridCodeError(f"grid code length must be 15 or 14, not {code_length}")
