"""Fixtures shared by the integration tests (the rest are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.pipeline import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a spare port for one test, removed after it."""
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()
