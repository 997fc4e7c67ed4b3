"""The gateway's async engine and its per-request connection.

The hot paths use SQLAlchemy Core on an ``AsyncConnection`` (about 1.5x the
ORM's throughput here, DEPENDENCIES.md). Round trips to PostgreSQL are the
main cost of a SCIM request, so each request checks out ONE connection (in
the auth middleware) and uses it in autocommit for its single-statement reads
(no BEGIN/ROLLBACK around a lookup). Writes open a real transaction on the
same connection with ``transaction()``; data functions receive the connection
and never commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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
        connect_args={
            "connect_timeout": 5,
            "options": f"-c statement_timeout={settings.db_statement_timeout_ms}",
            "application_name": "simpleams-gateway",
        },
    )


@asynccontextmanager
async def request_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One pooled connection for one request, in autocommit for single-statement reads."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


@asynccontextmanager
async def transaction(conn: AsyncConnection) -> AsyncIterator[AsyncConnection]:
    """A READ COMMITTED transaction on the request's connection.

    It commits when the block exits, before the endpoint builds its response:
    the IdP is only told "created" once the row and its event are durable.
    """
    # Under autocommit SQLAlchemy still tracks a logical transaction for the
    # earlier reads; ending it costs no round trip.
    await conn.commit()
    await conn.execution_options(isolation_level="READ COMMITTED")
    async with conn.begin():
        yield conn
