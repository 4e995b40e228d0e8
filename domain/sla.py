"""The SLA calendar (处置时限): deadlines in working time or natural time.

Ordinary cases run on working hours (default 08:30–17:30) of official working days: weekends and
public holidays are off, and the make-up weekend days of 调休 are on. Urgent cases run on natural time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from enum import StrEnum

import chinese_calendar

MAX_CALENDAR_DAYS = 3660
_COVERED_YEARS = range(min(chinese_calendar.holidays).year, max(chinese_calendar.holidays).year + 1)


class SlaError(ValueError):
    """A malformed SLA term or calendar, or a naive datetime."""


class Clock(StrEnum):
    """How a deadline counts time."""

    WORKING = "working"
    NATURAL = "natural"


@dataclass(frozen=True, slots=True)
class SlaTerm:
    """A time allowance: an amount of working or natural time."""

    duration: timedelta
    clock: Clock

    def __str__(self) -> str:
        minutes = int(self.duration.total_seconds() // 60)
        amount = f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}min"
        return f"{amount} {self.clock.value}"


_TERM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(min|h|d)\s+(working|natural)\s*$")


def parse_term(text: str, working_day: timedelta = timedelta(hours=9)) -> SlaTerm:
    """Parse '2h natural', '30min natural', '4h working' or '1d working' (a working day is `working_day` long)."""
    match = _TERM.match(text)
    if not match:
        raise SlaError(f"SLA term {text!r} must look like '4h working', '30min natural' or '1d working'")
    amount, unit, clock_name = float(match[1]), match[2], match[3]
    clock = Clock(clock_name)
    if unit == "min":
        duration = timedelta(minutes=amount)
    elif unit == "h":
        duration = timedelta(hours=amount)
    else:
        duration = working_day * amount if clock is Clock.WORKING else timedelta(days=amount)
    if duration <= timedelta(0):
        raise SlaError(f"SLA term {text!r} must be positive")
    return SlaTerm(duration, clock)


class ChinaWorkdays:
    """China's official working days (chinese-calendar data), with a city's own overrides.

    Years the bundled data does not cover fall back to Monday–Friday; `covers()` tells which,
    so that a deployment can warn and load the year's 调休 schedule through `extra_*`.
    """

    def __init__(self, extra_holidays: Iterable[date] = (), extra_workdays: Iterable[date] = ()) -> None:
        self._holidays = frozenset(extra_holidays)
        self._workdays = frozenset(extra_workdays)
        clash = self._holidays & self._workdays
        if clash:
            raise SlaError(f"dates are both holiday and workday: {', '.join(map(str, sorted(clash)))}")

    def __call__(self, day: date) -> bool:
        if day in self._workdays:
            return True
        if day in self._holidays:
            return False
        if self.covers(day):
            is_workday: bool = chinese_calendar.is_workday(day)
            return is_workday
        return day.weekday() < 5

    @staticmethod
    def covers(day: date) -> bool:
        """True when the official holiday schedule for the day's year is known."""
        return day.year in _COVERED_YEARS


@dataclass(frozen=True)
class SlaCalendar:
    """Adds and measures time in working or natural terms, in the city's time zone."""

    tz: tzinfo
    working_periods: Sequence[tuple[time, time]]
    is_workday: Callable[[date], bool]

    def __post_init__(self) -> None:
        if not self.working_periods:
            raise SlaError("a working day needs at least one working period")
        previous_end = time.min
        for start, end in self.working_periods:
            if not start < end:
                raise SlaError(f"working period {start}–{end} must end after it starts")
            if start < previous_end:
                raise SlaError(f"working period {start}–{end} overlaps or precedes the one before it")
            previous_end = end

    @property
    def working_day(self) -> timedelta:
        """Working time in one full working day."""
        return sum(
            (datetime.combine(date.min, end) - datetime.combine(date.min, start)
             for start, end in self.working_periods),
            timedelta(0),
        )

    def deadline(self, start: datetime, term: SlaTerm) -> datetime:
        """The moment `term` has run out when the clock starts at `start`."""
        return self.add(start, term.duration, term.clock)

    def add(self, start: datetime, duration: timedelta, clock: Clock) -> datetime:
        """`start` plus `duration` of `clock` time; a working deadline always lands inside working hours."""
        _check_aware(start)
        if clock is Clock.NATURAL or duration == timedelta(0):
            return start + duration
        if duration < timedelta(0):
            raise SlaError(f"cannot add a negative working duration ({duration})")
        remaining = duration
        moment = start.astimezone(self.tz)
        day = moment.date()
        for _ in range(MAX_CALENDAR_DAYS):
            if self.is_workday(day):
                for period_start, period_end in self._periods(day):
                    if period_end <= moment:
                        continue
                    begin = max(period_start, moment)
                    available = period_end - begin
                    if remaining <= available:
                        return begin + remaining
                    remaining -= available
            day += timedelta(days=1)
        raise SlaError(f"no working time found within {MAX_CALENDAR_DAYS} days of {start}")

    def between(self, start: datetime, end: datetime, clock: Clock) -> timedelta:
        """Elapsed `clock` time from `start` to `end` (negative when `end` is earlier)."""
        _check_aware(start)
        _check_aware(end)
        if clock is Clock.NATURAL:
            return end - start
        if end < start:
            return -self.between(end, start, clock)
        total = timedelta(0)
        first, last = start.astimezone(self.tz), end.astimezone(self.tz)
        day = first.date()
        while day <= last.date():
            if self.is_workday(day):
                for period_start, period_end in self._periods(day):
                    overlap = min(period_end, last) - max(period_start, first)
                    if overlap > timedelta(0):
                        total += overlap
            day += timedelta(days=1)
        return total

    def _periods(self, day: date) -> list[tuple[datetime, datetime]]:
        return [
            (datetime.combine(day, start, self.tz), datetime.combine(day, end, self.tz))
            for start, end in self.working_periods
        ]


def _check_aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise SlaError(f"datetime {moment.isoformat()} has no time zone")
