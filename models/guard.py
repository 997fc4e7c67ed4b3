"""The mass-deprovision guard.

A compromised IdP or a leaked token could deactivate a whole company in one
burst. The IdP still gets its normal answers (the users are deactivated in
SCIM), but once more of a tenant's users have been deactivated or deleted
within the window than the tenant's threshold allows, the *further*
deactivations' checkout-lock and notification effects are held (not
applied) until an admin runs ``simpleams guard release SLUG``; the admins
are emailed at once. Held users keep checking out as before.

Deterministic whatever order tasks run in: an event is counted against the
events before it (by id), never against later ones.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.outbox import EventKind, ProvisioningEvent
from models.tenants import Tenant
from models.users import User

LEAVING = (EventKind.user_deactivated.value, EventKind.user_deleted.value)


def holds(session: Session, event: ProvisioningEvent) -> bool:
    """Whether this event's lock and notification effects are held by the guard.

    Trips the guard (sets ``guard_tripped_at``) when this event goes over the
    threshold.
    """
    if event.kind not in LEAVING:
        return False
    tenant = session.scalars(
        select(Tenant).where(Tenant.id == event.tenant_id).with_for_update(key_share=True)
    ).one()
    since = event.occurred_at - timedelta(minutes=tenant.guard_window_minutes)
    if tenant.guard_released_at is not None:
        # What an admin released does not count again.
        since = max(since, tenant.guard_released_at)
    leavers = session.scalar(
        select(func.count())
        .select_from(ProvisioningEvent)
        .where(
            ProvisioningEvent.tenant_id == tenant.id,
            ProvisioningEvent.kind.in_(LEAVING),
            ProvisioningEvent.occurred_at > since,
            ProvisioningEvent.id <= event.id,
        )
    )
    staff = session.scalar(
        select(func.count()).select_from(User).where(User.tenant_id == tenant.id)
    )
    threshold = max(tenant.guard_min_users, math.ceil((staff or 0) * tenant.guard_percent / 100))
    over = (leavers or 0) > threshold
    if over and tenant.guard_tripped_at is None:
        tenant.guard_tripped_at = func.now()
        return True
    # Once tripped, every later leaver is held too, until an admin releases.
    tripped = tenant.guard_tripped_at
    return over or (tripped is not None and event.occurred_at >= tripped)


def is_tripped(session: Session, tenant_id: object) -> bool:
    tripped: datetime | None = session.scalar(
        select(Tenant.guard_tripped_at).where(Tenant.id == tenant_id)
    )
    return tripped is not None
