"""Side effect: the audit log entry of a provisioning event."""

from __future__ import annotations

from sqlalchemy.orm import Session

from models.audit import AuditEntry
from models.outbox import Effect, ProvisioningEvent
from models.users import User
from workers.app import app
from workers.effects import EffectTask, PermanentError, run_once


def record_entry(session: Session, event: ProvisioningEvent) -> None:
    """Write the entry; the user is named as they are now (renames are in ``changes``)."""
    user = session.get(User, event.user_id)
    if user is None:  # users are never deleted (soft deactivation only)
        raise PermanentError(f"event {event.id}: user {event.user_id} does not exist")
    session.add(
        AuditEntry(
            event_id=event.id,
            tenant_id=event.tenant_id,
            user_id=event.user_id,
            occurred_at=event.occurred_at,
            action=event.kind.removeprefix("user."),
            actor_idp=event.actor_idp,
            actor_credential_id=event.actor_credential_id,
            actor_user_agent=event.actor_user_agent,
            target_user_name=user.user_name,
            target_email=user.email,
            changes=event.changes,
            request_id=event.request_id,
        )
    )


@app.task(name="simpleams.audit.record", base=EffectTask, effect=Effect.audit)
def record(event_id: int) -> bool:
    return run_once(event_id, Effect.audit, record_entry)
