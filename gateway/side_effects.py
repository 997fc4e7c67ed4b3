"""The operator's hand on side effects: dead letters and what the guard held.

Behind ``simpleams events`` and ``simpleams guard release`` and the activity
page's Retry and Release buttons (the page runs these through ``run_sync``):
one implementation for the command line and the admin pages. Synchronous,
and never talking to Celery: a replayed dead letter or a released hold goes
back into the outbox, and the relay publishes it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, delete, func, select, update

from gateway.tenancy import OperatorError, tenant_id_for
from models.outbox import ProvisioningEvent, RunStatus, SideEffectRun
from models.tenants import Tenant


@dataclass(frozen=True)
class DeadLetter:
    id: str  # "EVENT_ID:EFFECT", the side effect's task id
    tenant: str
    kind: str
    attempts: int
    error: str | None
    failed_at: datetime


def dead_letters(*columns: Any) -> Select[Any]:
    """The failed side effects (dead letters): their run, their event's kind and
    ``columns``. The one query the CLI (every tenant's) and the activity page
    (one tenant's, with whom each is about) narrow and order."""
    return (
        select(
            SideEffectRun.event_id,
            SideEffectRun.effect,
            SideEffectRun.attempts,
            SideEffectRun.error,
            SideEffectRun.finished_at,
            ProvisioningEvent.kind,
            *columns,
        )
        .join(ProvisioningEvent, ProvisioningEvent.id == SideEffectRun.event_id)
        .where(SideEffectRun.status == RunStatus.failed.value)
    )


def failed_side_effects(conn: Connection) -> list[DeadLetter]:
    rows = conn.execute(
        dead_letters(Tenant.slug)
        .join(Tenant, Tenant.id == ProvisioningEvent.tenant_id)
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
