"""IdP groups (SCIM Groups, RFC 7643 §4.2) and their members.

A group is the IdP's (Okta Push Groups, Entra group provisioning); it holds
users of its own tenant only. Membership is one row per (group, user), so
adding or removing members costs the number of changes, never the size of
the group: a PATCH of 1,000 changes on a 100,000-member group touches 1,000
rows. Members are users by their staff row (``users.id``); SCIM speaks of
them by the user's SCIM id, resolved on every write. A DELETE of a group is
a real delete (a group owns no history: the audit trail lives on users and
events); a DELETE of a user from the IdP removes them from every group.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at, uuid_pk


class Group(Base):
    __tablename__ = "groups"
    __table_args__ = (
        # RFC 7643 §4.2 leaves displayName's uniqueness to the service
        # provider; Okta and Entra both match an existing group by it, so it
        # is unique per tenant, case-insensitively (its folded key, models/text.py).
        Index("uq_groups_tenant_display_name", "tenant_id", "display_name_key", unique=True),
        Index("ix_groups_tenant_external_id", "tenant_id", "external_id"),
        # Paging in creation order (startIndex and cursors).
        Index("ix_groups_tenant_created", "tenant_id", "created_at", "id"),
    )

    # The SCIM id: groups have no second identity, unlike users.
    id: Mapped[uuid_pk]
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    display_name: Mapped[str] = mapped_column(String(256))
    # display_name folded (models/text.py): what filters, ordering and uniqueness compare.
    display_name_key: Mapped[str] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[created_at]
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Bumped by every write, membership changes included: the ETag.
    version: Mapped[int] = mapped_column(BigInteger, server_default=text("1"))


class GroupMember(Base):
    __tablename__ = "group_members"
    __table_args__ = (
        # The user's groups attribute, and removing a deleted user everywhere.
        Index("ix_group_members_user", "user_id", "group_id"),
    )

    group_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    added_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # The member's "display" as the IdP sent it (Okta sends the login), shown
    # back as sent; without one, the user's displayName or userName is shown.
    display: Mapped[str | None] = mapped_column(String(256))
