"""The gateway's async engine and how requests use it.

The hot paths use SQLAlchemy Core on an ``AsyncConnection`` (about 1.5x the
ORM's throughput here; docs/dependencies.md, "SQLAlchemy"). Round trips to PostgreSQL are the
main cost of a SCIM request, so single statements run in autocommit (no
BEGIN/ROLLBACK around a lookup; the common create is one statement that is
its own transaction) and other writes open one short READ COMMITTED
transaction. A connection is checked out only around database work, after
the request body has been read and validated: a client that sends its body
slowly must not hold a pooled connection other tenants need. Data functions
receive the connection and never commit. When a statement fails,
``classify`` says what that means for the request, for every caller (the
gateway's exception handlers, each operation of a /Bulk request).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gateway.settings import Settings


def create_engine(settings: Settings) -> AsyncEngine:
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=2,
        # Fail fast when the pool is exhausted or PostgreSQL is away, so the
        # IdP gets a 503 it can retry instead of hanging until its timeout.
        pool_timeout=5,
        # No pool_pre_ping: it costs a round trip on every request. After a
        # PostgreSQL restart the first request on a dead connection fails
        # with a 503 (IdPs retry) and SQLAlchemy invalidates the whole pool,
        # so the gateway recovers by itself.
        # Bound parameters are user documents (personal data): keep them out
        # of logged errors.
        hide_parameters=True,
        connect_args={
            "connect_timeout": 5,
            # Plan every statement with its real values and the table's
            # current size. psycopg prepares statements the gateway repeats,
            # and PostgreSQL would then cache a generic plan; one chosen
            # while a first sync's table was tiny (a sequential scan) stays
            # on the pooled connection as the directory grows, and every
            # lookup reads the whole tenant (tests/integration/
            # test_plans_stay_right.py). Planning costs far less than that.
            "options": (
                f"-c statement_timeout={settings.db_statement_timeout_ms} "
                "-c plan_cache_mode=force_custom_plan"
            ),
            "application_name": "simpleams-gateway",
        },
    )


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in autocommit, for single-statement reads, and for a write
    that is one statement (each statement commits on its own)."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


@asynccontextmanager
async def writing(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One READ COMMITTED transaction, committed when the block exits.

    The endpoint builds its response after the block: the IdP is only told
    "created" once the row and its event are durable.
    """
    async with engine.begin() as conn:
        yield conn


# SQLSTATE classes that mean "try again shortly": connection exceptions,
# insufficient resources, operator intervention (restart, a statement
# timeout), and transaction rollback (PostgreSQL chose this write as a
# deadlock's victim, or a serialization conflict's: running it again
# succeeds). The IdP retries a 503 with Retry-After.
_UNAVAILABLE = ("08", "40", "53", "57")
# Data exceptions and program limits (a value too long to index): the
# client's data, so a 400.
_REFUSED = ("22", "54")

Failure = Literal["unavailable", "refused", "other"]


def sqlstate(exc: BaseException) -> str:
    """The SQLSTATE PostgreSQL gave for a failed statement; "" when it gave none."""
    return str(getattr(getattr(exc, "orig", None), "sqlstate", None) or "")


def classify(exc: BaseException) -> Failure:
    """What a database failure means for the request that met it.

    - ``unavailable``: the database is away, busy, or rolled this write back
      (a deadlock's victim); the same request succeeds if sent again shortly.
    - ``refused``: PostgreSQL refused a value of the request (a NUL character,
      a value too long to index); sending it again fails the same way.
    - ``other``: anything else, a fault of ours.
    """
    state = sqlstate(exc)
    if (
        isinstance(exc, PoolTimeoutError)
        or getattr(exc, "connection_invalidated", False)
        or state[:2] in _UNAVAILABLE
        or (isinstance(exc, OperationalError) and not state)
    ):
        return "unavailable"
    if state[:2] in _REFUSED or isinstance(exc, DataError):
        return "refused"
    return "other"
