"""Shared fixtures: the embedded broker for integration tests, and small factories."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vigil.stream.kafka.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One real tansu broker for the whole session; stopped even when tests fail."""
    log_dir: Path = tmp_path_factory.mktemp("broker")
    with EmbeddedBroker(log_dir / "tansu.log") as running:
        yield running


@pytest.fixture
def topic_prefix() -> str:
    """A unique prefix so each test's topics and group start empty on the shared broker."""
    return f"t{uuid.uuid4().hex[:10]}"
