"""groups

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 19:20:00

SCIM Groups (Okta Push Groups, Entra group provisioning): one row per group,
one row per (group, user) membership, so membership changes cost the number
of changes rather than the size of the group (models/groups.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "groups",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("external_id", sa.String(length=256), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("version", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_groups_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groups")),
    )
    op.create_index(
        "ix_groups_tenant_created", "groups", ["tenant_id", "created_at", "id"], unique=False
    )
    op.create_index(
        "ix_groups_tenant_external_id", "groups", ["tenant_id", "external_id"], unique=False
    )
    op.create_index(
        "uq_groups_tenant_display_name",
        "groups",
        ["tenant_id", sa.literal_column("lower(display_name)")],
        unique=True,
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column(
            "added_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("display", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name=op.f("fk_group_members_group_id_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_group_members_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "user_id", name=op.f("pk_group_members")),
    )
    op.create_index("ix_group_members_user", "group_members", ["user_id", "group_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_group_members_user", table_name="group_members")
    op.drop_table("group_members")
    op.drop_index("uq_groups_tenant_display_name", table_name="groups")
    op.drop_index("ix_groups_tenant_external_id", table_name="groups")
    op.drop_index("ix_groups_tenant_created", table_name="groups")
    op.drop_table("groups")
