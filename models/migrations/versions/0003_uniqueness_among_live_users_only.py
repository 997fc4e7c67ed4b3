"""uniqueness among live users only

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 10:31:45.343047
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Autogenerate does not see a changed index predicate; written by hand.


def upgrade() -> None:
    op.drop_index("uq_users_tenant_username", table_name="users")
    op.drop_index("uq_users_tenant_email", table_name="users")
    op.create_index(
        "uq_users_tenant_username",
        "users",
        ["tenant_id", sa.literal_column("lower(user_name)")],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "uq_users_tenant_email",
        "users",
        ["tenant_id", sa.literal_column("lower(email)")],
        unique=True,
        postgresql_where=sa.text("email IS NOT NULL AND deleted_at IS NULL"),
    )
    for column in ("username", "email"):
        op.create_index(
            f"ix_users_deleted_{column}",
            "users",
            [
                "tenant_id",
                sa.literal_column(f"lower({'user_name' if column == 'username' else column})"),
            ],
            postgresql_where=sa.text("deleted_at IS NOT NULL"),
        )


def downgrade() -> None:
    op.drop_index("ix_users_deleted_username", table_name="users")
    op.drop_index("ix_users_deleted_email", table_name="users")
    op.drop_index("uq_users_tenant_username", table_name="users")
    op.drop_index("uq_users_tenant_email", table_name="users")
    op.create_index(
        "uq_users_tenant_username",
        "users",
        ["tenant_id", sa.literal_column("lower(user_name)")],
        unique=True,
    )
    op.create_index(
        "uq_users_tenant_email",
        "users",
        ["tenant_id", sa.literal_column("lower(email)")],
        unique=True,
        postgresql_where=sa.text("email IS NOT NULL"),
    )
