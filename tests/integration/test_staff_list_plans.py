"""The staff list stays fast at directory scale: every query /staff makes is
answered from an index, so page 1,000 costs what page 1 does.

Plans are checked on a 20,000-person tenant beside a second tenant (EXPLAIN,
not timings: the figures at 100,000 are in docs/performance.md, "Admin pages
at 100,000 people").
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import Engine, Select, literal_column, select, text
from sqlalchemy.dialects import postgresql as psycopg_dialect

from gateway.admin import staff
from models.users import STAFF_SORT_KEY, User
from tests.conftest import TenantHandle, make_tenant

SEED = """
INSERT INTO users (id, tenant_id, scim_id, user_name, user_name_key, email, email_key,
                   email_values, display_name, given_name, family_name, department, active,
                   deleted_at, source)
SELECT gen_random_uuid(), :tenant_id, gen_random_uuid(), :prefix || i || '@example.test',
       :prefix || i || '@example.test', :prefix || i || '@example.test',
       :prefix || i || '@example.test', ARRAY[:prefix || i || '@example.test'],
       'Given' || i || ' Family' || (i % 977), 'Given' || i, 'Family' || (i % 977),
       'Dept ' || (i % 40), i % 10 <> 0, CASE WHEN i % 100 = 0 THEN now() END, 'okta'
FROM generate_series(1, :n) AS i
"""


def seed(db: Engine, slug: str, n: int) -> uuid.UUID:
    with db.begin() as conn:
        tenant_id: uuid.UUID = conn.execute(
            text("SELECT id FROM tenants WHERE slug = :slug"), {"slug": slug}
        ).scalar_one()
        conn.execute(text(SEED), {"tenant_id": tenant_id, "prefix": slug, "n": n})
    return tenant_id


@pytest.fixture
def big_tenant(db: Engine, tenant: TenantHandle) -> uuid.UUID:
    owner = seed(db, tenant.slug, 20_000)
    make_tenant(db, "globex")
    seed(db, "globex", 2_000)
    # VACUUM sets the visibility map (index-only scans), as autovacuum does in
    # production; it cannot run inside a transaction.
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE users"))
    return owner


def explain(db: Engine, statement: Select[Any]) -> str:
    compiled = statement.compile(dialect=psycopg_dialect.psycopg.dialect())
    with db.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN " + str(compiled), compiled.params).all()
    return "\n".join(row[0] for row in rows)


def deep_cursor(db: Engine, owner: uuid.UUID) -> tuple[str, uuid.UUID]:
    """The position of the 15,000th person in name order (page 300)."""
    key = literal_column(STAFF_SORT_KEY)
    with db.connect() as conn:
        row = conn.execute(
            select(key.label("key"), User.id)
            .where(User.tenant_id == owner)
            .order_by(key, User.id)
            .offset(15_000)
            .limit(1)
        ).one()
    return row.key, row.id


@pytest.mark.parametrize("status", staff.STATUSES)
def test_first_and_deep_pages_read_an_index_in_order(
    db: Engine, big_tenant: uuid.UUID, status: str
) -> None:
    cursor = deep_cursor(db, big_tenant)
    for after, before in ((None, None), (cursor, None), (None, cursor)):
        plan = explain(db, staff.page_statement(big_tenant, status, "", after, before))
        assert "Seq Scan on users" not in plan, plan
        assert "ix_users_staff_" in plan, plan
        if after or before:
            # The keyset position is an index condition: rows before it are never read.
            assert "Index Cond" in plan and "ROW(lower" in plan, plan


def test_status_counts_are_an_index_only_scan(db: Engine, big_tenant: uuid.UUID) -> None:
    plan = explain(db, staff.status_counts_statement(big_tenant))
    assert "Index Only Scan using ix_users_staff_status_counts" in plan, plan


def test_search_uses_the_trigram_index(db: Engine, big_tenant: uuid.UUID) -> None:
    plan = explain(db, staff.page_statement(big_tenant, "all", "given12345 ", None, None))
    assert "ix_users_staff_search" in plan, plan
    assert "Seq Scan on users" not in plan, plan


def test_the_seeded_statements_return_the_right_rows(db: Engine, big_tenant: uuid.UUID) -> None:
    """The plans above are of statements that work (not of an empty result)."""
    with db.connect() as conn:
        counts = conn.execute(staff.status_counts_statement(big_tenant)).one()
        assert tuple(counts) == (20_000, 18_000, 1_800, 200)
        first = conn.execute(staff.page_statement(big_tenant, "deleted", "", None, None)).all()
        assert len(first) == staff.PAGE_SIZE + 1
        assert all(row.deleted_at is not None for row in first)
        found = conn.execute(staff.page_statement(big_tenant, "all", "ACME1234@", None, None)).all()
        assert [row.email for row in found] == ["acme1234@example.test"]
