"""The API's side of case commands: send one to the stream worker that owns the cell, and wait for its answer.

The worker's engine is the single writer of case state. An action arrives here, goes to
`gridhub.case-commands` keyed by its grid cell (so the worker holding the cell applies it, in order with the
cell's signals), and the engine's answer comes back on `gridhub.case-replies` keyed by the request id. Every API
process reads all reply partitions from the end and completes the future of its own requests.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import replace

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from fastapi import HTTPException, status

from core import kafka
from core.retry import Retry, doubling, wait_or_stop
from domain.case_records import (
    CaseCommand,
    CaseRecordFormatError,
    CommandReply,
    Outcome,
    decode_reply,
    encode_command,
)

log = logging.getLogger("gridhub.api.commands")

#: HTTP status of each outcome a command can have.
STATUS = {
    Outcome.APPLIED: status.HTTP_200_OK,
    Outcome.ILLEGAL: status.HTTP_409_CONFLICT,
    Outcome.STALE: status.HTTP_412_PRECONDITION_FAILED,
    Outcome.NOT_FOUND: status.HTTP_404_NOT_FOUND,
    Outcome.INVALID: status.HTTP_422_UNPROCESSABLE_CONTENT,
}


class CommandBus:
    """A Kafka producer of commands and a reader of replies, started in the background with the app."""

    def __init__(self, bootstrap: str, partitions: int, timeout_s: float, replication: int = 1) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.replication = replication
        self.timeout_s = timeout_s
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._waiting: dict[str, asyncio.Future[CommandReply]] = {}
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Connect in the background: the API answers reads while Kafka is still away."""
        self._task = asyncio.create_task(self._run(), name="command-bus")

    async def stop(self) -> None:
        """Stop reading replies and close the producer."""
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def send(self, command: CaseCommand) -> CommandReply:
        """Send `command` (a request id is added) and return the worker's reply; HTTP 503 or 504 if there is none."""
        if not self.ready.is_set() or self._producer is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                f"case commands unavailable: Kafka at {self.bootstrap} is not connected yet")
        command = replace(command, request_id=uuid.uuid4().hex)
        future: asyncio.Future[CommandReply] = asyncio.get_running_loop().create_future()
        self._waiting[command.request_id] = future
        try:
            await self._producer.send_and_wait(kafka.CASE_COMMANDS, encode_command(command),
                                               key=command.grid_code.encode())
            return await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError:
            raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT,
                                f"the stream worker did not answer within {self.timeout_s:g} s; the action may "
                                "still be applied: reload the case before trying again") from None
        finally:
            self._waiting.pop(command.request_id, None)

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        """Send one record that expects no answer (an operator's lesson to the detectors); raise ConnectionError
        if Kafka is not connected, or a KafkaError if it does not take the record."""
        if not self.ready.is_set() or self._producer is None:
            raise ConnectionError(f"Kafka at {self.bootstrap} is not connected")
        await self._producer.send_and_wait(topic, value, key=key)

    async def _run(self) -> None:
        retry = Retry(doubling(0.5, 10.0), log)
        while not self._stop.is_set():
            try:
                await self._serve()
                return
            except Exception as exc:  # Kafka went away or never came: keep trying, reads still work meanwhile
                self.ready.clear()
                if await wait_or_stop(retry.failed("case commands: Kafka at %s unavailable (%s); retrying",
                                                   self.bootstrap, exc), self._stop):
                    return

    async def _serve(self) -> None:
        await kafka.ensure_topics(self.bootstrap, self.partitions, self.replication)
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=0)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    fetch_max_wait_ms=50, auto_offset_reset="latest")
        await producer.start()
        try:
            await consumer.start()
            try:
                partitions = consumer.partitions_for_topic(kafka.CASE_REPLIES) or set()
                if not partitions:
                    await consumer.topics()  # fetch the metadata, then ask again
                    partitions = consumer.partitions_for_topic(kafka.CASE_REPLIES) or set()
                tps = [TopicPartition(kafka.CASE_REPLIES, p) for p in sorted(partitions)]
                if not tps:
                    raise RuntimeError(f"topic {kafka.CASE_REPLIES} has no partitions")
                consumer.assign(tps)
                await consumer.seek_to_end(*tps)
                for tp in tps:  # resolve the positions now: a reply to the first command must not be skipped
                    await consumer.position(tp)
                self._producer = producer
                self.ready.set()
                log.info("case commands: connected to Kafka at %s", self.bootstrap)
                while not self._stop.is_set():
                    batches = await consumer.getmany(timeout_ms=200)
                    for records in batches.values():
                        for record in records:
                            self._deliver(record.value)
            finally:
                self.ready.clear()
                self._producer = None
                await consumer.stop()
        finally:
            await producer.stop()

    def _deliver(self, value: bytes | None) -> None:
        try:
            reply = decode_reply(value or b"")
        except CaseRecordFormatError as exc:
            log.warning("skipped a %s record that does not decode: %s", kafka.CASE_REPLIES, exc)
            return
        future = self._waiting.get(reply.request_id)
        if future is not None and not future.done():
            future.set_result(reply)


def raise_for(reply: CommandReply) -> None:
    """Turn a refused command into its HTTP error (409, 412, 404 or 422) with the engine's reason."""
    if reply.outcome is not Outcome.APPLIED:
        raise HTTPException(STATUS[reply.outcome], reply.message or reply.outcome.value,
                            headers={"ETag": f'"{reply.version}"'} if reply.version else None)
