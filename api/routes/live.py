"""Live case events and camera detections as server-sent events, filtered like the case list, in the caller's scope."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import CategoryFilter, CityDep, GridFilter, Reader
from api.live import FeedStatus, LiveEvent, LiveFeed
from domain.cases import CaseState

router = APIRouter(prefix="/api/v1", tags=["live"])

PING_S = 15  # a comment this often keeps proxies from closing an idle stream


@dataclass(frozen=True, slots=True)
class _Filter:
    grid_prefix: str | None  # None: the asked prefix is outside the caller's scope, so nothing matches
    category: str | None
    state: CaseState | None

    def matches(self, event: LiveEvent) -> bool:
        return (self.grid_prefix is not None and event.grid_code.startswith(self.grid_prefix)
                and (self.category is None or event.category == self.category)
                and (self.state is None or event.state == self.state))


@router.get("/events", response_class=EventSourceResponse, responses={
    200: {"description": "`text/event-stream`: `status`, `case`, `detection` and `reset` events"},
    503: {"description": "this API runs without Kafka, so it has no live events"},
})
async def events(
    request: Request, city: CityDep, caller: Reader,
    grid: GridFilter, category: CategoryFilter,
    state: Annotated[CaseState | None, Query(alias="status", description="the case's state after the event")] = None,
    last_event_id: Annotated[str | None, Query(
        description="resume after this event id (for clients that cannot send the Last-Event-ID header)")] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Case events (`case`) and camera detections and their review (`detection`) as they happen, in scope.

    The first event is `status` (is the feed reading Kafka); another follows when that changes. Reconnect with
    `Last-Event-ID` to get exactly the events missed; `reset` means they are no longer kept: reload the lists.
    """
    feed: LiveFeed | None = getattr(request.app.state, "live_feed", None)
    if feed is None:  # checked after the parameters: a client's mistake is a 422 whatever runs behind
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "live events unavailable: this API runs without Kafka (kafka.bootstrap is not set)")
    # A prefix outside the caller's scope matches nothing: the stream stays open and quiet, as a list is empty.
    wanted = _Filter(caller.narrow(grid), category, state)
    resume_from = last_event_id_header or last_event_id
    return EventSourceResponse(_stream(feed, wanted, resume_from), ping=PING_S)


async def _stream(feed: LiveFeed, wanted: _Filter, resume_from: str | None) -> AsyncIterator[ServerSentEvent]:
    cursor, why_reset = feed.resume_point(resume_from) if resume_from else (feed.last, None)
    said = feed.status
    yield _status(feed, cursor)
    if why_reset:
        yield _reset(feed, cursor, why_reset)
    while True:
        changed = feed.changed()
        batch = feed.after(cursor)
        if batch is None:  # this client fell further behind than the buffer reaches
            cursor = feed.last
            yield _reset(feed, cursor, f"this stream fell more than the {feed.capacity} kept events behind")
            continue
        for event in batch:
            cursor = event.seq
            if wanted.matches(event):
                yield ServerSentEvent(event.data, event=event.kind.value, id=feed.event_id(event.seq))
        if feed.status is not said:
            said = feed.status
            yield _status(feed, cursor)
        if not batch:
            await changed.wait()


def _status(feed: LiveFeed, cursor: int) -> ServerSentEvent:
    detail = ("reading case events as they happen" if feed.status is FeedStatus.LIVE else
              "waiting for Kafka; events are read on from where the feed stopped, none is lost")
    return ServerSentEvent(json.dumps({"status": feed.status.value, "detail": detail}), event="status",
                           id=feed.event_id(cursor))


def _reset(feed: LiveFeed, cursor: int, why: str) -> ServerSentEvent:
    return ServerSentEvent(json.dumps({"reason": why, "action": "reload the lists, then keep reading this stream"}),
                           event="reset", id=feed.event_id(cursor))
