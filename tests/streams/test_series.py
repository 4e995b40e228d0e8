"""A device's samples keyed by measurement time: duplicates, late inserts, corrections, window totals, pruning."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.rules.series import Series


def test_a_duplicate_sample_returns_false_and_changes_nothing() -> None:
    series = Series([(1000, 2.0), (2000, 3.0), (3000, 4.0)])
    for ts, value in [(3000, 4.0), (1000, 2.0)]:  # the newest one and an older one
        assert series.add(ts, value) is False
    assert series.samples() == [(1000, 2.0), (2000, 3.0), (3000, 4.0)]
    assert series.total(0, 3000) == 9.0


def test_a_new_sample_returns_true() -> None:
    series = Series()
    assert series.add(1000, 2.0) is True
    assert series.add(2000, 0.0) is True
    assert len(series) == 2


def test_an_out_of_order_sample_is_inserted_in_time_order_and_totals_stay_right() -> None:
    series = Series()
    for ts, value in [(1000, 1.0), (3000, 4.0), (2000, 2.0), (500, 8.0)]:
        assert series.add(ts, value)
    assert series.samples() == [(500, 8.0), (1000, 1.0), (2000, 2.0), (3000, 4.0)]
    assert series.total(0, 3000) == 15.0
    assert series.total(500, 2000) == 3.0
    assert series.total(1000, 3000) == 6.0


def test_total_excludes_the_window_start_and_includes_its_end() -> None:
    series = Series([(1000, 1.0), (2000, 2.0), (3000, 4.0)])
    assert series.total(1000, 3000) == 6.0  # the sample at `after` is out, the one at `until` in
    assert series.total(999, 2999) == 3.0
    assert series.total(1000, 1000) == 0.0


def test_total_of_a_window_without_samples_is_zero() -> None:
    series = Series([(1000, 1.0), (5000, 2.0)])
    assert series.total(1000, 4999) == 0.0
    assert series.total(6000, 9000) == 0.0
    assert series.total(3000, 2000) == 0.0
    assert Series().total(0, 10_000) == 0.0


def test_any_within_has_the_same_window_edges_as_total() -> None:
    series = Series([(1000, 0.0)])
    assert series.any_within(999, 1000)
    assert not series.any_within(1000, 2000)
    assert not series.any_within(0, 999)


def test_a_corrected_value_at_the_same_time_replaces_the_old_one() -> None:
    series = Series([(1000, 1.0), (2000, 2.0), (3000, 4.0)])
    assert series.add(2000, 5.0) is True
    assert series.samples() == [(1000, 1.0), (2000, 5.0), (3000, 4.0)]
    assert series.total(0, 3000) == 10.0
    assert series.total(2000, 3000) == 4.0


def test_prune_forgets_samples_before_the_cut_and_keeps_totals_of_the_rest() -> None:
    series = Series([(1000, 1.0), (2000, 2.0), (3000, 4.0), (4000, 8.0)])
    series.prune(3000)
    assert series.samples() == [(3000, 4.0), (4000, 8.0)]
    assert series.total(0, 4000) == 12.0
    assert series.total(3000, 4000) == 8.0
    assert series.add(5000, 16.0)
    assert series.total(3000, 5000) == 24.0


def test_prune_of_every_sample_leaves_an_empty_series_that_takes_new_ones() -> None:
    series = Series([(1000, 1.0), (2000, 2.0)])
    series.prune(10_000)
    assert len(series) == 0
    assert series.add(500, 3.0)  # even one older than the pruned ones
    assert series.total(0, 10_000) == 3.0


def test_a_window_total_does_not_depend_on_the_samples_before_the_window() -> None:
    tips = [(t * 1000, 0.1) for t in range(1, 801)]  # 0.1 mm tips of a tipping-bucket gauge
    with_history = Series(tips)
    window_only = Series(tips[600:])
    assert with_history.total(600_000, 800_000) == window_only.total(600_000, 800_000)


@settings(max_examples=200, deadline=None)
@given(
    samples=st.lists(st.tuples(st.integers(0, 100), st.integers(0, 50).map(float)), max_size=40),
    after=st.integers(-1, 101),
    until=st.integers(-1, 101),
    cut=st.integers(0, 101),
)
def test_totals_are_the_sums_of_the_latest_value_per_time_whatever_the_insertion_order(
    samples: list[tuple[int, float]], after: int, until: int, cut: int,
) -> None:
    series = Series()
    latest: dict[int, float] = {}
    for ts, value in samples:
        series.add(ts, value)
        latest[ts] = value
    assert series.samples() == sorted(latest.items())
    assert series.total(after, until) == sum(v for t, v in latest.items() if after < t <= until)
    series.prune(cut)
    assert series.total(after, until) == sum(v for t, v in latest.items() if t >= cut and after < t <= until)
