"""A staff member's history, for the operator: the audit log and checkouts.

Behind ``simpleams audit``, ``simpleams checkout`` and ``simpleams checkin``
(and the tests that need a checkout). Synchronous: the command line.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from gateway.tenancy import OperatorError, tenant_id_for
from models.audit import AuditEntry
from models.checkouts import CheckoutRefused, check_in, check_out
from models.text import fold
from models.users import User


def audit_entries(
    conn: Connection, slug: str, user_email: str | None, since: datetime | None
) -> Iterator[dict[str, Any]]:
    tenant_id = tenant_id_for(conn, slug)
    query = select(AuditEntry).where(AuditEntry.tenant_id == tenant_id)
    if user_email is not None:
        user_ids = select(User.id).where(
            User.tenant_id == tenant_id, User.email_key == fold(user_email)
        )
        query = query.where(AuditEntry.user_id.in_(user_ids))
    if since is not None:
        query = query.where(AuditEntry.occurred_at >= since)
    for entry in Session(bind=conn).scalars(query.order_by(AuditEntry.occurred_at, AuditEntry.id)):
        yield {
            "time": entry.occurred_at.isoformat(),
            "action": entry.action,
            "user": entry.target_email or entry.target_user_name,
            "user_id": str(entry.user_id) if entry.user_id else None,
            "group": entry.target_group_name,
            "group_id": str(entry.group_id) if entry.group_id else None,
            "actor": entry.actor_idp,
            "credential_id": str(entry.actor_credential_id) if entry.actor_credential_id else None,
            "user_agent": entry.actor_user_agent,
            "changes": entry.changes,
            "request_id": entry.request_id,
            "event_id": entry.event_id,
        }


def record_checkout(conn: Connection, slug: str, email: str, tag: str) -> uuid.UUID:
    tenant_id = tenant_id_for(conn, slug)
    try:
        return check_out(Session(bind=conn), tenant_id, email, tag).id
    except CheckoutRefused as exc:
        raise OperatorError(str(exc)) from None


def record_checkin(conn: Connection, slug: str, tag: str) -> uuid.UUID:
    tenant_id = tenant_id_for(conn, slug)
    try:
        return check_in(Session(bind=conn), tenant_id, tag).id
    except CheckoutRefused as exc:
        raise OperatorError(str(exc)) from None
