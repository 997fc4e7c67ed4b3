"""Side effect: the audit log entry of a provisioning event."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from models.audit import AuditEntry
from models.event_kinds import EVENT_KINDS
from models.groups import Group
from models.outbox import Effect, ProvisioningEvent
from models.users import User
from workers.app import app
from workers.effects import InTransaction, PermanentError, effect_task


def record_entries(session: Session, events: list[ProvisioningEvent]) -> None:
    """Write one entry per event; the user or group is named as they are now
    (renames are in ``changes``; a deleted group by its last name)."""
    names = {
        row.id: row
        for row in session.execute(
            select(User.id, User.user_name, User.email).where(
                User.id.in_({event.user_id for event in events if event.user_id})
            )
        )
    }
    group_names = dict(
        session.execute(
            select(Group.id, Group.display_name).where(
                Group.id.in_({event.group_id for event in events if event.group_id})
            )
        ).all()
    )
    entries: list[dict[str, Any]] = []
    for event in events:
        target: dict[str, Any] = {
            "user_id": event.user_id,
            "group_id": event.group_id,
            "target_user_name": None,
            "target_email": None,
            "target_group_name": None,
        }
        if event.user_id is not None:
            user = names.get(event.user_id)
            if user is None:  # users are never deleted (soft deactivation only)
                raise PermanentError(f"event {event.id}: user {event.user_id} does not exist")
            target |= {"target_user_name": user.user_name, "target_email": user.email}
        else:
            renamed = (event.changes or {}).get("displayName") or [None, None]
            current = group_names.get(event.group_id) if event.group_id else None
            target["target_group_name"] = current or renamed[0]
        entries.append(
            {
                "event_id": event.id,
                "tenant_id": event.tenant_id,
                **target,
                "occurred_at": event.occurred_at,
                "action": EVENT_KINDS[event.kind].audit_action,
                "actor_idp": event.actor_idp,
                "actor_credential_id": event.actor_credential_id,
                "actor_user_agent": event.actor_user_agent,
                "changes": event.changes,
                "request_id": event.request_id,
            }
        )
    # One INSERT … VALUES for the batch (SQLAlchemy's insertmanyvalues).
    session.execute(insert(AuditEntry), entries)


AUDIT = InTransaction(Effect.audit, record_entries)
record = effect_task(app, AUDIT)
