"""gateway/credentials.py: each web process remembers which tenant a token belongs to,
and forgets as soon as PostgreSQL announces a change to credentials or tenants.

These tests run the gateway's lifespan (the listener is a lifespan task), so
the cache is live; the rest of the suite's in-process gateway has no
lifespan and looks every token up.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from gateway import tenancy
from gateway.app import create_app
from gateway.credentials import Credential, CredentialCache
from gateway.settings import Settings
from models.tenants import Plan
from tests.conftest import TenantHandle, scim_client


async def until(condition: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.01)  # polling a condition, under a deadline
    assert condition(), what


@pytest.fixture
async def cached_app(settings: Settings) -> AsyncIterator[Any]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await until(lambda: app.state.credentials.listening, "the listener to connect")
        yield app
    await app.state.engine.dispose()


@pytest.fixture
async def http(cached_app: Any) -> AsyncIterator[httpx2.AsyncClient]:
    async with scim_client(cached_app) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def changed(cache: CredentialCache, since: int) -> None:
    """Wait until the process has heard of a change announced after ``since``."""
    await until(lambda: cache.generation > since, "the change notification")


async def commit_and_hear(cache: CredentialCache, db: Engine, change: Callable[[Any], Any]) -> Any:
    """Run ``change(conn)`` in a transaction, then wait until the process heard of it."""
    before = cache.generation
    with db.begin() as conn:
        result = change(conn)
    await changed(cache, before)
    return result


async def test_a_token_is_looked_up_once_then_remembered(
    http: httpx2.AsyncClient, cached_app: Any, tenant: TenantHandle
) -> None:
    cache: CredentialCache = cached_app.state.credentials
    for _ in range(5):
        assert (await http.get("/Users", headers=bearer(tenant.token))).status_code == 200
    # 4, or 3 when the notification of the tenant's creation (committed by
    # the fixture) arrived after the first lookup.
    assert cache.hits >= 3


async def test_a_rotated_out_token_stops_working(
    http: httpx2.AsyncClient, cached_app: Any, tenant: TenantHandle, db: Engine
) -> None:
    cache: CredentialCache = cached_app.state.credentials
    assert (await http.get("/Users", headers=bearer(tenant.token))).status_code == 200
    new = await commit_and_hear(
        cache, db, lambda conn: tenancy.rotate_token(conn, tenant.slug).token
    )
    assert (await http.get("/Users", headers=bearer(tenant.token))).status_code == 401
    assert (await http.get("/Users", headers=bearer(new))).status_code == 200


async def test_disabling_the_integration_or_leaving_business_takes_effect(
    http: httpx2.AsyncClient, cached_app: Any, tenant: TenantHandle, db: Engine
) -> None:
    cache: CredentialCache = cached_app.state.credentials
    assert (await http.get("/Users", headers=bearer(tenant.token))).status_code == 200

    await commit_and_hear(cache, db, lambda conn: tenancy.set_plan(conn, tenant.slug, Plan.pro))
    assert (await http.get("/Users", headers=bearer(tenant.token))).status_code == 403

    await commit_and_hear(
        cache, db, lambda conn: tenancy.set_plan(conn, tenant.slug, Plan.business)
    )
    assert (await http.get("/Users", headers=bearer(tenant.token))).status_code == 200

    await commit_and_hear(
        cache,
        db,
        lambda conn: conn.execute(
            text("UPDATE tenants SET scim_enabled = false WHERE slug = 'acme'")
        ),
    )
    assert (await http.get("/Users", headers=bearer(tenant.token))).status_code == 401


def test_only_changes_that_matter_are_announced(database_url: str, tenant: TenantHandle) -> None:
    """last_used_at (written once a minute per process) must not empty every
    process' cache; a rotation, the plan or the SCIM switch must."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("LISTEN scim_credentials_changed")

        def announced_by(statement: str) -> bool:
            conn.execute(statement)
            # A session hears its own notifications; the marker comes last.
            conn.execute("NOTIFY scim_credentials_changed, 'marker'")
            heard = []
            for notification in conn.notifies(timeout=5):
                heard.append(notification.payload)
                if notification.payload == "marker":
                    break
            assert heard[-1:] == ["marker"]
            return heard != ["marker"]

        assert not announced_by("UPDATE scim_credentials SET last_used_at = now()")
        assert not announced_by("UPDATE tenants SET notify_email = 'it@acme.test'")
        assert announced_by("UPDATE scim_credentials SET revoked_at = now()")
        assert announced_by("UPDATE tenants SET plan = 'pro'")
        assert announced_by("UPDATE tenants SET scim_enabled = false")
        assert announced_by("UPDATE tenants SET slug = 'acme2'")
        assert announced_by(
            "INSERT INTO scim_credentials (id, tenant_id, token_hash, token_prefix) "
            "SELECT gen_random_uuid(), id, 'x', 'x' FROM tenants"
        )
        assert announced_by("DELETE FROM scim_credentials")


