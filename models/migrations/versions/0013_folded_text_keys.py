"""folded text keys

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 17:00:00

Case-insensitive comparison moves from PostgreSQL's lower() to keys folded
once in Python at write time (models/text.py): ``users.user_name_key``,
``users.email_key``, ``users.folded`` (the document with its caseExact=false
strings folded), ``email_values`` folded, and ``groups.display_name_key``.
The unique indexes move onto the keys. Existing rows are folded here.

Two live users (or groups) of one tenant whose names differed under lower()
but fold to the same key ("STRASSE" and "straße") cannot both keep a unique
key: the migration stops before changing anything and names them.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from models.text import fold, fold_document, fold_or_none

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The caseExact=true string paths of a stored User document at this revision
# (gateway/scim/resources.py derives the same set from the schema; a test
# compares them). Everything else that is a string is folded.
_ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user"
USER_CASE_EXACT = frozenset(
    {
        ("schemas",),
        ("externalid",),
        ("profileurl",),
        ("password",),
        ("photos", "value"),
        ("groups", "value"),
        ("groups", "$ref"),
        ("x509certificates", "value"),
        (_ENTERPRISE, "manager", "value"),
        (_ENTERPRISE, "manager", "$ref"),
    }
)
_BATCH = 2000


def upgrade() -> None:
    op.add_column("users", sa.Column("user_name_key", sa.Text(), nullable=True))
    op.add_column("users", sa.Column("email_key", sa.Text(), nullable=True))
    op.add_column(
        "users",
        sa.Column("folded", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
    )
    op.add_column("groups", sa.Column("display_name_key", sa.Text(), nullable=True))
    connection = op.get_bind()
    _fold_users(connection)
    _fold_groups(connection)
    op.alter_column("role_mappings", "group_key", type_=sa.Text())
    mappings = connection.execute(
        sa.text("SELECT tenant_id, group_key, group_name FROM role_mappings")
    ).all()
    if mappings:
        connection.execute(
            sa.text(
                "UPDATE role_mappings SET group_key = :key "
                "WHERE tenant_id = :tenant_id AND group_key = :old"
            ),
            [
                {"tenant_id": m.tenant_id, "old": m.group_key, "key": fold(m.group_name)}
                for m in mappings
            ],
        )
    _refuse_collisions(connection)
    op.alter_column("users", "user_name_key", nullable=False)
    op.alter_column("groups", "display_name_key", nullable=False)
    _drop_name_indexes()
    _key_indexes(
        "user_name_key", "email_key", email_present="email_key IS NOT NULL", deleted_key_first=True
    )
    op.create_index(
        "uq_groups_tenant_display_name",
        "groups",
        ["tenant_id", "display_name_key"],
        unique=True,
    )


def _drop_name_indexes() -> None:
    for name in (
        "uq_users_tenant_username",
        "uq_users_tenant_email",
        "ix_users_deleted_username",
        "ix_users_deleted_email",
    ):
        op.drop_index(name, table_name="users")
    op.drop_index("uq_groups_tenant_display_name", table_name="groups")


def _key_indexes(
    user_name: str, email: str, *, email_present: str, deleted_key_first: bool
) -> None:
    """The live users' unique indexes and the deleted users' lookup ones; from
    0013 each deleted one leads with its key and names it in its predicate
    (models/users.py says why)."""
    op.create_index(
        "uq_users_tenant_username",
        "users",
        ["tenant_id", sa.literal_column(user_name)],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "uq_users_tenant_email",
        "users",
        ["tenant_id", sa.literal_column(email)],
        unique=True,
        postgresql_where=sa.text(f"{email_present} AND deleted_at IS NULL"),
    )
    for name, key in (("ix_users_deleted_username", user_name), ("ix_users_deleted_email", email)):
        if deleted_key_first:
            op.create_index(
                name,
                "users",
                [sa.literal_column(key), "tenant_id"],
                postgresql_where=sa.text(f"deleted_at IS NOT NULL AND {key} IS NOT NULL"),
            )
        else:
            op.create_index(
                name,
                "users",
                ["tenant_id", sa.literal_column(key)],
                postgresql_where=sa.text("deleted_at IS NOT NULL"),
            )


def _fold_users(connection: Any) -> None:
    update = sa.text(
        "UPDATE users SET user_name_key = :user_name_key, email_key = :email_key, "
        "folded = CAST(:folded AS jsonb), email_values = CAST(:email_values AS varchar[]) "
        "WHERE id = :id"
    ).bindparams(sa.bindparam("folded", type_=JSONB), sa.bindparam("email_values"))
    after = None
    while True:
        rows = connection.execute(
            sa.text(
                "SELECT id, user_name, email, attributes FROM users "
                "WHERE (CAST(:after AS uuid) IS NULL OR id > CAST(:after AS uuid)) "
                "ORDER BY id LIMIT :batch"
            ),
            {"after": after, "batch": _BATCH},
        ).all()
        if not rows:
            return
        connection.execute(
            update,
            [
                {
                    "id": row.id,
                    "user_name_key": fold(row.user_name),
                    "email_key": fold_or_none(row.email),
                    "folded": fold_document(row.attributes or {}, USER_CASE_EXACT),
                    "email_values": sorted(
                        {
                            fold(str(e["value"]))
                            for e in (row.attributes or {}).get("emails") or []
                            if isinstance(e, dict) and e.get("value")
                        }
                    ),
                }
                for row in rows
            ],
        )
        after = str(rows[-1].id)


def _fold_groups(connection: Any) -> None:
    rows = connection.execute(sa.text("SELECT id, display_name FROM groups")).all()
    if rows:
        connection.execute(
            sa.text("UPDATE groups SET display_name_key = :key WHERE id = :id"),
            [{"id": row.id, "key": fold(row.display_name)} for row in rows],
        )


def _refuse_collisions(connection: Any) -> None:
    found = connection.execute(
        sa.text(
            "SELECT 'users', tenant_id, string_agg(id::text, ', ') FROM users "
            "WHERE deleted_at IS NULL GROUP BY tenant_id, user_name_key HAVING count(*) > 1 "
            "UNION ALL SELECT 'users', tenant_id, string_agg(id::text, ', ') FROM users "
            "WHERE deleted_at IS NULL AND email_key IS NOT NULL "
            "GROUP BY tenant_id, email_key HAVING count(*) > 1 "
            "UNION ALL SELECT 'groups', tenant_id, string_agg(id::text, ', ') FROM groups "
            "GROUP BY tenant_id, display_name_key HAVING count(*) > 1"
        )
    ).all()
    if found:
        listed = "; ".join(f"{table} {ids} (tenant {tenant})" for table, tenant, ids in found)
        raise RuntimeError(
            "These rows have names that are equal under Unicode case folding and can no "
            "longer all be unique; rename or delete all but one of each set, then migrate "
            f"again: {listed}"
        )


def downgrade() -> None:
    _drop_name_indexes()
    op.execute(
        "UPDATE users SET email_values = ARRAY(SELECT DISTINCT lower(e->>'value') "
        "FROM jsonb_array_elements(coalesce(attributes->'emails', '[]'::jsonb)) AS e "
        "WHERE e->>'value' IS NOT NULL ORDER BY 1)::varchar[]"
    )
    _key_indexes(
        "lower(user_name)",
        "lower(email)",
        email_present="email IS NOT NULL",
        deleted_key_first=False,
    )
    op.create_index(
        "uq_groups_tenant_display_name",
        "groups",
        ["tenant_id", sa.literal_column("lower(display_name)")],
        unique=True,
    )
    op.execute("UPDATE role_mappings SET group_key = lower(group_name)")
    op.alter_column("role_mappings", "group_key", type_=sa.String(length=256))
    op.drop_column("groups", "display_name_key")
    op.drop_column("users", "folded")
    op.drop_column("users", "email_key")
    op.drop_column("users", "user_name_key")
