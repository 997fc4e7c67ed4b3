"""notification send lease

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 19:40:00

A lease on a notification while one task sends it: two copies of a task
running at once (a redelivery, a sweep re-publish) sent a leaver alert twice.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "notifications", sa.Column("sending_until", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("notifications", "sending_until")
