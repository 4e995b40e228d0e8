"""Crowd gathering: a counter's density over a threshold, sustained without gaps, decides when a run triggers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.rules.crowd import density, sustained_from
from streams.rules.series import Series

S = 1000
SUSTAIN = 120 * S
MAX_GAP = 90 * S  # 3 × a 30 s report interval
OVER, UNDER = 2.5, 1.5  # persons/m² against a threshold of 2


def run(*samples: tuple[int, float]) -> Series:
    """A counter's densities at the given seconds."""
    return Series([(seconds * S, value) for seconds, value in samples])


def every_30_s(seconds: int, value: float = OVER, start: int = 0) -> list[tuple[int, float]]:
    return [(t, value) for t in range(start, start + seconds + 1, 30)]


def trigger(series: Series, at_s: int, threshold: float = 2.0) -> int | None:
    since = sustained_from(series, at_s * S, threshold, MAX_GAP, SUSTAIN)
    return None if since is None else since // S


def test_density_is_persons_per_square_metre() -> None:
    assert density(300, 150.0) == 2.0


def test_a_run_shorter_than_sustain_triggers_nothing() -> None:
    assert trigger(run(*every_30_s(90)), 90) is None


def test_a_run_of_exactly_sustain_triggers_at_its_last_sample() -> None:
    assert trigger(run(*every_30_s(120)), 120) == 120


def test_a_longer_run_triggers_at_the_first_sample_past_sustain() -> None:
    series = run((0, OVER), (50, OVER), (100, OVER), (150, OVER), (200, OVER))
    assert trigger(series, 200) == 150


def test_any_sample_of_the_run_finds_the_same_trigger() -> None:
    series = run(*every_30_s(300))
    assert {trigger(series, t) for t in range(0, 301, 30)} == {120}


def test_a_sample_at_the_threshold_counts_as_over_it() -> None:
    assert trigger(run(*every_30_s(150, value=2.0)), 150) == 120


def test_a_gap_longer_than_max_gap_breaks_the_run() -> None:
    series = run((0, OVER), (30, OVER), (60, OVER), (151, OVER), (181, OVER))  # 91 s of silence
    assert trigger(series, 181) is None
    assert trigger(series, 60) is None


def test_a_gap_of_exactly_max_gap_keeps_the_run() -> None:
    series = run((0, OVER), (30, OVER), (120, OVER))
    assert trigger(series, 120) == 120


def test_a_sample_under_the_threshold_breaks_the_run() -> None:
    series = run(*every_30_s(60), (90, UNDER), *every_30_s(90, start=120))
    assert trigger(series, 210) is None
    assert trigger(series, 60) is None


def test_a_sample_under_the_threshold_triggers_nothing_itself() -> None:
    series = run(*every_30_s(150), (180, UNDER))
    assert trigger(series, 180) is None
    assert trigger(series, 150) == 120


def test_a_time_without_a_sample_triggers_nothing() -> None:
    assert trigger(run(*every_30_s(300)), 125) is None


def test_a_late_sample_completes_a_run_around_it() -> None:
    series = run((0, OVER), (30, OVER), (60, OVER), (160, OVER), (190, OVER))  # a 100 s hole breaks the run
    assert trigger(series, 190) is None
    assert series.add(110 * S, OVER)  # the sample that was missing arrives late
    assert trigger(series, 110) == 160
    assert trigger(series, 190) == 160


# (steps of 30 s since the previous sample, density): gaps of 4 steps (120 s) break runs
densities = st.lists(st.tuples(st.sampled_from([1, 1, 2, 3, 4]), st.floats(0, 6)), min_size=6, max_size=25)


def series_of(samples: list[tuple[int, float]]) -> Series:
    series, t = Series(), 0
    for steps, value in samples:
        t += steps * 30 * S
        series.add(t, value)
    return series


@settings(max_examples=150, deadline=None)
@given(samples=densities, more=st.lists(st.floats(0, 3), min_size=25, max_size=25), threshold=st.floats(0.5, 3),
       pick=st.integers(0, 24))
def test_a_higher_density_never_turns_a_sustained_run_into_none(
    samples: list[tuple[int, float]], more: list[float], threshold: float, pick: int,
) -> None:
    base = series_of(samples)
    denser = series_of([(step, value + extra) for (step, value), extra in zip(samples, more, strict=False)])
    at_ms = base.ts[pick % len(base)]
    if sustained_from(base, at_ms, threshold, MAX_GAP, SUSTAIN) is not None:
        assert sustained_from(denser, at_ms, threshold, MAX_GAP, SUSTAIN) is not None


@settings(max_examples=150, deadline=None)
@given(samples=densities, threshold=st.floats(0.5, 3), raise_by=st.floats(0, 3), pick=st.integers(0, 24))
def test_a_higher_threshold_never_finds_a_run_the_lower_one_does_not(
    samples: list[tuple[int, float]], threshold: float, raise_by: float, pick: int,
) -> None:
    series = series_of(samples)
    at_ms = series.ts[pick % len(series)]
    if sustained_from(series, at_ms, threshold + raise_by, MAX_GAP, SUSTAIN) is not None:
        assert sustained_from(series, at_ms, threshold, MAX_GAP, SUSTAIN) is not None
