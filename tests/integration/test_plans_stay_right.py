"""Lookups keep using the right index while a new installation's first sync grows
the directory.

psycopg prepares the statements the gateway repeats, and PostgreSQL then
caches a generic plan for them. Chosen while the users table is still tiny
(a first sync on a new installation, before autovacuum has analysed it), that
plan may read the tenant's rows through another index or sequentially, and it
stays cached on the pooled connection as the directory grows: every lookup
then does work proportional to the directory. Seen in the bench before the
fix: during a 3,000-user sync, 4,635 scans of ix_users_live_created reading 8
million index entries, and not one of uq_users_tenant_username.

The test uses its own new database, as a new installation has, with
autovacuum off for the users table so that it cannot repair the plans midway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx2
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine

from gateway import statistics
from gateway.app import create_app
from gateway.cli import migrate
from gateway.settings import Settings
from tests.conftest import make_tenant, scim_client, throwaway_database, user_body
from tests.integration.pipeline import wait_for

SEED = """
INSERT INTO users (id, tenant_id, scim_id, user_name, user_name_key, email, email_key,
                   email_values, active, source, attributes, created_at)
SELECT gen_random_uuid(), :tenant_id, gen_random_uuid(), 'grown' || i || '@acme.test',
       'grown' || i || '@acme.test', 'grown' || i || '@acme.test',
       'grown' || i || '@acme.test', ARRAY['grown' || i || '@acme.test'], true, 'okta',
       jsonb_build_object('userName', 'grown' || i || '@acme.test'), now()
FROM generate_series(1, :n) AS i
"""


@pytest.fixture
def new_installation() -> Iterator[str]:
    with throwaway_database("simpleams_plans") as url:
        migrate(Settings(database_url=url))
        yield url


@pytest.fixture
def fresh_db(new_installation: str) -> Iterator[Engine]:
    engine = create_engine(new_installation)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE users SET (autovacuum_enabled = false)"))
    yield engine
    engine.dispose()


@pytest.fixture
async def idp(new_installation: str, fresh_db: Engine) -> AsyncIterator[httpx2.AsyncClient]:
    tenant = make_tenant(fresh_db, "acme")
    app = create_app(Settings(database_url=new_installation, base_domain="simpleams.test"))
    async with scim_client(app, tenant.headers) as http:
        yield http
    await app.state.engine.dispose()


def scans(db: Engine) -> dict[str, int]:
    """Scans of the users table so far: per index, and sequential ("seq")."""
    with db.connect() as conn:
        found: dict[str, int] = dict(
            conn.execute(  # type: ignore[arg-type]
                text(
                    "SELECT indexrelname, idx_scan FROM pg_stat_user_indexes "
                    "WHERE relname = 'users'"
                )
            ).all()
        )
        found["seq"] = conn.execute(
            text("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'users'")
        ).scalar_one()
    return found


async def lookups(client: httpx2.AsyncClient, n: int, prefix: str) -> None:
    for i in range(n):
        answer = await client.get("/Users", params={"filter": f'userName eq "{prefix}{i}@x.test"'})
        assert answer.status_code == 200
        assert answer.json()["totalResults"] == 0


async def test_user_name_lookups_use_the_unique_index_after_the_directory_grows(
    idp: httpx2.AsyncClient, fresh_db: Engine
) -> None:
    await lookups(idp, 60, "warm")  # every pooled connection has prepared the lookup
    with fresh_db.begin() as conn:
        tenant_id = conn.execute(text("SELECT id FROM tenants WHERE slug = 'acme'")).scalar_one()
        conn.execute(text(SEED), {"tenant_id": tenant_id, "n": 20_000})
    before = scans(fresh_db)
    await lookups(idp, 40, "after")

    def counted() -> dict[str, int] | None:
        # The gateway connections' statistics reach other sessions within
        # about a second (PostgreSQL 15 flushes them when a backend is idle).
        now = scans(fresh_db)
        delta = {name: now[name] - before.get(name, 0) for name in now}
        return delta if sum(delta.values()) >= 40 else None

    delta = wait_for(counted, "the lookups' scans to be counted", timeout=20)
    used = {name: count for name, count in delta.items() if count}
    assert delta["uq_users_tenant_username"] >= 40, used
    assert delta["seq"] == 0 and delta.get("ix_users_live_created", 0) == 0, used


async def test_creates_check_uniqueness_through_the_unique_indexes_after_growth(
    idp: httpx2.AsyncClient, fresh_db: Engine
) -> None:
    for i in range(60):  # the create statements are prepared on every pooled connection
        assert (await idp.post("/Users", json=user_body(f"early{i}@acme.test"))).status_code == 201
    with fresh_db.begin() as conn:
        tenant_id = conn.execute(text("SELECT id FROM tenants WHERE slug = 'acme'")).scalar_one()
        conn.execute(text(SEED), {"tenant_id": tenant_id, "n": 20_000})
    before = scans(fresh_db)
    for i in range(20):
        assert (await idp.post("/Users", json=user_body(f"late{i}@acme.test"))).status_code == 201

    def counted() -> dict[str, int] | None:
        now = scans(fresh_db)
        delta = {name: now[name] - before.get(name, 0) for name in now}
        # Each create looks for a live and a deleted namesake by userName and email.
        return delta if sum(delta.values()) >= 80 else None

    delta = wait_for(counted, "the creates' scans to be counted", timeout=20)
    used = {name: count for name, count in delta.items() if count}
    assert delta["seq"] == 0 and delta.get("ix_users_live_created", 0) == 0, used
    # One probe per key and state, each on its own index.
    for index in (
        "uq_users_tenant_username",
        "uq_users_tenant_email",
        "ix_users_deleted_username",
        "ix_users_deleted_email",
    ):
        assert delta[index] >= 20, used


async def test_the_gateway_analyses_a_table_a_sync_has_grown(
    new_installation: str, fresh_db: Engine
) -> None:
    """Where autovacuum has not run (or is off), the gateway's statistics keeper
    analyses users once enough of it changed, and not again until it changes again."""
    make_tenant(fresh_db, "acme")
    engine = create_async_engine(new_installation)
    try:
        assert await statistics.analyze_if_stale(engine) == []  # an empty table: nothing to do
        with fresh_db.begin() as conn:
            tenant_id = conn.execute(text("SELECT id FROM tenants WHERE slug = 'acme'"))
            conn.execute(text(SEED), {"tenant_id": tenant_id.scalar_one(), "n": 5_000})

        def stats_counted() -> bool:
            with fresh_db.connect() as conn:
                changed = conn.execute(
                    text(
                        "SELECT n_mod_since_analyze FROM pg_stat_user_tables "
                        "WHERE relname = 'users'"
                    )
                ).scalar_one()
            return bool(changed >= 5_000)

        wait_for(stats_counted, "the inserts to reach pg_stat_user_tables", timeout=20)
        assert await statistics.analyze_if_stale(engine) == ["users"]
        with fresh_db.connect() as conn:
            analysed = conn.execute(
                text(
                    "SELECT last_analyze IS NOT NULL, n_mod_since_analyze "
                    "FROM pg_stat_user_tables WHERE relname = 'users'"
                )
            ).one()
            estimate = conn.execute(
                text("SELECT reltuples FROM pg_class WHERE relname = 'users'")
            ).scalar_one()
        assert analysed[0] and analysed[1] == 0
        assert estimate >= 4_000  # the planner now knows the directory's size
        assert await statistics.analyze_if_stale(engine) == []
    finally:
        await engine.dispose()
