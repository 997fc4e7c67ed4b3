"""Provisioning events: the outbox, and the contract between gateway and workers.

Every SCIM write inserts its event rows in the same transaction as the user
row (``emit``), so an acknowledged write always has its events: nothing the
IdP was told succeeded can lose its side effects. Delivery to the workers is
at least once (the relay may publish an event twice after a crash), so every
consumer must be idempotent, keyed by ``event id + effect``.

Event kinds are past-tense facts. A DELETE from the IdP is ``user.deleted``
and is handled as a soft deactivation, never a hard delete.

Lifecycle of an event: written unpublished by the gateway; claimed by the
relay, which publishes, per side effect, one Celery task per batch of events
(``workers/routing.py``) and sets ``published_at``; each task records a
``SideEffectRun`` per event (done, or failed = a dead letter) in the same
transaction as its effect; the task that completes an event's last effect
sets its ``settled_at``. The relay's sweep re-publishes
events published long ago and still unsettled (a task lost with Redis).
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    bindparam,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at


class EventKind(enum.StrEnum):
    user_created = "user.created"
    user_updated = "user.updated"
    user_deactivated = "user.deactivated"
    user_reactivated = "user.reactivated"
    user_deleted = "user.deleted"
    user_restored = "user.restored"
    # IdP groups (models/groups.py): audited; the roles they set are user events.
    group_created = "group.created"
    group_updated = "group.updated"
    group_deleted = "group.deleted"


class Effect(enum.StrEnum):
    """The side effects an event can fan out to; each is one Celery task."""

    audit = "audit"
    checkout_lock = "checkout_lock"
    notify = "notify"


# The fan-out table, part of the contract: which side effects each event kind
# has. Every event is audited and considered for notification; the lock
# follows every change that can flip active/deleted (a create can arrive
# inactive). Workers route by it; the admin pages show what is still pending.
EFFECTS: dict[EventKind, tuple[Effect, ...]] = {
    EventKind.user_created: (Effect.audit, Effect.checkout_lock, Effect.notify),
    EventKind.user_updated: (Effect.audit, Effect.notify),
    EventKind.user_deactivated: (Effect.audit, Effect.checkout_lock, Effect.notify),
    EventKind.user_reactivated: (Effect.audit, Effect.checkout_lock, Effect.notify),
    EventKind.user_deleted: (Effect.audit, Effect.checkout_lock, Effect.notify),
    EventKind.user_restored: (Effect.audit, Effect.checkout_lock, Effect.notify),
    EventKind.group_created: (Effect.audit,),
    EventKind.group_updated: (Effect.audit,),
    EventKind.group_deleted: (Effect.audit,),
}


class RunStatus(enum.StrEnum):
    done = "done"
    failed = "failed"  # a dead letter: listed and replayed with `simpleams events`
    held = "held"  # held by the mass-deprovision guard until an admin releases it


class ProvisioningEvent(Base):
    __tablename__ = "provisioning_events"
    __table_args__ = (
        # The relay claims unpublished events oldest first.
        Index(
            "ix_provisioning_events_unpublished",
            "id",
            postgresql_where=text("published_at IS NULL"),
        ),
        # The sweep looks for published events whose effects have not all finished.
        Index(
            "ix_provisioning_events_unsettled",
            "published_at",
            postgresql_where=text("published_at IS NOT NULL AND settled_at IS NULL"),
        ),
        Index("ix_provisioning_events_user", "user_id", "id"),
        CheckConstraint("user_id IS NOT NULL OR group_id IS NOT NULL", name="about_someone"),
        Index("ix_provisioning_events_tenant_time", "tenant_id", "occurred_at"),
        # "Side effects pending" on the activity page, per tenant, without
        # reading its whole history; events leave the index once settled.
        Index(
            "ix_provisioning_events_tenant_unsettled",
            "tenant_id",
            "id",
            postgresql_where=text("settled_at IS NULL"),
        ),
        # The activity chart's side-effect backlog, minute by minute: how many
        # of a tenant's events settled since a moment (gateway/admin/sync_chart.py).
        Index(
            "ix_provisioning_events_tenant_settled",
            "tenant_id",
            "settled_at",
            postgresql_where=text("settled_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    # The user the event is about; None for a group's own events.
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The group a group event is about. No foreign key: the event, and its
    # audit entry, outlive a group the IdP deletes.
    group_id: Mapped[uuid.UUID | None]
    kind: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[created_at]
    # {"attribute": [before, after]}, wire names.
    changes: Mapped[dict[str, Any]]
    # Attributes the IdP sent that we do not model (an admin's custom mapping):
    # ignored rather than rejected, and noted here.
    ignored_attributes: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    actor_idp: Mapped[str] = mapped_column(String(16))
    actor_credential_id: Mapped[uuid.UUID | None]
    actor_user_agent: Mapped[str | None]
    request_id: Mapped[str | None]
    published_at: Mapped[datetime | None]
    publish_count: Mapped[int] = mapped_column(server_default=text("0"))
    settled_at: Mapped[datetime | None]


class SideEffectRun(Base):
    """One side effect of one event, finished: the idempotency key and the dead-letter list."""

    __tablename__ = "side_effect_runs"
    __table_args__ = (
        # Dead letters and held effects, for the activity page and the CLI:
        # few rows among millions of done ones.
        Index(
            "ix_side_effect_runs_unfinished",
            "status",
            "event_id",
            postgresql_where=text("status <> 'done'"),
        ),
    )

    event_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("provisioning_events.id", ondelete="CASCADE"), primary_key=True
    )
    effect: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(server_default=text("1"))
    error: Mapped[str | None]
    finished_at: Mapped[created_at]


@dataclass(frozen=True)
class Actor:
    """Who made a change, recorded on every provisioning event it causes.

    :param idp: ``okta``, ``entra``, ``scim`` (another SCIM client) or
        ``admin`` (the admin pages and the ``simpleams`` command).
    :param user_agent: the IdP's User-Agent, or the admin tool's name.
    """

    tenant_id: uuid.UUID
    credential_id: uuid.UUID | None
    idp: str
    user_agent: str | None
    request_id: str | None

    @classmethod
    def operator(cls, tenant_id: uuid.UUID, via: str) -> Actor:
        """An administrator, through the admin pages or the command line (``via``)."""
        return cls(tenant_id, credential_id=None, idp="admin", user_agent=via, request_id=None)


# Every column an event is written with, each from an ``event_<name>`` parameter.
_EVENT_COLUMNS = (
    "tenant_id",
    "user_id",
    "group_id",
    "kind",
    "changes",
    "ignored_attributes",
    "actor_idp",
    "actor_credential_id",
    "actor_user_agent",
    "request_id",
)


def _event_parameter(name: str) -> Any:
    return bindparam(f"event_{name}", type_=ProvisioningEvent.__table__.c[name].type)


def event_parameters(
    actor: Actor,
    kind: EventKind,
    changes: dict[str, Any],
    *,
    user_id: uuid.UUID | None = None,
    group_id: uuid.UUID | None = None,
    ignored_attributes: list[str] | None = None,
) -> dict[str, Any]:
    """One event, about a user or a group: the parameters of ``EVENT_INSERT``
    and ``event_insert()``. The one place an event's row is composed."""
    return {
        "event_tenant_id": actor.tenant_id,
        "event_user_id": user_id,
        "event_group_id": group_id,
        "event_kind": kind.value,
        "event_changes": changes,
        "event_ignored_attributes": ignored_attributes or [],
        "event_actor_idp": actor.idp,
        "event_actor_credential_id": actor.credential_id,
        "event_actor_user_agent": actor.user_agent,
        "event_request_id": actor.request_id,
    }


