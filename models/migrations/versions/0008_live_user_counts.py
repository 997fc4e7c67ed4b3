"""live user counts

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 16:30:00

totalResults of an unfiltered listing (Okta's import asks on every page)
was a count(*) of the tenant's live users: work proportional to the
directory on every page. Triggers on users now keep the number of live
users per tenant in tenant_live_users, in the same transaction as the
change, so the total is a sum of at most 16 rows. Each connection adds to
its own slot (pg_backend_pid() % 16), so concurrent creates of one tenant do
not queue on a single counter row. Statement-level triggers with transition
tables: one upsert per statement and tenant, whatever the number of rows.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenant_live_users",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("slot", sa.SmallInteger(), nullable=False),
        sa.Column("live", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "slot"),
    )
    # No write may slip between the backfill and the triggers.
    op.execute("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
    # 16 slots: pg_backend_pid() % 16 below.
    op.execute(
        """
        CREATE FUNCTION count_live_users() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- +1 for each live row after the statement, -1 for each live row
            -- before it; only the transition tables this operation has exist.
            IF TG_OP = 'INSERT' THEN
                INSERT INTO tenant_live_users AS counts (tenant_id, slot, live)
                SELECT tenant_id, pg_backend_pid() % 16, count(*)
                FROM new_rows WHERE deleted_at IS NULL GROUP BY tenant_id
                ON CONFLICT (tenant_id, slot) DO UPDATE SET live = counts.live + excluded.live;
            ELSIF TG_OP = 'DELETE' THEN
                INSERT INTO tenant_live_users AS counts (tenant_id, slot, live)
                SELECT tenant_id, pg_backend_pid() % 16, -count(*)
                FROM old_rows WHERE deleted_at IS NULL GROUP BY tenant_id
                ON CONFLICT (tenant_id, slot) DO UPDATE SET live = counts.live + excluded.live;
            ELSE
                INSERT INTO tenant_live_users AS counts (tenant_id, slot, live)
                SELECT tenant_id, pg_backend_pid() % 16, sum(delta)
                FROM (
                    SELECT tenant_id, 1 AS delta FROM new_rows WHERE deleted_at IS NULL
                    UNION ALL
                    SELECT tenant_id, -1 FROM old_rows WHERE deleted_at IS NULL
                ) AS changes
                GROUP BY tenant_id
                HAVING sum(delta) <> 0
                ON CONFLICT (tenant_id, slot) DO UPDATE SET live = counts.live + excluded.live;
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION forget_live_user_counts() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM tenant_live_users;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER users_count_live_inserted AFTER INSERT ON users "
        "REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION count_live_users()"
    )
    op.execute(
        "CREATE TRIGGER users_count_live_updated AFTER UPDATE ON users "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION count_live_users()"
    )
    op.execute(
        "CREATE TRIGGER users_count_live_deleted AFTER DELETE ON users "
        "REFERENCING OLD TABLE AS old_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION count_live_users()"
    )
    op.execute(
        "CREATE TRIGGER users_count_live_truncated AFTER TRUNCATE ON users "
        "FOR EACH STATEMENT EXECUTE FUNCTION forget_live_user_counts()"
    )
    op.execute(
        "INSERT INTO tenant_live_users (tenant_id, slot, live) "
        "SELECT tenant_id, 0, count(*) FROM users WHERE deleted_at IS NULL GROUP BY tenant_id"
    )


def downgrade() -> None:
    for trigger in ("inserted", "updated", "deleted", "truncated"):
        op.execute(f"DROP TRIGGER users_count_live_{trigger} ON users")
    op.execute("DROP FUNCTION forget_live_user_counts()")
    op.execute("DROP FUNCTION count_live_users()")
    op.drop_table("tenant_live_users")
