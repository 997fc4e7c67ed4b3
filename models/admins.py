"""Tenant admins who sign in to the admin pages, and their sessions.

Passwords are stored as argon2id hashes (``gateway/admin/passwords.py``).
Sessions live here rather than in a signed cookie so that signing out, or an
operator deleting a session, takes effect at once; the cookie carries a
random session token and the table keeps only its SHA-256, like SCIM tokens.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at, uuid_pk


class Admin(Base):
    __tablename__ = "admins"
    __table_args__ = (
        Index("uq_admins_tenant_email", "tenant_id", func.lower(text("email")), unique=True),
    )

    id: Mapped[uuid_pk]
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[created_at]
    last_sign_in_at: Mapped[datetime | None]


class AdminSession(Base):
    __tablename__ = "admin_sessions"
    __table_args__ = (Index("ix_admin_sessions_admin", "admin_id"),)

    id: Mapped[uuid_pk]
    admin_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("admins.id", ondelete="CASCADE"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The synchronizer token every form of this session carries.
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[created_at]
    last_seen_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime]
