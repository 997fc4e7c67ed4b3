"""Fixtures shared by the integration tests (the rest are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from tests.integration.pipeline import Pipeline, RedisServer, pipeline_processes, smtp_sink
from workers import db as workers_db


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a spare port for one test, removed after it."""
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def pipeline(database_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    """The side-effect pipeline's processes (none started yet), a private Redis
    and an SMTP sink; logs in the test's tmp_path. Modules that need another
    SMTP server or processes already running override it."""
    with smtp_sink() as smtp, pipeline_processes(database_url, tmp_path, smtp) as running:
        yield running


@pytest.fixture
def workers_in_process(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker code called in this process (not a Celery worker) runs its
    transactions (workers/db.py::session_scope) on the test database."""
    monkeypatch.setattr(workers_db, "SessionFactory", sessionmaker(db, expire_on_commit=False))
