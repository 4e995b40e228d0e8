"""Retrying through an outage: the backoff schedule, the outage and the recovery each logged once, stop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from core.retry import Retry, doubling, wait_or_stop

log = logging.getLogger("gridhub.test-retry")


def test_the_delays_follow_the_schedule_and_the_last_one_repeats() -> None:
    retry = Retry((0.5, 1.0, 2.0))

    assert [retry.failed() for _ in range(5)] == [0.5, 1.0, 2.0, 2.0, 2.0]


def test_a_recovery_starts_the_schedule_again() -> None:
    retry = Retry((0.5, 1.0, 2.0))
    retry.failed()
    retry.failed()

    assert retry.recovered() == 2
    assert retry.failed() == 0.5


def test_an_outage_is_logged_once_however_long_it_lasts(caplog: pytest.LogCaptureFixture) -> None:
    retry = Retry((0.5, 1.0), log)
    with caplog.at_level(logging.INFO, log.name):
        for _ in range(4):
            retry.failed("Kafka at %s is not reachable (%s)", "127.0.0.1:9092", "refused")

    assert caplog.messages == ["Kafka at 127.0.0.1:9092 is not reachable (refused)"]
    assert caplog.records[0].levelno == logging.WARNING


def test_an_outage_whose_reason_changes_is_logged_again(caplog: pytest.LogCaptureFixture) -> None:
    retry = Retry((0.5,), log)
    with caplog.at_level(logging.INFO, log.name):
        for reason in ("refused", "refused", "timed out", "timed out"):
            retry.failed("camera cam-1: %s", reason)

    assert caplog.messages == ["camera cam-1: refused", "camera cam-1: timed out"]


def test_the_recovery_is_logged_once_and_only_after_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    retry = Retry((0.5,), log)
    with caplog.at_level(logging.INFO, log.name):
        retry.recovered("back after %d retries", retry.failures)
        retry.failed("down")
        retry.failed("down")
        retry.recovered("back after %d retries", retry.failures)
        retry.recovered("back after %d retries", retry.failures)

    assert caplog.messages == ["down", "back after 2 retries"]
    assert caplog.records[1].levelno == logging.INFO


def test_the_next_outage_is_logged_even_with_the_same_message(caplog: pytest.LogCaptureFixture) -> None:
    retry = Retry((0.5,), log)
    with caplog.at_level(logging.INFO, log.name):
        retry.failed("down")
        retry.recovered()
        retry.failed("down")

    assert caplog.messages == ["down", "down"]


def test_a_schedule_needs_a_delay() -> None:
    with pytest.raises(ValueError, match="at least one delay"):
        Retry(())


def test_a_doubling_schedule_doubles_up_to_its_cap() -> None:
    assert doubling(0.2, 5.0) == pytest.approx((0.2, 0.4, 0.8, 1.6, 3.2, 5.0))
    assert doubling(1.0, 1.0) == (1.0,)


def test_a_wait_ends_when_stop_is_set() -> None:
    async def scenario() -> bool:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_soon(stop.set)
        return await asyncio.wait_for(wait_or_stop(3600, stop), 10)

    assert asyncio.run(scenario()) is True


def test_a_wait_that_runs_out_says_stop_is_not_set() -> None:
    assert asyncio.run(wait_or_stop(0, asyncio.Event())) is False
