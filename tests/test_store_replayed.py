"""Statuses the broker replays (retained, resent at each subscribe) are written only when they are news."""

from __future__ import annotations

from domain.registry import DeviceKind
from ingest.store_writer import news
from storage.telemetry.base import StatusRow

GRID = "310104003001001"
T0 = 1_717_200_000_000


def status(device: str, ts_ms: int, online: bool) -> StatusRow:
    return StatusRow(device, ts_ms, online, GRID, DeviceKind.RAIN)


def test_a_replay_of_the_latest_stored_status_is_not_written() -> None:
    assert news({"rain-0001": True}, [], [status("rain-0001", T0, True)]) == []


def test_a_replay_that_differs_from_the_latest_stored_status_is_written() -> None:
    replay = status("rain-0001", T0, False)
    assert news({"rain-0001": True}, [], [replay]) == [replay]


def test_a_replay_for_a_device_with_no_stored_status_is_written() -> None:
    replay = status("rain-0001", T0, True)
    assert news({}, [], [replay]) == [replay]


def test_live_statuses_are_always_written() -> None:
    live = [status("rain-0001", T0, True), status("rain-0001", T0 + 1, True)]
    assert news({"rain-0001": True}, live, []) == live


def test_a_replay_is_compared_with_the_live_statuses_before_it_in_the_same_batch() -> None:
    offline = status("rain-0001", T0, False)
    assert news({"rain-0001": True}, [offline], [status("rain-0001", T0 + 1, False)]) == [offline]


def test_two_gateways_replaying_the_same_status_write_it_once() -> None:
    first, second = status("rain-0001", T0, False), status("rain-0001", T0 + 3, False)
    assert news({"rain-0001": True}, [], [second, first]) == [first]
