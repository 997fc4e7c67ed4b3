"""``/healthz`` (liveness) and ``/readyz`` (readiness), for load balancers,
orchestrators and docker-compose.

- ``/healthz``: the process answers. Nothing else is checked: a restart
  would not bring PostgreSQL back, so a liveness probe must not fail when it
  is away.
- ``/readyz``: this process can do its work now. PostgreSQL answers, its
  schema is at the migrations' head (a web process of a newer release
  waits for ``simpleams migrate``), and the broker answers, without which
  side effects would wait in the outbox. 503 with what is not ready, never
  an address or a credential.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.settings import Settings
from models import migrations

# A probe answers quickly or not at all: each dependency gets this long.
CHECK_SECONDS = 2.0


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: 200 when the database, its schema and the broker are ready, else 503."""
    settings: Settings = request.app.state.settings
    database, broker = await asyncio.gather(
        _database(request.app.state.engine), _broker(settings.redis_url)
    )
    checks = {**database, "broker": broker}
    ready = all(value in ("ok", "at head") for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", **checks},
        status_code=200 if ready else 503,
    )


async def _database(engine: Any) -> dict[str, str]:
    try:
        async with asyncio.timeout(CHECK_SECONDS), engine.connect() as conn:
            revision = (
                await conn.execute(text("SELECT version_num FROM alembic_version"))
            ).scalar_one_or_none()
    except (DBAPIError, PoolTimeoutError, OSError, TimeoutError) as exc:
        if isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) == "42P01":
            return {"database": "ok", "migrations": "not applied (run simpleams migrate)"}
        return {"database": "down", "migrations": "unknown"}
    if revision != migrations.head():
        return {
            "database": "ok",
            "migrations": f"at {revision}, head is {migrations.head()} (run simpleams migrate)",
        }
    return {"database": "ok", "migrations": "at head"}


async def _broker(url: str) -> str:
    client = Redis.from_url(url, socket_connect_timeout=CHECK_SECONDS, socket_timeout=CHECK_SECONDS)
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            await client.ping()
    except (RedisError, OSError, TimeoutError):
        return "down"
    finally:
        await client.aclose()
    return "ok"
