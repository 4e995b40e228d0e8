"""The SLA calendar (处置时限): working hours 08:30–17:30 on China's working days, or natural time.

Dates used below (2025): Fri 09-19, Sat 09-20, Mon 09-22, Fri 09-26, Sat 09-27 (off), Sun 09-28 (调休 workday),
Tue 09-30, 10-01..10-08 National Day + Mid-Autumn (off), Thu 10-09, Fri 10-10, Sat 10-11 (调休 workday).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.sla import ChinaWorkdays, Clock, SlaCalendar, SlaError, SlaTerm, parse_term

SHANGHAI = ZoneInfo("Asia/Shanghai")
FAST = settings(max_examples=200, deadline=None)
H = timedelta(hours=1)


def sh(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def office_hours_calendar(is_workday: ChinaWorkdays | None = None) -> SlaCalendar:
    return SlaCalendar(SHANGHAI, [(time(8, 30), time(17, 30))], is_workday or ChinaWorkdays())


# --- working-time deadlines ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "hours", "expected"),
    [
        pytest.param(sh(2025, 9, 22, 9), 4, sh(2025, 9, 22, 13), id="within-one-day"),
        # 1.5 h left on Monday, 2.5 h from 08:30 on Tuesday.
        pytest.param(sh(2025, 9, 22, 16), 4, sh(2025, 9, 23, 11), id="overnight"),
        # Saturday and Sunday are off.
        pytest.param(sh(2025, 9, 19, 16), 4, sh(2025, 9, 22, 11), id="over-a-weekend"),
        # Saturday 09-27 is off but Sunday 09-28 is a make-up working day (调休).
        pytest.param(sh(2025, 9, 26, 16), 4, sh(2025, 9, 28, 11), id="onto-a-make-up-sunday"),
        # 1.5 h on 09-30, then 10-01..10-08 are off, 2.5 h on Thursday 10-09.
        pytest.param(sh(2025, 9, 30, 16), 4, sh(2025, 10, 9, 11), id="over-national-day"),
        # Saturday 10-11 is a make-up working day.
        pytest.param(sh(2025, 10, 10, 16), 4, sh(2025, 10, 11, 11), id="onto-a-make-up-saturday"),
        pytest.param(sh(2025, 9, 22, 7), 1, sh(2025, 9, 22, 9, 30), id="before-opening"),
        pytest.param(sh(2025, 9, 22, 18), 1, sh(2025, 9, 23, 9, 30), id="after-closing"),
        pytest.param(sh(2025, 9, 20, 10), 1, sh(2025, 9, 22, 9, 30), id="from-a-saturday"),
        pytest.param(sh(2025, 10, 3, 10), 1, sh(2025, 10, 9, 9, 30), id="from-inside-a-holiday"),
        # A full day's allowance ends at 17:30 the same day, not at 08:30 the next morning.
        pytest.param(sh(2025, 9, 22, 8, 30), 9, sh(2025, 9, 22, 17, 30), id="exactly-to-closing"),
        # 7.5 h on Monday 09-29 and 9 h on Tuesday 09-30 leave 1.5 h for Thursday 10-09.
        pytest.param(sh(2025, 9, 29, 10), 18, sh(2025, 10, 9, 10), id="two-working-days-over-a-holiday"),
    ],
)
def test_working_time_counts_only_working_hours_of_working_days(
    calendar: SlaCalendar, start: datetime, hours: float, expected: datetime
) -> None:
    assert calendar.add(start, hours * H, Clock.WORKING) == expected


def test_a_one_day_working_term_ends_at_the_same_time_next_working_day(calendar: SlaCalendar) -> None:
    assert calendar.deadline(sh(2025, 9, 22, 10), parse_term("1d working")) == sh(2025, 9, 23, 10)


def test_a_working_deadline_is_given_in_the_city_time_zone(calendar: SlaCalendar) -> None:
    start = datetime(2025, 9, 22, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai

    deadline = calendar.add(start, 4 * H, Clock.WORKING)

    assert deadline == sh(2025, 9, 22, 13)
    assert deadline.utcoffset() == 8 * H


def test_a_zero_duration_leaves_the_start_unchanged(calendar: SlaCalendar) -> None:
    saturday = sh(2025, 9, 20, 10)

    assert calendar.add(saturday, timedelta(0), Clock.WORKING) == saturday


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (sh(2025, 9, 20, 23), sh(2025, 9, 21, 1)),  # weekends count
        (sh(2025, 10, 1, 3), sh(2025, 10, 1, 5)),  # holidays and nights count
    ],
)
def test_natural_time_runs_day_and_night(calendar: SlaCalendar, start: datetime, expected: datetime) -> None:
    assert calendar.deadline(start, parse_term("2h natural")) == expected


def test_the_term_clock_decides_how_a_deadline_counts(calendar: SlaCalendar) -> None:
    start = sh(2025, 9, 22, 16)

    assert calendar.deadline(start, SlaTerm(4 * H, Clock.NATURAL)) == sh(2025, 9, 22, 20)
    assert calendar.deadline(start, SlaTerm(4 * H, Clock.WORKING)) == sh(2025, 9, 23, 11)


def test_working_periods_may_leave_a_lunch_break() -> None:
    calendar = SlaCalendar(SHANGHAI, [(time(8, 30), time(12)), (time(13, 30), time(17, 30))], ChinaWorkdays())

    assert calendar.working_day == 7.5 * H
    # 1 h until 12:00, then 1 h from 13:30.
    assert calendar.add(sh(2025, 9, 22, 11), 2 * H, Clock.WORKING) == sh(2025, 9, 22, 14, 30)
    assert calendar.add(sh(2025, 9, 22, 12, 30), H, Clock.WORKING) == sh(2025, 9, 22, 14, 30)
    assert calendar.between(sh(2025, 9, 22, 11), sh(2025, 9, 22, 14, 30), Clock.WORKING) == 2 * H


def test_a_calendar_without_any_working_day_cannot_add_working_time() -> None:
    calendar = SlaCalendar(SHANGHAI, [(time(8, 30), time(17, 30))], lambda day: False)

    with pytest.raises(SlaError, match="no working time found within 3660 days"):
        calendar.add(sh(2025, 9, 22, 9), H, Clock.WORKING)
    assert calendar.between(sh(2025, 9, 22), sh(2025, 10, 22), Clock.WORKING) == timedelta(0)


# --- measuring elapsed time ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        pytest.param(sh(2025, 9, 22, 9), sh(2025, 9, 22, 13), 4 * H, id="within-one-day"),
        pytest.param(sh(2025, 9, 19, 16), sh(2025, 9, 22, 11), 4 * H, id="over-a-weekend"),
        # 8.5 h on 09-30 and 0.5 h on 10-09; the holiday counts for nothing.
        pytest.param(sh(2025, 9, 30, 9), sh(2025, 10, 9, 9), 9 * H, id="over-national-day"),
        # 0.5 h on Friday 09-26 and 0.5 h on the make-up Sunday 09-28.
        pytest.param(sh(2025, 9, 26, 17), sh(2025, 9, 28, 9), H, id="over-a-make-up-sunday"),
        pytest.param(sh(2025, 9, 22, 7), sh(2025, 9, 22, 19), 9 * H, id="a-whole-day-from-outside-hours"),
        pytest.param(sh(2025, 9, 20, 10), sh(2025, 9, 20, 12), timedelta(0), id="saturday"),
        pytest.param(sh(2025, 9, 22, 10), sh(2025, 9, 22, 10), timedelta(0), id="no-time"),
        # The reverse span is negative: −(8.5 h + 0.5 h).
        pytest.param(sh(2025, 10, 9, 9), sh(2025, 9, 30, 9), -9 * H, id="negative-over-national-day"),
    ],
)
def test_between_counts_working_time(
    calendar: SlaCalendar, start: datetime, end: datetime, expected: timedelta
) -> None:
    assert calendar.between(start, end, Clock.WORKING) == expected


def test_between_accepts_moments_in_any_time_zone(calendar: SlaCalendar) -> None:
    start = datetime(2025, 9, 22, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    end = datetime(2025, 9, 22, 0, 0, tzinfo=timezone(timedelta(hours=-5)))  # 13:00 in Shanghai

    assert calendar.between(start, end, Clock.WORKING) == 4 * H


@pytest.mark.parametrize(("start", "end", "expected"), [
    (sh(2025, 9, 20, 9), sh(2025, 9, 22, 9), 48 * H),
    (sh(2025, 9, 22, 9), sh(2025, 9, 20, 9), -48 * H),
])
def test_between_in_natural_time_is_the_plain_difference(
    calendar: SlaCalendar, start: datetime, end: datetime, expected: timedelta
) -> None:
    assert calendar.between(start, end, Clock.NATURAL) == expected


# --- time zones ------------------------------------------------------------------------------------


@pytest.mark.parametrize("clock", list(Clock))
def test_adding_to_a_naive_datetime_raises(calendar: SlaCalendar, clock: Clock) -> None:
    with pytest.raises(SlaError, match="has no time zone"):
        calendar.add(datetime(2025, 9, 22, 9), H, clock)


def test_a_deadline_from_a_naive_datetime_raises(calendar: SlaCalendar) -> None:
    with pytest.raises(SlaError, match="has no time zone"):
        calendar.deadline(datetime(2025, 9, 22, 9), parse_term("4h working"))


@pytest.mark.parametrize("clock", list(Clock))
@pytest.mark.parametrize(
    ("start", "end"),
    [(datetime(2025, 9, 22, 9), sh(2025, 9, 22, 10)), (sh(2025, 9, 22, 9), datetime(2025, 9, 22, 10))],
    ids=["naive-start", "naive-end"],
)
def test_measuring_with_a_naive_datetime_raises(
    calendar: SlaCalendar, start: datetime, end: datetime, clock: Clock
) -> None:
    with pytest.raises(SlaError, match="has no time zone"):
        calendar.between(start, end, clock)


# --- working days ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2025, 9, 22), True),  # an ordinary Monday
        (date(2025, 9, 20), False),  # an ordinary Saturday
        (date(2025, 9, 27), False),  # Saturday before the holiday: still off
        (date(2025, 9, 28), True),  # Sunday, made up for National Day
        (date(2025, 10, 1), False),  # National Day
        (date(2025, 10, 8), False),  # last day of the National Day + Mid-Autumn holiday
        (date(2025, 10, 9), True),
        (date(2025, 10, 11), True),  # Saturday, made up for National Day
        (date(2026, 1, 1), False),  # New Year's Day, a Thursday
    ],
)
def test_official_working_days_follow_the_state_council_schedule(day: date, working: bool) -> None:
    assert ChinaWorkdays()(day) is working


@pytest.mark.parametrize("day", [date(2004, 1, 1), date(2025, 10, 1), date(2026, 12, 31)])
def test_years_with_published_schedules_are_covered(day: date) -> None:
    assert ChinaWorkdays.covers(day)


@pytest.mark.parametrize("day", [date(2003, 10, 1), date(2030, 10, 1), date(2100, 1, 4)])
def test_years_without_published_schedules_are_not_covered(day: date) -> None:
    assert not ChinaWorkdays.covers(day)


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2030, 10, 1), True),  # a Tuesday: no holiday data, so it counts as working
        (date(2030, 10, 4), True),  # Friday
        (date(2030, 10, 5), False),  # Saturday
        (date(2030, 10, 6), False),  # Sunday
        (date(2003, 10, 1), True),  # a Wednesday before the data starts
    ],
)
def test_uncovered_years_fall_back_to_monday_to_friday(day: date, working: bool) -> None:
    assert ChinaWorkdays()(day) is working


def test_deadlines_in_uncovered_years_skip_weekends_only() -> None:
    # Friday 2030-10-04 16:00: 1.5 h on Friday, the weekend off, 2.5 h on Monday 10-07.
    assert office_hours_calendar().add(sh(2030, 10, 4, 16), 4 * H, Clock.WORKING) == sh(2030, 10, 7, 11)


def test_an_extra_holiday_turns_a_working_day_off() -> None:
    workdays = ChinaWorkdays(extra_holidays=[date(2025, 9, 22), date(2025, 9, 28)])

    assert not workdays(date(2025, 9, 22))  # an ordinary Monday
    assert not workdays(date(2025, 9, 28))  # even an official make-up day
    assert workdays(date(2025, 9, 23))


def test_an_extra_workday_turns_a_day_off_into_a_working_day() -> None:
    workdays = ChinaWorkdays(extra_workdays=[date(2025, 9, 20), date(2025, 10, 1)])

    assert workdays(date(2025, 9, 20))  # an ordinary Saturday
    assert workdays(date(2025, 10, 1))  # even National Day
    assert not workdays(date(2025, 9, 21))


def test_overrides_load_the_schedule_of_an_uncovered_year() -> None:
    workdays = ChinaWorkdays(extra_holidays=[date(2030, 10, 1)], extra_workdays=[date(2030, 9, 29)])

    assert not workdays(date(2030, 10, 1))
    assert workdays(date(2030, 9, 29))  # a Sunday


def test_overrides_move_deadlines() -> None:
    calendar = office_hours_calendar(ChinaWorkdays(extra_holidays=[date(2025, 9, 23)]))

    # Monday 16:00 + 4 h: 1.5 h on Monday, Tuesday is now off, 2.5 h on Wednesday.
    assert calendar.add(sh(2025, 9, 22, 16), 4 * H, Clock.WORKING) == sh(2025, 9, 24, 11)


def test_a_day_cannot_be_both_an_extra_holiday_and_an_extra_workday() -> None:
    with pytest.raises(SlaError, match="both holiday and workday: 2025-09-20, 2025-10-01"):
        ChinaWorkdays(
            extra_holidays=[date(2025, 10, 1), date(2025, 9, 20), date(2025, 9, 22)],
            extra_workdays=[date(2025, 10, 1), date(2025, 9, 20)],
        )


# --- calendar shape ----------------------------------------------------------------------------------


def test_the_default_working_day_is_nine_hours(calendar: SlaCalendar) -> None:
    assert calendar.working_day == 9 * H


def test_adjacent_working_periods_are_allowed() -> None:
    calendar = SlaCalendar(SHANGHAI, [(time(8, 30), time(12)), (time(12), time(17, 30))], ChinaWorkdays())

    assert calendar.working_day == 9 * H
    assert calendar.add(sh(2025, 9, 22, 11), 2 * H, Clock.WORKING) == sh(2025, 9, 22, 13)


def test_a_calendar_needs_a_working_period() -> None:
    with pytest.raises(SlaError, match="at least one working period"):
        SlaCalendar(SHANGHAI, [], ChinaWorkdays())


@pytest.mark.parametrize("period", [(time(17, 30), time(8, 30)), (time(9), time(9))])
def test_a_working_period_must_end_after_it_starts(period: tuple[time, time]) -> None:
    with pytest.raises(SlaError, match="must end after it starts"):
        SlaCalendar(SHANGHAI, [period], ChinaWorkdays())


@pytest.mark.parametrize(
    "periods",
    [
        [(time(8, 30), time(12)), (time(11), time(17, 30))],  # overlapping
        [(time(13, 30), time(17, 30)), (time(8, 30), time(12))],  # out of order
    ],
)
def test_working_periods_must_be_in_order_without_overlap(periods: list[tuple[time, time]]) -> None:
    with pytest.raises(SlaError, match="overlaps or precedes"):
        SlaCalendar(SHANGHAI, periods, ChinaWorkdays())


# --- SLA terms ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h natural", SlaTerm(2 * H, Clock.NATURAL)),
        ("30min natural", SlaTerm(timedelta(minutes=30), Clock.NATURAL)),
        ("4h working", SlaTerm(4 * H, Clock.WORKING)),
        ("1.5h working", SlaTerm(timedelta(minutes=90), Clock.WORKING)),
        ("1d working", SlaTerm(9 * H, Clock.WORKING)),  # a working day is 9 working hours
        ("2d working", SlaTerm(18 * H, Clock.WORKING)),
        ("0.5d working", SlaTerm(4.5 * H, Clock.WORKING)),
        ("2d natural", SlaTerm(48 * H, Clock.NATURAL)),  # a natural day is 24 hours
        ("  4h   working ", SlaTerm(4 * H, Clock.WORKING)),
        ("4 h working", SlaTerm(4 * H, Clock.WORKING)),
    ],
)
def test_parse_term_reads_amount_unit_and_clock(text: str, expected: SlaTerm) -> None:
    assert parse_term(text) == expected


def test_a_working_day_term_follows_the_given_working_day_length() -> None:
    assert parse_term("1d working", working_day=7.5 * H) == SlaTerm(7.5 * H, Clock.WORKING)
    assert parse_term("1d natural", working_day=7.5 * H) == SlaTerm(24 * H, Clock.NATURAL)


@pytest.mark.parametrize(
    "text",
    ["", "4h", "4 hours working", "working 4h", "-1h working", "4h Working", "4h working overtime", "1w working",
     "h working", "4hworking", ".5h working"],
)
def test_parse_term_rejects_malformed_text(text: str) -> None:
    with pytest.raises(SlaError, match="must look like"):
        parse_term(text)


@pytest.mark.parametrize("text", ["0h working", "0min natural", "0.0d working"])
def test_parse_term_rejects_a_zero_term(text: str) -> None:
    with pytest.raises(SlaError, match="must be positive"):
        parse_term(text)


@pytest.mark.parametrize(
    ("term", "text"),
    [
        (SlaTerm(2 * H, Clock.NATURAL), "2h natural"),
        (SlaTerm(timedelta(minutes=30), Clock.NATURAL), "30min natural"),
        (SlaTerm(timedelta(minutes=90), Clock.WORKING), "90min working"),
    ],
)
def test_a_term_prints_in_hours_when_it_can_and_minutes_otherwise(term: SlaTerm, text: str) -> None:
    assert str(term) == text


@FAST
@given(st.integers(1, 100_000), st.sampled_from(list(Clock)))
def test_a_whole_minute_term_round_trips_through_str_and_parse(minutes: int, clock: Clock) -> None:
    term = SlaTerm(timedelta(minutes=minutes), clock)

    assert parse_term(str(term)) == term


# --- properties ----------------------------------------------------------------------------------------

# Covered years (real 调休 data) plus an uncovered one (Monday–Friday fallback); a few time zones.
moments = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2031, 12, 31),
    timezones=st.sampled_from([SHANGHAI, UTC, timezone(timedelta(hours=-5))]),
)
allowances = st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=3))


def in_working_hours(calendar: SlaCalendar, moment: datetime) -> bool:
    """True when `moment` is in (period start, period end] of a working day: where a working deadline may land."""
    local = moment.astimezone(calendar.tz)
    return calendar.is_workday(local.date()) and any(
        start < local.time() <= end for start, end in calendar.working_periods
    )


@FAST
@given(moments, allowances)
def test_the_working_time_between_a_start_and_its_deadline_is_the_allowance(
    calendar: SlaCalendar, start: datetime, allowance: timedelta
) -> None:
    # This holds from any start, not only from one inside working hours: a start outside them simply
    # begins at the next working moment, and between() does not count the gap either.
    assert calendar.between(start, calendar.add(start, allowance, Clock.WORKING), Clock.WORKING) == allowance


@FAST
@given(moments, allowances)
def test_a_working_deadline_always_lands_inside_working_hours(
    calendar: SlaCalendar, start: datetime, allowance: timedelta
) -> None:
    deadline = calendar.add(start, allowance, Clock.WORKING)

    assert deadline > start
    assert in_working_hours(calendar, deadline)


@FAST
@given(moments, allowances, allowances)
def test_a_longer_allowance_never_gives_an_earlier_deadline(
    calendar: SlaCalendar, start: datetime, first: timedelta, second: timedelta
) -> None:
    shorter, longer = sorted([first, second])

    assert calendar.add(start, shorter, Clock.WORKING) <= calendar.add(start, longer, Clock.WORKING)


@FAST
@given(moments, allowances, allowances)
def test_adding_in_two_steps_equals_adding_at_once(
    calendar: SlaCalendar, start: datetime, first: timedelta, second: timedelta
) -> None:
    in_steps = calendar.add(calendar.add(start, first, Clock.WORKING), second, Clock.WORKING)

    assert in_steps == calendar.add(start, first + second, Clock.WORKING)


spans = st.timedeltas(min_value=timedelta(days=-20), max_value=timedelta(days=20))


@FAST
@given(moments, spans)
def test_adding_the_measured_time_reaches_the_last_working_moment_before_the_end(
    calendar: SlaCalendar, moment: datetime, span: timedelta
) -> None:
    start, end = sorted([moment, moment + span])

    reached = calendar.add(start, calendar.between(start, end, Clock.WORKING), Clock.WORKING)

    # Equal to `end` when `end` is inside working hours; otherwise the end of the last working period
    # before it (or `start` itself when there is no working time in between): no working time is left over.
    assert reached <= end
    assert calendar.between(reached, end, Clock.WORKING) == timedelta(0)
    if in_working_hours(calendar, end):
        assert reached == end


@FAST
@given(moments, spans, spans)
def test_working_time_spans_add_up_and_change_sign_when_reversed(
    calendar: SlaCalendar, a: datetime, to_b: timedelta, to_c: timedelta
) -> None:
    b, c = a + to_b, a + to_c

    assert calendar.between(a, c, Clock.WORKING) == (
        calendar.between(a, b, Clock.WORKING) + calendar.between(b, c, Clock.WORKING)
    )
    assert calendar.between(b, a, Clock.WORKING) == -calendar.between(a, b, Clock.WORKING)


@FAST
@given(moments, allowances)
def test_natural_time_is_plain_arithmetic(calendar: SlaCalendar, start: datetime, allowance: timedelta) -> None:
    deadline = calendar.add(start, allowance, Clock.NATURAL)

    assert deadline - start == allowance
    assert calendar.between(start, deadline, Clock.NATURAL) == allowance


def test_a_negative_working_duration_is_refused() -> None:
    start = datetime(2025, 9, 22, 10, tzinfo=ZoneInfo("Asia/Shanghai"))
    with pytest.raises(SlaError, match="negative working duration"):
        office_hours_calendar().add(start, timedelta(hours=-1), Clock.WORKING)