async def test_while_the_listener_is_down_every_token_is_looked_up(
    http: httpx2.AsyncClient, cached_app: Any, tenant: TenantHandle, db: Engine
) -> None:
    cache: CredentialCache = cached_app.state.credentials
    assert (await http.get("/Users", headers=bearer(tenant.token))).status_code == 200
    with db.begin() as conn:
        killed = conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'simpleams-gateway-credentials' "
                "AND datname = current_database()"
            )
        ).all()
    assert killed
    await until(lambda: not cache.listening, "the gateway to notice the listener is gone")
    hits = cache.hits
    with db.begin() as conn:
        new = tenancy.rotate_token(conn, tenant.slug).token
    # No notification can arrive now; the old token must fail anyway.
    assert (await http.get("/Users", headers=bearer(tenant.token))).status_code == 401
    assert (await http.get("/Users", headers=bearer(new))).status_code == 200
    assert cache.hits == hits
    await until(lambda: cache.listening, "the listener to reconnect")
    assert (await http.get("/Users", headers=bearer(new))).status_code == 200
    assert (await http.get("/Users", headers=bearer(new))).status_code == 200
    assert cache.hits == hits + 1


def credential() -> Credential:
    return Credential(
        id=uuid.uuid4(),
        token_hash="h",
        tenant_id=uuid.uuid4(),
        slug="acme",
        plan="business",
        scim_enabled=True,
    )


def test_an_unread_notification_empties_the_cache_before_it_is_read() -> None:
    """The request path checks the listening socket itself: a notification that
    has arrived but that the event loop has not handled yet already counts."""
    cache = CredentialCache()
    ours, postgres = socket.socketpair()
    with ours, postgres:
        cache.attach(ours.fileno())
        cache.remember("h", credential(), cache.generation)
        assert cache.get("h") is not None
        postgres.send(b"N")  # a notification, unread
        assert cache.get("h") is None
        ours.recv(1)  # read, as the listener's callback does (after forgetting)
        assert cache.get("h") is None


def test_an_answer_looked_up_across_a_change_is_not_remembered() -> None:
    cache = CredentialCache()
    ours, postgres = socket.socketpair()
    with ours, postgres:
        cache.attach(ours.fileno())
        looked_up_at = cache.generation
        cache.forget_all()  # a change was announced while the lookup ran
        cache.remember("h", credential(), looked_up_at)
        assert cache.get("h") is None


def test_nothing_is_remembered_without_a_listener() -> None:
    cache = CredentialCache()
    cache.remember("h", credential(), cache.generation)
    assert cache.get("h") is None


def test_a_listening_socket_closed_under_the_cache_is_not_a_500() -> None:
    """libpq closes the socket when it reads the end of a connection (a
    PostgreSQL restart), possibly before the listener task has detached; the
    soak caught a request selecting on that closed descriptor (EBADF -> 500)."""
    cache = CredentialCache()
    ours, postgres = socket.socketpair()
    with postgres:
        cache.attach(ours.fileno())
        cache.remember("h", credential(), cache.generation)
        ours.close()
        assert cache.get("h") is None
        assert not cache.listening
        cache.remember("h", credential(), cache.generation)
        assert cache.get("h") is None  # nothing is remembered until it listens again
