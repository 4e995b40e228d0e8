"""A test double of the API's command bus, answered in process by the real case engine.

The engine decides exactly as the stream worker would; its changes are written by the real case sink to the
API's database, and finished cases are read back from it as the worker does. Only Kafka is left out: the
end-to-end tests over Kafka are tests/integration/test_api_closed_loop.py.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from domain.case_records import CaseCommand, CommandReply, encode_case_event
from storage.cases import CaseSink, load_case
from streams.engine import CaseEngine, Change
from tests.streams import new_engine


class EngineBus:
    """The command bus as the API sees it, answered by the real case engine; its changes go to the database."""

    def __init__(self, engine: CaseEngine, sink: CaseSink) -> None:
        self.engine = engine
        self.sink = sink
        self.ready = asyncio.Event()  # what /healthz reads of a bus: this one is always connected
        self.ready.set()
        self.published: list[tuple[str, bytes, bytes]] = []  # (topic, key, value) of records sent without a reply

    async def send(self, command: CaseCommand) -> CommandReply:
        """Apply the command as the stream worker would."""
        return self.apply(command)

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        """Keep the record, as Kafka would (a bus that is not connected raises ConnectionError instead)."""
        if not self.ready.is_set():
            raise ConnectionError("Kafka is not connected")
        self.published.append((topic, key, value))

    def apply(self, command: CaseCommand) -> CommandReply:
        """Apply the command and write what changed."""
        changes, reply = self.engine.apply_command(command)
        self.write(changes)
        return reply

    def write(self, changes: list[Change]) -> None:
        """Write engine changes as the case sink does."""
        self.sink.write([encode_case_event(change.case, change.event) for change in changes])


def install(app: FastAPI) -> EngineBus:
    """Put an engine-backed bus behind a running app (its lifespan has started)."""
    db = app.state.engine
    bus = EngineBus(new_engine(load_case=lambda case_id: load_case(db, case_id)), CaseSink(db))
    app.state.bus = bus
    return bus
