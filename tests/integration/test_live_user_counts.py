"""totalResults of an unfiltered listing comes from per-tenant counters kept by
triggers on users (migration 0008), not from counting the directory on every
page: Okta's import asks for it on each of its pages."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, event, text

from tests.conftest import TenantHandle, make_tenant, user_body

COUNTED = """
SELECT count(*) FROM users JOIN tenants ON tenants.id = users.tenant_id
WHERE tenants.slug = :slug AND users.deleted_at IS NULL
"""
KEPT = """
SELECT coalesce(sum(live), 0) FROM tenant_live_users JOIN tenants ON tenants.id = tenant_id
WHERE tenants.slug = :slug
"""
SEED = """
INSERT INTO users (id, tenant_id, scim_id, user_name, user_name_key, email, email_key,
                   email_values, active, source, attributes)
SELECT gen_random_uuid(), tenants.id, gen_random_uuid(), 'seeded' || i || '@acme.test',
       'seeded' || i || '@acme.test', 'seeded' || i || '@acme.test',
       'seeded' || i || '@acme.test', ARRAY['seeded' || i || '@acme.test'], true, 'manual',
       jsonb_build_object('userName', 'seeded' || i || '@acme.test')
FROM tenants, generate_series(1, :n) AS i WHERE tenants.slug = :slug
"""


def live_users(db: Engine, slug: str = "acme") -> tuple[int, int]:
    """(counted from users, kept by the triggers)."""
    with db.connect() as conn:
        counted = conn.execute(text(COUNTED), {"slug": slug}).scalar_one()
        kept = conn.execute(text(KEPT), {"slug": slug}).scalar_one()
    return int(counted), int(kept)


async def total(client: httpx2.AsyncClient) -> int:
    response = await client.get("/Users", params={"count": "0"})
    assert response.status_code == 200, response.text
    return int(response.json()["totalResults"])


async def assert_in_step(client: httpx2.AsyncClient, db: Engine, expected: int) -> None:
    assert live_users(db) == (expected, expected)
    assert await total(client) == expected


async def test_the_count_follows_every_kind_of_write(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    other = make_tenant(db, "globex")
    ids = []
    for n in range(5):
        created = await client.post("/Users", json=user_body(f"u{n}@acme.test"))
        assert created.status_code == 201
        ids.append(created.json()["id"])
    await assert_in_step(client, db, 5)

    # Deactivated users are still listed; deleted ones are not.
    deactivate = {"Operations": [{"op": "replace", "value": {"active": False}}]}
    assert (await client.patch(f"/Users/{ids[0]}", json=deactivate)).status_code == 200
    assert (await client.delete(f"/Users/{ids[1]}")).status_code == 204
    await assert_in_step(client, db, 4)
    # A re-hire restores the deleted record.
    assert (await client.post("/Users", json=user_body("u1@acme.test"))).status_code == 201
    await assert_in_step(client, db, 5)

    # Writes that do not go through the gateway count too.
    with db.begin() as conn:
        conn.execute(text(SEED), {"n": 30, "slug": "acme"})
    await assert_in_step(client, db, 35)
    with db.begin() as conn:
        conn.execute(
            text("UPDATE users SET deleted_at = now() WHERE user_name LIKE 'seeded1%'")
        )  # seeded1, seeded10..19: 11 users
    await assert_in_step(client, db, 24)
    with db.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE user_name LIKE 'seeded2%'"))  # 2, 20..29
        conn.execute(
            text("UPDATE users SET deleted_at = NULL WHERE user_name = 'seeded10@acme.test'")
        )
    await assert_in_step(client, db, 14)

    # Another tenant's users are counted apart.
    async with httpx2.AsyncClient(
        transport=client._transport, base_url=str(client.base_url), headers=other.headers
    ) as globex:
        assert (await globex.post("/Users", json=user_body("g@globex.test"))).status_code == 201
        assert await total(globex) == 1
    await assert_in_step(client, db, 14)


async def test_concurrent_creates_are_all_counted(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    answers = await asyncio.gather(
        *(client.post("/Users", json=user_body(f"c{n}@acme.test")) for n in range(40))
    )
    assert [a.status_code for a in answers] == [201] * 40
    await assert_in_step(client, db, 40)


def test_a_rolled_back_write_changes_no_count(db: Engine, tenant: TenantHandle) -> None:
    with db.connect() as conn:
        conn.execute(text(SEED), {"n": 10, "slug": "acme"})
        conn.rollback()
    assert live_users(db) == (0, 0)


@pytest.fixture
def statements(app: Any) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


async def test_an_unfiltered_page_does_not_count_the_directory(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle, statements: list[str]
) -> None:
    with db.begin() as conn:
        conn.execute(text(SEED), {"n": 50, "slug": "acme"})
    statements.clear()
    for params in ({"count": "10"}, {"startIndex": "21", "count": "10"}, {"count": "0"}):
        page = await client.get("/Users", params=params)
        assert page.status_code == 200
        assert page.json()["totalResults"] == 50
    counts = [s for s in statements if "count(" in s.lower()]
    assert counts == [], counts
