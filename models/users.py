"""Staff users: the SimpleAMS person record that SCIM provisions.

Two identities live on one row on purpose:

- ``id`` is the staff record: it owns checkout history and the audit trail and
  never changes.
- ``scim_id`` is the SCIM resource id the IdP knows. A DELETE retires it for
  good (RFC 7644 §3.6: the id must keep answering 404); a later re-hire of the
  same person gets a new ``scim_id`` on the same staff row.

``attributes`` is the SCIM representation (core + enterprise, wire names,
without ``id``/``meta``) and the source of truth for everything SCIM reads.
The scalar columns are derived from it on every write (see
``gateway/scim/schema.py::indexed_columns``) so the lookups IdPs make on every
user, and the staff list, are plain index scans.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at, uuid_pk


def primary_email(emails: Any) -> str | None:
    """The email that is SimpleAMS's primary key, of a SCIM ``emails`` value:
    the primary address, else the work one, else the first. The one rule: the
    gateway derives ``users.email`` with it, the workers name a leaver with it."""
    if not isinstance(emails, list):
        return None
    valid = [e for e in emails if isinstance(e, dict) and e.get("value")]
    for chosen in (
        next((e for e in valid if e.get("primary")), None),
        next((e for e in valid if str(e.get("type", "")).lower() == "work"), None),
        valid[0] if valid else None,
    ):
        if chosen is not None:
            return str(chosen["value"])
    return None


class Role(enum.StrEnum):
    staff = "staff"
    admin = "admin"


class Source(enum.StrEnum):
    okta = "okta"
    entra = "entra"
    scim = "scim"  # another SCIM client we could not name from its User-Agent
    manual = "manual"


# SQL expressions the staff list sorts and searches by, shared by the indexes
# below and the queries that must match them exactly to use them.
STAFF_SORT_KEY = "lower(coalesce(display_name, user_name))"
STAFF_SEARCH_TEXT = (
    "lower(coalesce(display_name, '') || ' ' || coalesce(given_name, '') || ' ' || "
    "coalesce(family_name, '') || ' ' || coalesce(email, '') || ' ' || user_name)"
)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        # RFC 7643: userName and emails are caseExact=false, so uniqueness is
        # on their folded keys (models/text.py). Only live users count: the
        # IdP cannot see users it deleted, so they must not block its writes
        # (a re-hire finds them by a lookup instead, gateway/scim/store.py::create).
        Index(
            "uq_users_tenant_username",
            "tenant_id",
            "user_name_key",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index(
            "uq_users_tenant_email",
            "tenant_id",
            "email_key",
            unique=True,
            postgresql_where=text("email_key IS NOT NULL AND deleted_at IS NULL"),
        ),
        # A re-hire looks deleted users up by the same keys; they are few.
        # Each index can serve only its own key's probe: its predicate names
        # the key (implied by `key = …`, and by nothing else), and the key
        # leads. Otherwise, with statistics that say there are no deleted
        # users yet, the planner may read one index for both probes, and
        # later scan every deleted user of the tenant on every create.
        Index(
            "ix_users_deleted_username",
            "user_name_key",
            "tenant_id",
            postgresql_where=text("deleted_at IS NOT NULL AND user_name_key IS NOT NULL"),
        ),
        Index(
            "ix_users_deleted_email",
            "email_key",
            "tenant_id",
            postgresql_where=text("deleted_at IS NOT NULL AND email_key IS NOT NULL"),
        ),
        Index("ix_users_tenant_external_id", "tenant_id", "external_id"),
        # `emails eq "x"` (Entra) matches any of the user's addresses.
        Index("ix_users_email_values", "email_values", postgresql_using="gin"),
        # Stable paging order for SCIM lists (creation order, keyset).
        Index(
            "ix_users_live_created",
            "tenant_id",
            "created_at",
            "id",
            # Only live users: SCIM never lists deleted ones, and a partial
            # index lets a deep startIndex skip rows without reading the heap.
            postgresql_where=text("deleted_at IS NULL"),
        ),
        # The staff list (gateway/admin/staff.py): keyset pages in name order,
        # small partial indexes for the rare statuses, and a trigram index for
        # "search by name or email" as a substring.
        Index("ix_users_staff_order", "tenant_id", text(STAFF_SORT_KEY), "id"),
        Index(
            "ix_users_staff_deactivated",
            "tenant_id",
            text(STAFF_SORT_KEY),
            "id",
            postgresql_where=text("NOT active AND deleted_at IS NULL"),
        ),
        Index(
            "ix_users_staff_deleted",
            "tenant_id",
            text(STAFF_SORT_KEY),
            "id",
            postgresql_where=text("deleted_at IS NOT NULL"),
        ),
        # The status tabs' counts, answered from the index alone (no heap reads).
        Index("ix_users_staff_status_counts", "tenant_id", "active", "deleted_at"),
        Index(
            "ix_users_staff_search",
            text(STAFF_SEARCH_TEXT),
            postgresql_using="gin",
            postgresql_ops={STAFF_SEARCH_TEXT: "gin_trgm_ops"},
        ),
        CheckConstraint("role IN ('staff', 'admin')", name="role_known"),
    )

    id: Mapped[uuid_pk]
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    scim_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    user_name: Mapped[str]
    # userName and the primary email folded (models/text.py): what uniqueness
    # and every case-insensitive lookup compare.
    user_name_key: Mapped[str] = mapped_column(Text)
    external_id: Mapped[str | None]
    email: Mapped[str | None]
    email_key: Mapped[str | None] = mapped_column(Text)
    email_values: Mapped[list[str]] = mapped_column(
        ARRAY(String), server_default=text("'{}'::varchar[]")
    )
    display_name: Mapped[str | None]
    given_name: Mapped[str | None]
    family_name: Mapped[str | None]
    department: Mapped[str | None]
    title: Mapped[str | None]
    role: Mapped[str] = mapped_column(String(16), server_default=Role.staff.value)
    active: Mapped[bool] = mapped_column(server_default=text("true"))
    # Set when the IdP DELETEs the user: deactivated and hidden from SCIM, never removed.
    deleted_at: Mapped[datetime | None]
    # Maintained by the checkout-lock worker from active/deleted_at (models/checkouts.py).
    checkout_locked: Mapped[bool] = mapped_column(server_default=text("false"))
    source: Mapped[str] = mapped_column(String(16), server_default=Source.manual.value)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    # ``attributes`` with every caseExact=false string folded (models/text.py):
    # what SCIM filters and sortBy read, so that they compare folded text.
    folded: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    # meta.version: bumped on every write, rendered as a weak ETag.
    version: Mapped[int] = mapped_column(server_default=text("1"))
    created_at: Mapped[created_at]
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LiveUserCount(Base):
    """How many live (not deleted) users a tenant has, in up to 16 slots to sum.

    Kept by statement-level triggers on users, in the transaction of the
    change (migration 0008), whoever writes: the gateway, the CLI, SQL.
    Each connection adds to its own slot (its backend pid modulo 16), so
    concurrent creates of one tenant do not queue on one row. An unfiltered
    SCIM listing reads its totalResults here instead of counting the
    directory on every page.
    """

    __tablename__ = "tenant_live_users"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    slot: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    live: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
