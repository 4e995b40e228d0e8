"""Device health: when a silent device counts as offline, and when a battery is low or good again."""

from __future__ import annotations

from streams.rules.health import battery_low, battery_recovered, silent_since


def test_a_device_counts_as_offline_after_its_factor_times_its_report_interval() -> None:
    assert silent_since(1_000_000, report_interval_s=120, factor=3.0) == 1_360_000
    assert silent_since(1_000_000, report_interval_s=30, factor=2.5) == 1_075_000


def test_a_battery_under_its_floor_is_low() -> None:
    assert battery_low(3.29, floor_v=3.3)


def test_a_battery_at_its_floor_is_not_low() -> None:
    assert not battery_low(3.3, floor_v=3.3)
    assert not battery_low(3.7, floor_v=3.3)


def test_a_low_battery_recovers_only_clearly_above_its_floor() -> None:
    assert not battery_recovered(3.35, floor_v=3.3)
    assert battery_recovered(3.45, floor_v=3.3)
    assert battery_recovered(3.5, floor_v=3.0)
    assert not battery_recovered(3.09, floor_v=3.0)
