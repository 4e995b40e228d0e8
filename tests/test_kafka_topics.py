"""Topic creation: every service may create GridHub's topics at start, together, and a refusal is an error."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from core import kafka
from tests import brokers


async def _partitions(bootstrap: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(kafka.TOPICS))
        return {topic["topic"]: len(topic["partitions"]) for topic in described}
    finally:
        await admin.close()


def test_services_starting_together_create_the_topics_once() -> None:
    async def race(bootstrap: str) -> list[list[str]]:
        return list(await asyncio.gather(*(kafka.ensure_topics(bootstrap, 3) for _ in range(4))))

    with brokers.tansu() as bootstrap:
        created = asyncio.run(race(bootstrap))
        partitions = asyncio.run(_partitions(bootstrap))

    assert sorted(name for names in created for name in names) == sorted(kafka.TOPICS)
    assert partitions == dict.fromkeys(kafka.TOPICS, 3)


def test_topics_that_exist_are_left_alone() -> None:
    with brokers.tansu() as bootstrap:
        asyncio.run(kafka.ensure_topics(bootstrap, 3))
        again = asyncio.run(kafka.ensure_topics(bootstrap, 5))
        partitions = asyncio.run(_partitions(bootstrap))

    assert again == []
    assert partitions == dict.fromkeys(kafka.TOPICS, 3)



@pytest.mark.integration
def test_a_replication_factor_above_the_brokers_is_refused_by_name(apache_kafka: str) -> None:
    refused = r"cannot create Kafka topics: gridhub\.\S+ \(InvalidReplicationFactor"
    with pytest.raises(kafka.TopicsRefused, match=refused):
        asyncio.run(kafka.ensure_topics(apache_kafka, 3, replication=3))  # one broker


@pytest.mark.integration
def test_topics_on_apache_kafka_get_the_configured_partitions(apache_kafka: str) -> None:
    created = asyncio.run(kafka.ensure_topics(apache_kafka, 4))

    assert sorted(created) == sorted(kafka.TOPICS)
    assert asyncio.run(_partitions(apache_kafka)) == dict.fromkeys(kafka.TOPICS, 4)
