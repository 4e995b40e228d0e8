"""Where the gateway looks for Kafka."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiokafka.errors import KafkaConnectionError

from core.settings import load_settings
from domain.registry import Device, DeviceKind, Registry
from ingest.gateway import Gateway
from tests.brokers import free_port


def test_without_a_bootstrap_the_gateway_looks_for_the_embedded_kafka_on_its_port(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens there, so the gateway says where it looked
    settings = load_settings(environ={"GRIDHUB_KAFKA__PORT": str(port)})
    registry = Registry([Device("rain-0001", DeviceKind.RAIN, "310104003001001", 121.43, 31.195, 60)])
    expected = f"Kafka at 127.0.0.1:{port} is not reachable"

    async def scenario() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(Gateway(settings, registry).run(stop))
        deadline = asyncio.get_running_loop().time() + 30
        while not any(expected in message for message in caplog.messages):
            assert asyncio.get_running_loop().time() < deadline, f"never logged {expected!r}: {caplog.messages}"
            await asyncio.sleep(0.05)
        stop.set()
        with pytest.raises(KafkaConnectionError):  # stopped while Kafka was still away
            await running

    with caplog.at_level(logging.WARNING, "gridhub.kafka"):
        asyncio.run(scenario())
