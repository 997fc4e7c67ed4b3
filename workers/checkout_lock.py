"""Side effect: lock a leaver out of checkouts (and flag what they hold), or unlock.

The task does not trust the events it was sent for: it applies each user's
*current* state (models/checkouts.py::apply_checkout_locks), so a
deactivation and a quick reactivation end unlocked whatever order their
tasks run in.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import guard
from models.checkouts import apply_checkout_locks
from models.outbox import Effect, ProvisioningEvent
from workers.app import app
from workers.effects import InTransaction, effect_task, hold_run, tenant_order

log = logging.getLogger("simpleams.workers.checkout")


def converge_locks(session: Session, events: list[ProvisioningEvent]) -> None:
    users = []
    decided_later = _last_leaving_events(session, events)
    # Tenant by tenant (the guard locks the tenant, effects.tenant_order), each
    # in id order: the guard counts each leaver against those before it.
    for event in tenant_order(events):
        if guard.holds(session, event):
            hold_run(session, event.id, Effect.checkout_lock)
            log.warning("mass-deprovision guard holds the lock of event=%s", event.id)
        elif event.user_id is None:  # only user events are routed here
            continue
        elif decided_later.get(event.user_id, 0) > event.id:
            # The user left after this event (a creation, say, whose task runs
            # late): that leaving event's own task locks them, or the guard
            # holds it. Converging here would lock them past the guard.
            log.info("lock of event=%s left to a later leaving event", event.id)
        else:
            users.append(event.user_id)
    results = apply_checkout_locks(session, users)
    for user_id, result in results.items():
        if result.locked or result.unflagged:
            log.info(
                "checkout lock user=%s locked=%s flagged=%s unflagged=%s",
                user_id,
                result.locked,
                result.flagged,
                result.unflagged,
            )
    log.info(
        "checkout locks converged for %d users (%d locked)",
        len(results),
        sum(result.locked for result in results.values()),
    )


def _last_leaving_events(session: Session, events: list[ProvisioningEvent]) -> dict[uuid.UUID, int]:
    """Each of these events' users -> the id of their latest leaving event (models/guard.py)."""
    user_ids = {event.user_id for event in events if event.user_id is not None}
    if not user_ids:
        return {}
    rows = session.execute(
        select(ProvisioningEvent.user_id, func.max(ProvisioningEvent.id))
        .where(ProvisioningEvent.user_id.in_(user_ids), guard.leaving())
        .group_by(ProvisioningEvent.user_id)
    )
    return {user_id: last for user_id, last in rows if user_id is not None}


CHECKOUT_LOCK = InTransaction(Effect.checkout_lock, converge_locks)
apply_lock = effect_task(app, CHECKOUT_LOCK)
