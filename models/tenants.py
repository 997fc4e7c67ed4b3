"""Tenants, their plan, and the SCIM bearer credentials they own.

A credential stores only the SHA-256 of its token. Tokens carry 240 bits of
randomness, so a fast hash is enough: there is nothing to brute-force, and a
fast hash keeps the per-request lookup cheap.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at, uuid_pk


class Plan(enum.StrEnum):
    free = "free"
    pro = "pro"
    business = "business"

    @property
    def includes_scim(self) -> bool:
        # The setup guide: "SCIM is a Business-plan integration."
        return self is Plan.business


class Tenant(Base):
    __tablename__ = "tenants"
    __table_args__ = (
        CheckConstraint("plan IN ('free', 'pro', 'business')", name="plan_known"),
        CheckConstraint("slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'", name="slug_is_dns_label"),
    )

    id: Mapped[uuid_pk]
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str]
    plan: Mapped[str] = mapped_column(String(16), server_default=Plan.free.value)
    scim_enabled: Mapped[bool] = mapped_column(server_default=text("false"))
    # Where leaver alerts and provisioning digests go; none are sent without it.
    notify_email: Mapped[str | None]
    # Mass-deprovision guard (models/guard.py): more deactivations than
    # max(guard_min_users, guard_percent % of users) within guard_window_minutes
    # holds the lock and notification effects of the further ones.
    guard_percent: Mapped[int] = mapped_column(server_default=text("10"))
    guard_min_users: Mapped[int] = mapped_column(server_default=text("10"))
    guard_window_minutes: Mapped[int] = mapped_column(server_default=text("60"))
    guard_tripped_at: Mapped[datetime | None]
    guard_released_at: Mapped[datetime | None]
    created_at: Mapped[created_at]


class ScimCredential(Base):
    __tablename__ = "scim_credentials"
    __table_args__ = (
        # One live token per tenant: rotation revokes the old one in the same
        # transaction that creates the new one.
        Index(
            "uq_scim_credentials_live_per_tenant",
            "tenant_id",
            unique=True,
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[uuid_pk]
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the token, safe to show an admin ("sams_scim_AbC…").
    token_prefix: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[created_at]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
