"""Kafka topics GridHub uses (docs/architecture.md §1) and the admin step that creates them."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from aiokafka.partitioner import murmur2

from core.retry import Retry, wait_or_stop
from core.settings import KafkaSettings

TELEMETRY = "gridhub.telemetry"
DETECTIONS = "gridhub.detections"
CASE_EVENTS = "gridhub.case-events"
CASE_COMMANDS = "gridhub.case-commands"  # people's decisions, applied by the stream worker that owns the cell
CASE_REPLIES = "gridhub.case-replies"  # the worker's answer to each command, keyed by its request id
DEADLETTER = "gridhub.deadletter"
DETECTOR_FEEDBACK = "gridhub.detector-feedback"  # operators' lessons to the camera detectors, keyed by camera
TOPICS = (TELEMETRY, DETECTIONS, CASE_EVENTS, CASE_COMMANDS, CASE_REPLIES, DEADLETTER, DETECTOR_FEEDBACK)
START_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)

log = logging.getLogger("gridhub.kafka")


def partition_of(grid_code: str, partitions: int) -> int:
    """A grid cell's partition: Kafka's default partitioner (murmur2, as aiokafka and the Java client) on its code."""
    digest: int = murmur2(grid_code.encode())
    return (digest & 0x7FFFFFFF) % partitions


class TopicsRefused(RuntimeError):
    """The cluster answered, and would not create a topic (e.g. a replication factor above its brokers)."""


async def ensure_topics(bootstrap: str, partitions: int, replication: int = 1) -> list[str]:
    """Create whichever GridHub topics are missing; return the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in TOPICS if name not in existing]
        if not missing:
            return []
        answer = await admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=replication) for name in missing])
        # Services starting together race to create the topics: one that another created first is no error.
        failed = [(name, code) for name, code, *_ in answer.topic_errors
                  if code not in (0, TopicAlreadyExistsError.errno)]
        if failed:
            raise TopicsRefused("cannot create Kafka topics: " + ", ".join(
                f"{name} ({for_code(code).__name__})" for name, code in failed))
        return [name for name, code, *_ in answer.topic_errors if code == 0]
    finally:
        await admin.close()


async def ensure_topics_when_reachable(settings: KafkaSettings) -> list[str]:
    """Create whichever GridHub topics are missing on the configured cluster, waiting for it to answer: in a
    deployment the services and the cluster start together. A refusal is not waited out."""
    retry = Retry(START_BACKOFF_S, log)
    while True:
        try:
            created = await ensure_topics(settings.bootstrap_servers, settings.partitions, settings.replication_factor)
        except TopicsRefused:
            raise
        except Exception as exc:
            await asyncio.sleep(retry.failed("Kafka at %s is not reachable (%s); retrying", settings.bootstrap_servers,
                                             exc))
            continue
        retry.recovered("Kafka at %s answers", settings.bootstrap_servers)
        if created:
            log.info("created Kafka topics %s", ", ".join(created))
        return created


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
