"""City components (部件) and their 16-digit ids: county + major class + minor class + serial."""

from __future__ import annotations

from dataclasses import dataclass


class ComponentIdError(ValueError):
    """A string that is not a valid 16-digit component id."""


@dataclass(frozen=True, slots=True, order=True)
class ComponentId:
    """A component id such as 3101040103000012 (a 雨水井盖 rain-water manhole cover in Xuhui)."""

    digits: str

    @property
    def county(self) -> str:
        """The 6-digit county code."""
        return self.digits[:6]

    @property
    def major(self) -> str:
        """The 2-digit major class (大类)."""
        return self.digits[6:8]

    @property
    def minor(self) -> str:
        """The 2-digit minor class (小类)."""
        return self.digits[8:10]

    @property
    def serial(self) -> str:
        """The 6-digit serial within the county and class."""
        return self.digits[10:]

    @property
    def taxonomy_code(self) -> str:
        """The 4-digit taxonomy code of the component's class, e.g. 0103."""
        return self.digits[6:10]

    def __str__(self) -> str:
        return self.digits


def parse_component_id(text: str) -> ComponentId:
    """Parse a 16-digit component id; raise ComponentIdError with the reason."""
    digits = text.strip()
    if not digits.isascii() or not digits.isdigit():
        raise ComponentIdError(f"component id {text!r} must contain only digits")
    if len(digits) != 16:
        raise ComponentIdError(f"component id {text!r} has {len(digits)} digits, expected 16")
    if digits[6:8] == "00" or digits[8:10] == "00":
        raise ComponentIdError(f"component id {text!r} has an all-zero class")
    if int(digits[10:]) == 0:
        raise ComponentIdError(f"component id {text!r} has serial 000000")
    return ComponentId(digits)
