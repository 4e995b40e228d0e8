"""Kafka topics GridHub uses (docs/architecture.md §1) and the admin step that creates them."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2

from core.retry import Retry, wait_or_stop

TELEMETRY = "gridhub.telemetry"
DETECTIONS = "gridhub.detections"
CASE_EVENTS = "gridhub.case-events"
CASE_COMMANDS = "gridhub.case-commands"  # people's decisions, applied by the stream worker that owns the cell
CASE_REPLIES = "gridhub.case-replies"  # the worker's answer to each command, keyed by its request id
DEADLETTER = "gridhub.deadletter"
TOPICS = (TELEMETRY, DETECTIONS, CASE_EVENTS, CASE_COMMANDS, CASE_REPLIES, DEADLETTER)
START_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)

log = logging.getLogger("gridhub.kafka")


def partition_of(grid_code: str, partitions: int) -> int:
    """A grid cell's partition: Kafka's default partitioner (murmur2, as aiokafka and the Java client) on its code."""
    digest: int = murmur2(grid_code.encode())
    return (digest & 0x7FFFFFFF) % partitions


async def ensure_topics(bootstrap: str, partitions: int, replication: int = 1) -> list[str]:
    """Create whichever GridHub topics are missing; return the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in TOPICS if name not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=replication) for name in missing]
            )
        return missing
    finally:
        await admin.close()


async def start_producer(producer: AIOKafkaProducer, bootstrap: str, stop: asyncio.Event) -> None:
    """Start the producer, waiting for Kafka as long as it takes (the broker may start after us)."""
    retry = Retry(START_BACKOFF_S, log)
    while True:
        try:
            await producer.start()
        except Exception as exc:
            if stop.is_set():
                raise
            await wait_or_stop(retry.failed("Kafka at %s is not reachable (%s); retrying", bootstrap, exc), stop)
            continue
        retry.recovered("Kafka at %s answers", bootstrap)
        return
