"""The mass-deprovision guard.

A compromised IdP or a leaked token could deactivate a whole company in one
burst. The IdP still gets its normal answers (the users are deactivated in
SCIM), but once more of a tenant's staff have been locked out (deactivated,
deleted, or re-hired inactive) within the window than the tenant's threshold
allows (a share of the staff there before the window), the *further*
deactivations' checkout-lock and notification effects are held (not
applied) until an admin runs ``simpleams guard release SLUG``; the admins
are emailed at once. Held users keep checking out as before.

Deterministic whatever order tasks run in: an event is counted against the
events before it (by id), never against later ones.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, distinct, func, or_, select
from sqlalchemy.orm import Session

from models.outbox import EventKind, ProvisioningEvent
from models.tenants import Tenant
from models.users import User

# Event kinds that always end with the user locked out.
LEAVING = (EventKind.user_deactivated.value, EventKind.user_deleted.value)


def leaving() -> ColumnElement[bool]:
    """The events that end with a user locked out, whichever kind carries it:
    a deactivation, a DELETE, and a re-hire that comes back inactive (its event
    always records ``active`` as ``[false, <after>]``, gateway/scim/store.py).
    Without the last, a DELETE then a POST of the same person with
    ``"active": false`` locked a whole company out past the guard."""
    restored_inactive = and_(
        ProvisioningEvent.kind == EventKind.user_restored.value,
        ProvisioningEvent.changes["active"][1].as_boolean().is_(False),
    )
    return or_(ProvisioningEvent.kind.in_(LEAVING), restored_inactive)


def is_leaving(event: ProvisioningEvent) -> bool:
    """``leaving()`` for one event in hand."""
    if event.kind in LEAVING:
        return True
    after = (event.changes or {}).get("active", [None, None])
    return event.kind == EventKind.user_restored.value and after[-1] is False


def holds(session: Session, event: ProvisioningEvent) -> bool:
    """Whether this event's lock and notification effects are held by the guard.

    Trips the guard (sets ``guard_tripped_at``) when this event goes over the
    threshold.
    """
    if not is_leaving(event):
        return False
    tenant = session.scalars(
        select(Tenant).where(Tenant.id == event.tenant_id).with_for_update(key_share=True)
    ).one()
    since = event.occurred_at - timedelta(minutes=tenant.guard_window_minutes)
    if tenant.guard_released_at is not None:
        # What an admin released does not count again.
        since = max(since, tenant.guard_released_at)
    # People, not events: a DELETE and a re-hire as inactive are one leaver,
    # decided once, at their first leaving event in the window. A later one
    # (the re-hire) is held exactly when the first was: the first's lock task
    # leaves the lock to it (workers/checkout_lock.py), so holding only the
    # later one let a leaver the guard allowed stay unlocked.
    first_id, first_at = session.execute(
        select(ProvisioningEvent.id, ProvisioningEvent.occurred_at)
        .where(
            ProvisioningEvent.tenant_id == tenant.id,
            ProvisioningEvent.user_id == event.user_id,
            leaving(),
            ProvisioningEvent.occurred_at > since,
            ProvisioningEvent.id <= event.id,
        )
        .order_by(ProvisioningEvent.id)
        .limit(1)
    ).one_or_none() or (event.id, event.occurred_at)
    leavers = session.scalar(
        select(func.count(distinct(ProvisioningEvent.user_id))).where(
            ProvisioningEvent.tenant_id == tenant.id,
            leaving(),
            ProvisioningEvent.occurred_at > since,
            ProvisioningEvent.id <= first_id,
        )
    )
    # Measured against the staff who were there before the burst began: users
    # created inside it (300 dummies, say) must not raise the threshold.
    staff = session.scalar(
        select(func.count())
        .select_from(User)
        .where(
            User.tenant_id == tenant.id,
            User.created_at <= since,
            or_(User.deleted_at.is_(None), User.deleted_at > since),
        )
    )
    threshold = max(tenant.guard_min_users, math.ceil((staff or 0) * tenant.guard_percent / 100))
    over = (leavers or 0) > threshold
    if over and tenant.guard_tripped_at is None:
        tenant.guard_tripped_at = func.now()
        return True
    # Once tripped, every later leaver is held too, until an admin releases.
    tripped = tenant.guard_tripped_at
    return over or (tripped is not None and first_at >= tripped)


def is_tripped(session: Session, tenant_id: object) -> bool:
    tripped: datetime | None = session.scalar(
        select(Tenant.guard_tripped_at).where(Tenant.id == tenant_id)
    )
    return tripped is not None