# Events written on their own: ``conn.execute(EVENT_INSERT, [event_parameters(...), ...])``.
EVENT_INSERT = insert(ProvisioningEvent).values(
    {name: _event_parameter(name) for name in _EVENT_COLUMNS}
)


def event_insert(after: CTE | None = None) -> CTE:
    """The INSERT of one event as a CTE, to ride along with the write it records.

    ``write.add_cte(event_insert())``, executed with ``event_parameters(...)``
    among its parameters, stores the change and its event in one statement:
    one round trip instead of two, and they commit (or fail) together. Every
    value is an explicit ``event_*`` parameter, never a column name, so the
    write's own parameters cannot leak into the event.

    :param after: a data-modifying CTE that may write nothing (an INSERT …
        SELECT … WHERE); the event is inserted once per row it returns, so
        a write that did not happen records no event.
    """
    if after is None:
        return EVENT_INSERT.cte("provisioning_event")
    # The psycopg dialect casts each typed parameter (``%(event_kind)s::VARCHAR``),
    # so PostgreSQL knows their types in a SELECT list too.
    selected = select(*(_event_parameter(name) for name in _EVENT_COLUMNS)).select_from(after)
    return insert(ProvisioningEvent).from_select(_EVENT_COLUMNS, selected).cte("provisioning_event")
