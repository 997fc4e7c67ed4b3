"""group events

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 19:30:00

Group changes are provisioning events too (group.created/updated/deleted),
audited like users' changes: events and audit entries are about a user or a
group. The check is added NOT VALID and validated separately, so that
validating it scans the outbox without blocking the IdPs' writes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("group_id", sa.UUID(), nullable=True))
    op.add_column("audit_log", sa.Column("target_group_name", sa.String(length=256), nullable=True))
    op.alter_column("audit_log", "user_id", existing_type=sa.UUID(), nullable=True)
    op.alter_column("audit_log", "target_user_name", existing_type=sa.VARCHAR(), nullable=True)
    op.add_column("provisioning_events", sa.Column("group_id", sa.UUID(), nullable=True))
    op.alter_column("provisioning_events", "user_id", existing_type=sa.UUID(), nullable=True)
    op.execute(
        "ALTER TABLE provisioning_events ADD CONSTRAINT ck_provisioning_events_about_someone"
        " CHECK (user_id IS NOT NULL OR group_id IS NOT NULL) NOT VALID"
    )
    op.execute(
        "ALTER TABLE provisioning_events VALIDATE CONSTRAINT ck_provisioning_events_about_someone"
    )


def downgrade() -> None:
    op.drop_constraint("ck_provisioning_events_about_someone", "provisioning_events")
    op.alter_column("provisioning_events", "user_id", existing_type=sa.UUID(), nullable=False)
    op.drop_column("provisioning_events", "group_id")
    op.alter_column("audit_log", "target_user_name", existing_type=sa.VARCHAR(), nullable=False)
    op.alter_column("audit_log", "user_id", existing_type=sa.UUID(), nullable=False)
    op.drop_column("audit_log", "target_group_name")
    op.drop_column("audit_log", "group_id")
