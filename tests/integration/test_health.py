"""/healthz (liveness) and /readyz (readiness): gateway/health.py.

Each test builds the gateway on its own settings: a private Redis that can
be stopped, a database that can be behind the migrations, or a database
address where nothing listens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from gateway.app import create_app
from gateway.settings import Settings
from models import migrations
from tests.integration.live_server import free_port
from tests.integration.pipeline import RedisServer

Gateway = Callable[..., AbstractAsyncContextManager[httpx2.AsyncClient]]


@pytest.fixture
def gateway(settings: Settings) -> Gateway:
    @asynccontextmanager
    async def started(**changes: Any) -> AsyncIterator[httpx2.AsyncClient]:
        app = create_app(replace(settings, **changes))
        transport = httpx2.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx2.AsyncClient(transport=transport, base_url="http://localhost") as http,
        ):
            yield http

    return started


async def test_ready_when_the_database_is_at_head_and_the_broker_answers(
    gateway: Gateway, redis_server: RedisServer
) -> None:
    async with gateway(redis_url=redis_server.url) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {
            "status": "ready",
            "database": "ok",
            "migrations": "at head",
            "broker": "ok",
        }
        assert (await http.get("/healthz")).json() == {"status": "ok"}


async def test_not_ready_while_the_broker_is_down_and_ready_again_after(
    gateway: Gateway, redis_server: RedisServer
) -> None:
    async with gateway(redis_url=redis_server.url) as http:
        redis_server.stop()
        down = await http.get("/readyz")
        assert down.status_code == 503
        assert down.json()["broker"] == "down" and down.json()["database"] == "ok"
        assert str(redis_server.port) not in down.text  # no address in the answer
        assert (await http.get("/healthz")).status_code == 200  # alive all the same
        redis_server.start()
        assert (await http.get("/readyz")).status_code == 200


async def test_not_ready_when_the_schema_is_behind_the_migrations(
    gateway: Gateway, redis_server: RedisServer, db: Engine
) -> None:
    head = migrations.head()
    with db.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0013'"))
    try:
        async with gateway(redis_url=redis_server.url) as http:
            behind = await http.get("/readyz")
    finally:
        with db.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head})
    assert behind.status_code == 503
    assert behind.json()["migrations"] == f"at 0013, head is {head} (run simpleams migrate)"


async def test_alive_but_not_ready_without_a_database(
    gateway: Gateway, redis_server: RedisServer, settings: Settings
) -> None:
    nowhere = (
        make_url(settings.database_url)
        .set(host="127.0.0.1", port=free_port(), database="nowhere")
        .render_as_string(hide_password=False)
    )
    async with gateway(
        database_url=nowhere, redis_url=redis_server.url, credential_cache=False, analyze=False
    ) as http:
        assert (await http.get("/healthz")).status_code == 200
        down = await http.get("/readyz")
        assert down.status_code == 503
        assert down.json() == {
            "status": "unavailable",
            "database": "down",
            "migrations": "unknown",
            "broker": "ok",
        }
        assert "nowhere" not in down.text and "@" not in down.text
