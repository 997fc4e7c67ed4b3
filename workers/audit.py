"""Side effect: the audit log entry of a provisioning event."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from models.audit import AuditEntry
from models.outbox import Effect, ProvisioningEvent
from models.users import User
from workers.app import app
from workers.effects import EffectTask, PermanentError, event_ids_of, run_batch


def record_entries(session: Session, events: list[ProvisioningEvent]) -> None:
    """Write one entry per event; the user is named as they are now (renames are in ``changes``)."""
    names = {
        row.id: row
        for row in session.execute(
            select(User.id, User.user_name, User.email).where(
                User.id.in_({event.user_id for event in events})
            )
        )
    }
    entries: list[dict[str, Any]] = []
    for event in events:
        user = names.get(event.user_id)
        if user is None:  # users are never deleted (soft deactivation only)
            raise PermanentError(f"event {event.id}: user {event.user_id} does not exist")
        entries.append(
            {
                "event_id": event.id,
                "tenant_id": event.tenant_id,
                "user_id": event.user_id,
                "occurred_at": event.occurred_at,
                "action": event.kind.removeprefix("user."),
                "actor_idp": event.actor_idp,
                "actor_credential_id": event.actor_credential_id,
                "actor_user_agent": event.actor_user_agent,
                "target_user_name": user.user_name,
                "target_email": user.email,
                "changes": event.changes,
                "request_id": event.request_id,
            }
        )
    # One INSERT … VALUES for the batch (SQLAlchemy's insertmanyvalues).
    session.execute(insert(AuditEntry), entries)


@app.task(name="simpleams.audit.record", base=EffectTask, effect=Effect.audit)
def record(event_ids: list[int] | None = None, event_id: int | None = None) -> int:
    return run_batch(
        event_ids_of({"event_ids": event_ids, "event_id": event_id}), Effect.audit, record_entries
    )
