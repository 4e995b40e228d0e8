"""Live case events over server-sent events: real Kafka (Tansu), real HTTP through uvicorn, bounded by events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from core.kafka import CASE_EVENTS, ensure_topics
from core.settings import load_settings
from domain.case_records import encode_case_event
from domain.cases import Case, Severity, Source, report
from tests import brokers
from tests.tokens import bearer, mint

T0 = datetime(2024, 6, 3, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
READ_TIMEOUT_S = 10.0  # the longest a test waits for an event it expects


@dataclass(frozen=True, slots=True)
class Sse:
    """One server-sent event as a client sees it."""

    event: str
    id: str
    data: dict[str, Any]


class Events:
    """The events of an open stream, read one at a time (comments, i.e. pings, are skipped)."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.iter_lines()

    def next(self) -> Sse:
        """The next event; httpx's read timeout fails the test if none comes."""
        fields: dict[str, str] = {}
        for line in self._lines:
            if not line:
                if fields:
                    return Sse(fields.get("event", "message"), fields.get("id", ""), json.loads(fields["data"]))
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        raise AssertionError("the stream ended")

    def until_live(self) -> Sse:
        """Read `status` events until the feed reads Kafka; return the last one."""
        while (event := self.next()).event != "status" or event.data["status"] != "live":
            assert event.event == "status", event
        return event

    def cases_until(self, case_id: str, version: int) -> list[tuple[str, str, int]]:
        """(event type, case id, version) of each event up to and including that case's version."""
        seen: list[tuple[str, str, int]] = []
        while not seen or seen[-1][1:] != (case_id, version):
            event = self.next()
            seen.append((event.event, event.data["case"]["id"], event.data["event"]["version"]))
        return seen


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """The app under uvicorn on its own thread; the socket listens before the thread starts, so no wait is needed."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@contextlib.contextmanager
def stream(base: str, headers: dict[str, str], params: dict[str, str] | None = None, *,
           read_timeout_s: float = READ_TIMEOUT_S) -> Iterator[Events]:
    """An open event stream whose feed is reading Kafka."""
    with httpx.stream("GET", f"{base}/api/v1/events", headers=headers, params=params,
                      timeout=httpx.Timeout(5.0, read=read_timeout_s)) as response:
        assert response.status_code == 200, response.read()
        events = Events(response)
        events.until_live()
        yield events


def produce(bootstrap: str, *cases: Case) -> None:
    """Each case's latest event as a case-event record, in order on one partition (so they arrive in order)."""
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for case in cases:
                await producer.send_and_wait(CASE_EVENTS, encode_case_event(case, case.history[-1]),
                                             key=case.grid_code.encode(), partition=0)
        finally:
            await producer.stop()

    asyncio.run(send())


def reported(case_id: str, grid_code: str, category: str = "0406", source: Source = Source.SENSOR) -> Case:
    """A case just reported."""
    return report(case_id, grid_code=grid_code, category=category, source=source, at=T0, actor="rules",
                  title=f"{category} at {grid_code}")


def filed(case: Case) -> Case:
    """The case after it is filed (立案)."""
    return case.file(T0 + timedelta(minutes=1), "operator-7")


