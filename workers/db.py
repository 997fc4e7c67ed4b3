"""The workers' synchronous engine and one-transaction-per-task helper."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from workers.settings import settings

engine = create_engine(
    settings.database_url,
    pool_size=2,
    max_overflow=2,
    # Workers are not latency-critical; testing a connection before a task
    # lets a task started after a PostgreSQL restart succeed first time.
    pool_pre_ping=True,
    # Bound parameters are people's names and addresses: keep them out of the
    # errors that reach a log line (as gateway/db.py does).
    hide_parameters=True,
    connect_args={"connect_timeout": 5},
)
SessionFactory = sessionmaker(engine, expire_on_commit=False)


@event.listens_for(engine, "do_connect")
def _name_connection(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
    # The process id in pg_stat_activity tells ops which worker holds a lock.
    cparams["application_name"] = f"simpleams-worker:{os.getpid()}"


def reset_after_fork() -> None:
    """Forked pool children must not share the parent's connections."""
    engine.dispose(close=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """One transaction: commit on success, roll back on error."""
    with SessionFactory.begin() as session:
        yield session
