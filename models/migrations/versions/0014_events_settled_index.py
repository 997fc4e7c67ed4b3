"""an index of when each tenant's events settled

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 19:40:00

The activity page charts the side-effect backlog over the last hour, minute
by minute. The backlog at a moment is the events unsettled now, less those
that arrived since, plus those that settled since; the last of these reads
this index (a range of one tenant's settle times) instead of the tenant's
whole history. Settling already rewrites every index entry of the row (the
unsettled indexes' predicates name settled_at), so this adds one entry per
settled event.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_provisioning_events_tenant_settled",
        "provisioning_events",
        ["tenant_id", "settled_at"],
        postgresql_where=sa.text("settled_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_provisioning_events_tenant_settled", table_name="provisioning_events")
