"""What every side-effect task shares: retries, dead letters, and run-once.

Transient failures (a database restart, a deadlock, SMTP down) retry with
exponential backoff and jitter. Anything else, and a transient failure that
outlives its retries, becomes a dead letter: a ``failed`` SideEffectRun that
``simpleams events failed`` lists and ``simpleams events retry`` replays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Task
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from models.outbox import Effect, ProvisioningEvent, RunStatus, SideEffectRun
from workers.db import session_scope
from workers.routing import effects_for

log = logging.getLogger("simpleams.workers")


class TransientError(Exception):
    """Worth retrying: the cause is expected to go away (SMTP down, a timeout)."""


class PermanentError(Exception):
    """Not worth retrying: recorded as a dead letter straight away."""


TRANSIENT = (OperationalError, InterfaceError, TransientError)


class EffectTask(Task):  # type: ignore[misc]
    """Base class of the side-effect tasks (``base=EffectTask``)."""

    effect: Effect
    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = TRANSIENT
    retry_backoff = 2
    retry_backoff_max = 300
    retry_jitter = True
    max_retries = 8

    def on_retry(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        # A retry is scheduled (countdown up to retry_backoff_max): restart
        # the relay's sweep clock for this event, so the sweep does not start
        # a second retry chain for a task that is only waiting.
        event_id = kwargs.get("event_id")
        if event_id is None:
            return
        try:
            with session_scope() as session:
                session.execute(
                    update(ProvisioningEvent)
                    .where(ProvisioningEvent.id == int(event_id))
                    .values(published_at=func.now())
                )
        except (OperationalError, InterfaceError):
            log.warning("could not note the retry of %s (database unavailable)", task_id)

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        event_id = kwargs.get("event_id")
        log.error("side effect failed for good task=%s event=%s: %r", self.name, event_id, exc)
        if event_id is not None:
            record_failure(int(event_id), self.effect, f"{type(exc).__name__}: {exc}")


def run_once(
    event_id: int, effect: Effect, apply: Callable[[Session, ProvisioningEvent], None]
) -> bool:
    """Apply a database side effect exactly once per (event, effect).

    The run row is claimed first, in the effect's own transaction: a second
    copy of the task (redelivery, a relay re-publish) either waits on the
    first one's row lock and then skips, or finds the row and skips.
    Returns whether the effect was applied now.
    """
    with session_scope() as session:
        event = session.get(ProvisioningEvent, event_id)
        if event is None:
            raise PermanentError(f"provisioning event {event_id} does not exist")
        if not claim_run(session, event_id, effect):
            settle_if_complete(session, event)  # heals an event a crash left unsettled
            return False
        apply(session, event)
        settle_if_complete(session, event)
        return True


def claim_run(session: Session, event_id: int, effect: Effect) -> bool:
    claimed = session.execute(
        pg_insert(SideEffectRun)
        .values(event_id=event_id, effect=effect.value, status=RunStatus.done.value)
        .on_conflict_do_nothing()
        .returning(SideEffectRun.event_id)
    ).first()
    return claimed is not None


def hold_run(session: Session, event_id: int, effect: Effect) -> None:
    """Mark a claimed run as held by the mass-deprovision guard (models/guard.py)."""
    session.execute(
        update(SideEffectRun)
        .where(SideEffectRun.event_id == event_id, SideEffectRun.effect == effect.value)
        .values(status=RunStatus.held.value)
    )


def settle_if_complete(session: Session, event: ProvisioningEvent) -> None:
    """Mark the event settled once every routed effect has finished (done or dead)."""
    # The effects of one event run concurrently in different transactions;
    # without this lock each would count only its own uncommitted run and no
    # one would settle the event. Under READ COMMITTED the count below, run
    # after the lock is granted, sees the runs the earlier holders committed.
    # FOR NO KEY UPDATE, not FOR UPDATE: every effect's run row holds a
    # KEY SHARE lock on this event (its foreign key), and FOR UPDATE would
    # wait on those, deadlocking two effects of the same event.
    session.execute(
        select(ProvisioningEvent.id)
        .where(ProvisioningEvent.id == event.id)
        .with_for_update(key_share=True)
    )
    finished = session.scalar(
        select(func.count()).select_from(SideEffectRun).where(SideEffectRun.event_id == event.id)
    )
    if finished is not None and finished >= len(effects_for(event.kind)):
        session.execute(
            update(ProvisioningEvent)
            .where(ProvisioningEvent.id == event.id, ProvisioningEvent.settled_at.is_(None))
            .values(settled_at=func.now())
        )


def record_failure(event_id: int, effect: Effect, error: str) -> None:
    with session_scope() as session:
        event = session.get(ProvisioningEvent, event_id)
        if event is None:
            return
        statement = pg_insert(SideEffectRun).values(
            event_id=event_id,
            effect=effect.value,
            status=RunStatus.failed.value,
            error=error[:2000],
        )
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[SideEffectRun.event_id, SideEffectRun.effect],
                set_={
                    "status": RunStatus.failed.value,
                    "error": statement.excluded.error,
                    "attempts": SideEffectRun.attempts + 1,
                    "finished_at": func.now(),
                },
                # Never turn a done effect into a failure.
                where=SideEffectRun.status != RunStatus.done.value,
            )
        )
        settle_if_complete(session, event)


__all__ = [
    "EffectTask",
    "PermanentError",
    "TransientError",
    "claim_run",
    "hold_run",
    "record_failure",
    "run_once",
    "settle_if_complete",
]
