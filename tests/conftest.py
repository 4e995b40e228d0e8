"""Fixtures shared across the suite: real brokers on free ports, and an API app with a viewer token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import load_settings
from gridhub.services import Postgres
from tests import brokers, production
from tests.tokens import bearer, mint


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """One in-memory Tansu broker for the session; tests use their own topics or consumer groups."""
    with brokers.tansu() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="module")
def apache_kafka() -> Iterator[str]:
    """A fresh Apache Kafka (KRaft, one node) for the module; yields its bootstrap address. Fresh per module
    because GridHub's topic and group names are fixed: a shared broker would carry one module's records into
    the next."""
    with production.servers(["kafka"]) as started:
        yield started.kafka.url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """One PostgreSQL server for the session; tests take a fresh database each (`production.fresh_database`)."""
    with production.servers(["postgres"]) as started:
        yield started.postgres


@pytest.fixture
def viewer(tmp_path: Path) -> dict[str, str]:
    """Authorization header of a viewer token, issued into the test's state directory."""
    return bearer(mint(tmp_path, "viewer"))


@pytest.fixture
def client(tmp_path: Path, viewer: dict[str, str]) -> Iterator[TestClient]:
    """The API on a fresh state directory (the viewer token is issued first, so the app knows it)."""
    settings = load_settings(overrides={"state_dir": tmp_path}, environ={})
    with TestClient(create_app(settings)) as test_client:
        yield test_client
