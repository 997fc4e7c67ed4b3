"""Operator actions behind the CLI: audit reads, dead letters, checkouts, tenant settings.

Synchronous (the CLI), and never talking to Celery: replaying a dead letter
puts its event back in the outbox, and the relay publishes it again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.orm import Session

from gateway.addresses import is_email_address
from gateway.tenancy import OperatorError, tenant_id_for
from models.audit import AuditEntry
from models.checkouts import CheckoutRefused, check_in, check_out
from models.outbox import ProvisioningEvent, RunStatus, SideEffectRun
from models.tenants import Tenant
from models.text import fold
from models.users import User


def set_notify_email(conn: Connection, slug: str, address: str | None) -> None:
    if address is not None and not is_email_address(address):
        raise OperatorError(f"{address!r} is not an email address.")
    tenant_id = tenant_id_for(conn, slug)
    conn.execute(update(Tenant).where(Tenant.id == tenant_id).values(notify_email=address))


def set_guard(
    conn: Connection,
    slug: str,
    guard_percent: int | None = None,
    guard_min_users: int | None = None,
    guard_window_minutes: int | None = None,
) -> None:
    values = {
        name: value
        for name, value in (
            ("guard_percent", guard_percent),
            ("guard_min_users", guard_min_users),
            ("guard_window_minutes", guard_window_minutes),
        )
        if value is not None
    }
    if any(value < 1 for value in values.values()) or values.get("guard_percent", 1) > 100:
        raise OperatorError("Guard settings are positive whole numbers; the percent is 1-100.")
    tenant_id = tenant_id_for(conn, slug)
    conn.execute(update(Tenant).where(Tenant.id == tenant_id).values(**values))


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


@dataclass(frozen=True)
class DeadLetter:
    id: str  # "EVENT_ID:EFFECT", the side effect's task id
    tenant: str
    kind: str
    attempts: int
    error: str | None
    failed_at: datetime


def failed_side_effects(conn: Connection) -> list[DeadLetter]:
    rows = conn.execute(
        select(
            SideEffectRun.event_id,
            SideEffectRun.effect,
            SideEffectRun.attempts,
            SideEffectRun.error,
            SideEffectRun.finished_at,
            ProvisioningEvent.kind,
            Tenant.slug,
        )
        .join(ProvisioningEvent, ProvisioningEvent.id == SideEffectRun.event_id)
        .join(Tenant, Tenant.id == ProvisioningEvent.tenant_id)
        .where(SideEffectRun.status == RunStatus.failed.value)
        .order_by(SideEffectRun.finished_at)
    ).all()
    return [
        DeadLetter(f"{r.event_id}:{r.effect}", r.slug, r.kind, r.attempts, r.error, r.finished_at)
        for r in rows
    ]


def retry_side_effects(conn: Connection, ids: list[str] | None) -> int:
    """Put dead letters back in the outbox (all of them when ``ids`` is None)."""
    failed = SideEffectRun.status == RunStatus.failed.value
    if ids is None:
        targets = conn.execute(
            select(SideEffectRun.event_id, SideEffectRun.effect).where(failed)
        ).all()
    else:
        targets = []
        for one in ids:
            number, _, effect = one.partition(":")
            if not number.isdigit() or not effect:
                raise OperatorError(f"{one!r} is not a dead-letter id (EVENT_ID:EFFECT).")
            found = conn.execute(
                select(SideEffectRun.event_id, SideEffectRun.effect).where(
                    failed, SideEffectRun.event_id == int(number), SideEffectRun.effect == effect
                )
            ).first()
            if found is None:
                raise OperatorError(
                    f"No failed side effect {one!r}; see `simpleams events failed`."
                )
            targets.append(found)
    for target_event, target_effect in targets:
        conn.execute(
            delete(SideEffectRun).where(
                SideEffectRun.event_id == target_event,
                SideEffectRun.effect == target_effect,
                failed,
            )
        )
    event_ids = sorted({target_event for target_event, _ in targets})
    if event_ids:
        # Back in the outbox: the relay publishes every effect again; the ones
        # already done see their run row and skip.
        conn.execute(
            update(ProvisioningEvent)
            .where(ProvisioningEvent.id.in_(event_ids))
            .values(published_at=None, settled_at=None)
        )
    return len(targets)


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


def release_guard(conn: Connection, slug: str) -> int:
    """Apply the deactivations the mass-deprovision guard held; returns how many events."""
    tenant_id = tenant_id_for(conn, slug)
    held = (
        conn.execute(
            select(SideEffectRun.event_id)
            .join(ProvisioningEvent, ProvisioningEvent.id == SideEffectRun.event_id)
            .where(
                ProvisioningEvent.tenant_id == tenant_id,
                SideEffectRun.status == RunStatus.held.value,
            )
        )
        .scalars()
        .all()
    )
    conn.execute(
        update(Tenant)
        .where(Tenant.id == tenant_id)
        .values(guard_tripped_at=None, guard_released_at=func.now())
    )
    event_ids = sorted(set(held))
    if event_ids:
        conn.execute(
            delete(SideEffectRun).where(
                SideEffectRun.event_id.in_(event_ids),
                SideEffectRun.status == RunStatus.held.value,
            )
        )
        # Back in the outbox; the guard no longer counts what was released.
        conn.execute(
            update(ProvisioningEvent)
            .where(ProvisioningEvent.id.in_(event_ids))
            .values(published_at=None, settled_at=None)
        )
    return len(event_ids)
