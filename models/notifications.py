"""Emails to a tenant's admins, recorded before they are sent.

A ``Notification`` row is written (status ``pending``) and committed before
the SMTP conversation, then marked ``sent``. A task that runs twice finds the
row and does not send again; a worker that dies between sending and marking
sends again on retry (email is at least once: a duplicate beats a leaver
alert that never arrives). Two copies of a task running *at the same time*
(a redelivery, a sweep re-publish) do not both send: the sender takes a
short lease (``sending_until``) in the committed transaction before SMTP,
and the other copy leaves the email to it; a lease that outlives its sender
(a crash mid-send) expires and the email is sent again.

Joiners and ordinary changes are not emailed one by one: each becomes a
``DigestItem``, and a periodic task folds a tenant's pending items into one
digest email at most every few minutes.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at, uuid_pk


class NotificationKind(enum.StrEnum):
    leaver_with_assets = "leaver_with_assets"
    digest = "digest"
    guard_tripped = "guard_tripped"
    new_admin = "new_admin"


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        # One leaver alert per event and recipient: the idempotency key.
        Index(
            "uq_notifications_event_recipient",
            "event_id",
            "kind",
            "recipient",
            unique=True,
            postgresql_where=text("event_id IS NOT NULL"),
        ),
        Index("ix_notifications_tenant_kind_time", "tenant_id", "kind", "created_at"),
    )

    id: Mapped[uuid_pk]
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("provisioning_events.id", ondelete="CASCADE")
    )
    recipient: Mapped[str]
    subject: Mapped[str]
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    created_at: Mapped[created_at]
    sent_at: Mapped[datetime | None]
    # Held by the task sending this email right now (see the module docstring).
    sending_until: Mapped[datetime | None]


class DigestItem(Base):
    """An event waiting to be summarised in the tenant's next digest."""

    __tablename__ = "digest_items"
    __table_args__ = (
        Index(
            "ix_digest_items_pending",
            "tenant_id",
            postgresql_where=text("notification_id IS NULL"),
        ),
    )

    event_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("provisioning_events.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    actor_idp: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[created_at]
    notification_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("notifications.id"))
