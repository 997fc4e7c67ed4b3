"""The append-only audit log: one entry per provisioning event.

Append-only is enforced by PostgreSQL (a trigger refuses UPDATE and DELETE,
migration 0002), not by convention. ``event_id`` is unique, which is what makes
recording an event twice (a task that ran twice) a no-op.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_tenant_time", "tenant_id", "occurred_at"),
        Index("ix_audit_log_user_time", "user_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("provisioning_events.id"), unique=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"))
    # A user's entry, or a group's (group.created/updated/deleted).
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    group_id: Mapped[uuid.UUID | None]
    # When the change happened (the event), and when the log learnt of it.
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    # created, updated, deactivated, reactivated, deleted, restored
    action: Mapped[str] = mapped_column(String(16))
    actor_idp: Mapped[str] = mapped_column(String(16))
    actor_credential_id: Mapped[uuid.UUID | None]
    actor_user_agent: Mapped[str | None]
    # The target as it was named at the time, so the entry reads on its own.
    target_user_name: Mapped[str | None]
    target_email: Mapped[str | None]
    target_group_name: Mapped[str | None] = mapped_column(String(256))
    changes: Mapped[dict[str, Any]] = mapped_column(JSONB)
    request_id: Mapped[str | None]
