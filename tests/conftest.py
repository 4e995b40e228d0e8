"""Fixtures shared across the suite: real brokers on free ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import brokers


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """One in-memory Tansu broker for the session; tests use their own topics or consumer groups."""
    with brokers.tansu() as bootstrap:
        yield bootstrap
