"""The workers' synchronous engine and one-session-per-task helper."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")

engine = create_engine(
    DATABASE_URL,
    pool_size=2,
    max_overflow=2,
    pool_pre_ping=True,
    connect_args={"connect_timeout": 5, "application_name": "simpleams-worker"},
)
SessionFactory = sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """One transaction for one task: commit on success, roll back on error."""
    with SessionFactory.begin() as session:
        yield session
