"""Device health: silence (设备离线) and batteries running down (设备低电量)."""

from __future__ import annotations

BATTERY_HYSTERESIS_V = 0.1  # a battery must recover this far above its floor to count as good again


def silent_since(last_heard_ms: int, report_interval_s: float, factor: float) -> int:
    """The moment a device that was last heard at `last_heard_ms` counts as offline."""
    return last_heard_ms + int(factor * report_interval_s * 1000)


def battery_low(battery_v: float, floor_v: float) -> bool:
    """True when the battery is under the device's floor."""
    return battery_v < floor_v


def battery_recovered(battery_v: float, floor_v: float) -> bool:
    """True when a battery that was low is clearly above its floor again (replaced or recharged)."""
    return battery_v >= floor_v + BATTERY_HYSTERESIS_V
