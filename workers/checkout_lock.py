"""Side effect: lock a leaver out of checkouts (and flag what they hold), or unlock.

The task does not trust the event it was sent for: it applies the user's
*current* state (models/checkouts.py::apply_checkout_lock), so a
deactivation and a quick reactivation end unlocked whatever order their
tasks run in.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from models import guard
from models.checkouts import apply_checkout_lock
from models.outbox import Effect, ProvisioningEvent
from workers.app import app
from workers.effects import EffectTask, hold_run, run_once

log = logging.getLogger("simpleams.workers.checkout")


def converge_lock(session: Session, event: ProvisioningEvent) -> None:
    if guard.holds(session, event):
        hold_run(session, event.id, Effect.checkout_lock)
        log.warning("mass-deprovision guard holds the lock of event=%s", event.id)
        return
    result = apply_checkout_lock(session, event.user_id)
    log.info(
        "checkout lock event=%s user=%s locked=%s flagged=%s unflagged=%s",
        event.id,
        event.user_id,
        result.locked,
        result.flagged,
        result.unflagged,
    )


@app.task(name="simpleams.checkout.apply_lock", base=EffectTask, effect=Effect.checkout_lock)
def apply_lock(event_id: int) -> bool:
    return run_once(event_id, Effect.checkout_lock, converge_lock)