@dataclass(frozen=True, slots=True)
class Api:
    """The API with Kafka, served over HTTP, and tokens for it."""

    base: str
    bootstrap: str
    district: dict[str, str]
    community: dict[str, str]  # 310104003001


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One API process with its live feed for the module; tests tell their events apart by case id."""
    state_dir = tmp_path_factory.mktemp("live")
    asyncio.run(ensure_topics(kafka_bootstrap, 3))
    tokens = bearer(mint(state_dir, "viewer")), bearer(mint(state_dir, "viewer", "310104003001"))
    settings = load_settings(overrides={"state_dir": state_dir, "kafka": {"bootstrap": kafka_bootstrap}}, environ={})
    with serving(create_app(settings)) as base:
        yield Api(base, kafka_bootstrap, *tokens)


def test_a_case_event_arrives_with_the_event_and_the_case_summary(api: Api) -> None:
    with stream(api.base, api.district) as events:
        produce(api.bootstrap, reported("live-1", "310104003001001"))
        event = events.next()

    assert event.event == "case"
    assert event.data["event"] == {"version": 1, "action": "report", "from_state": None, "to_state": "reported",
                                   "at": "2024-06-03T01:00:00Z", "actor": "rules", "note": "0406 at 310104003001001",
                                   "data": {"grid_code": "310104003001001", "category": "0406", "source": "sensor"}}
    assert event.data["case"]["id"] == "live-1"
    assert event.data["case"]["state"] == "reported"
    assert event.data["case"]["reported_at"] == "2024-06-03T01:00:00Z"


def test_camera_reports_and_their_review_are_detection_events_and_later_steps_case_events(api: Api) -> None:
    detection = reported("live-cam", "310104003001003", "0501", Source.CAMERA)
    confirmed = filed(detection)
    upgraded = confirmed.upgrade(T0 + timedelta(minutes=2), "rules", severity=Severity.RED)
    with stream(api.base, api.district) as events:
        produce(api.bootstrap, detection, confirmed, upgraded)
        seen = events.cases_until("live-cam", 3)

    assert seen == [("detection", "live-cam", 1), ("detection", "live-cam", 2), ("case", "live-cam", 3)]


@pytest.mark.parametrize(("params", "expected"), [
    ({"grid": "310104003001"}, [("f-2", 1), ("f-3", 1), ("f-3", 2)]),
    ({"category": "0406"}, [("f-1", 1), ("f-3", 1), ("f-3", 2)]),
    ({"status": "filed"}, [("f-3", 2)]),
    ({"grid": "310104003001002", "category": "0406", "status": "filed"}, [("f-3", 2)]),
])
def test_streams_filter_by_grid_prefix_category_and_state(
    api: Api, params: dict[str, str], expected: list[tuple[str, int]]
) -> None:
    last = reported("f-3", "310104003001002")
    with stream(api.base, api.district, params) as events:
        produce(api.bootstrap, reported("f-1", "310104003002001"), reported("f-2", "310104003001001", "0501"),
                last, filed(last))  # the last matches every filter: once it arrives, the others have been read
        seen = events.cases_until("f-3", 2)

    assert [(case_id, version) for _, case_id, version in seen] == expected


def test_a_community_token_gets_only_its_own_communitys_events(api: Api) -> None:
    with stream(api.base, api.community) as events:
        produce(api.bootstrap, reported("other-community", "310104003002001"), reported("own", "310104003001001"))
        seen = events.cases_until("own", 1)

    assert seen == [("case", "own", 1)]


def test_a_grid_prefix_outside_the_callers_scope_gets_no_events(api: Api) -> None:
    with stream(api.base, api.community, {"grid": "310104003002"}, read_timeout_s=1.0) as outside, \
            stream(api.base, api.community) as own:
        produce(api.bootstrap, reported("outside", "310104003002001"), reported("inside", "310104003001001"))
        own.cases_until("inside", 1)
        # The feed wakes every stream at once, so by now the quiet one has long looked at both events.
        with pytest.raises(httpx.ReadTimeout):
            outside.next()


@pytest.mark.parametrize("how", ["header", "query"])
def test_resuming_with_the_last_event_id_replays_exactly_the_missed_events(api: Api, how: str) -> None:
    with stream(api.base, api.district, {"grid": "310104003001"}) as watcher:
        with stream(api.base, api.district, {"grid": "310104003001"}) as first:
            produce(api.bootstrap, reported(f"r-{how}-1", "310104003001001"))
            last_id = first.next().id
        produce(api.bootstrap, reported(f"r-{how}-2", "310104003001001"), reported(f"r-{how}-x", "310104003002001"),
                reported(f"r-{how}-3", "310104003001002"))
        watcher.cases_until(f"r-{how}-3", 1)  # all three are in the buffer now
        headers = {**api.district, "Last-Event-ID": last_id} if how == "header" else api.district
        params = {"grid": "310104003001"} | ({"last_event_id": last_id} if how == "query" else {})

        with httpx.stream("GET", f"{api.base}/api/v1/events", headers=headers, params=params,
                          timeout=READ_TIMEOUT_S) as response:
            events = Events(response)
            status = events.next()
            replayed = events.cases_until(f"r-{how}-3", 1)

    assert (status.event, status.id) == ("status", last_id)
    assert replayed == [("case", f"r-{how}-2", 1), ("case", f"r-{how}-3", 1)]


def test_an_event_id_from_another_run_gets_a_reset_and_then_live_events(api: Api) -> None:
    with httpx.stream("GET", f"{api.base}/api/v1/events", timeout=READ_TIMEOUT_S,
                      headers={**api.district, "Last-Event-ID": "0badb00d-17"}) as response:
        events = Events(response)
        events.until_live()
        reset = events.next()
        produce(api.bootstrap, reported("after-reset", "310104003001001"))
        after = events.cases_until("after-reset", 1)

    assert reset.event == "reset"
    assert "not from this server's run" in reset.data["reason"]
    assert after == [("case", "after-reset", 1)]


def test_an_unknown_category_is_refused_with_the_known_ones(api: Api) -> None:
    response = httpx.get(f"{api.base}/api/v1/events", params={"category": "9999"}, headers=api.district)

    assert response.status_code == 422
    assert "'9999' is not a taxonomy code; known: " in response.json()["detail"]


def test_without_kafka_the_stream_answers_503_naming_why(client: TestClient, viewer: dict[str, str]) -> None:
    response = client.get("/api/v1/events", headers=viewer)

    assert response.status_code == 503
    assert response.json() == {
        "detail": "live events unavailable: this API runs without Kafka (kafka.bootstrap is not set)"}


def test_the_api_starts_while_kafka_is_unreachable_and_goes_live_when_it_answers(tmp_path: Path) -> None:
    with brokers.tansu_behind_proxy() as (bootstrap, proxy):
        asyncio.run(ensure_topics(bootstrap, 1))
        proxy.cut()
        token = bearer(mint(tmp_path, "viewer"))
        settings = load_settings(overrides={"state_dir": tmp_path, "kafka": {"bootstrap": bootstrap}}, environ={})
        with serving(create_app(settings)) as base, httpx.stream(
                "GET", f"{base}/api/v1/events", headers=token, timeout=READ_TIMEOUT_S) as response:
            events = Events(response)
            first = events.next()
            proxy.restore()
            live = events.until_live()
            produce(bootstrap, reported("after-outage", "310104003001001"))
            seen = events.cases_until("after-outage", 1)

    assert (first.event, first.data["status"]) == ("status", "connecting")
    assert live.data["status"] == "live"
    assert seen == [("case", "after-outage", 1)]


def test_losing_kafka_while_live_is_told_to_the_stream_and_the_feed_reads_on_when_it_is_back(tmp_path: Path) -> None:
    with brokers.tansu_behind_proxy() as (bootstrap, proxy):
        asyncio.run(ensure_topics(bootstrap, 1))
        token = bearer(mint(tmp_path, "viewer"))
        settings = load_settings(overrides={"state_dir": tmp_path, "kafka": {"bootstrap": bootstrap}}, environ={})
        with serving(create_app(settings)) as base, stream(base, token) as events:
            proxy.cut()
            lost = events.next()  # the feed notices within PROBE_AFTER_S of silence
            proxy.restore()
            back = events.next()
            produce(bootstrap, reported("after-reconnect", "310104003001001"))
            seen = events.cases_until("after-reconnect", 1)

    assert (lost.event, lost.data["status"]) == ("status", "connecting")
    assert (back.event, back.data["status"]) == ("status", "live")
    assert seen == [("case", "after-reconnect", 1)]
