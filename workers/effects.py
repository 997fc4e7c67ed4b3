"""What every side-effect task shares: batches, run-once, retries, dead letters.

A task carries a batch of events and applies its effect to all of them in
one transaction (``run_batch``); each (event, effect) happens once however
often and in whatever batches it is delivered.

Transient failures (a database restart, a deadlock, SMTP down) retry with
exponential backoff and jitter. Anything else, and a transient failure that
outlives its retries, becomes a dead letter: a ``failed`` SideEffectRun that
``simpleams events failed`` lists and ``simpleams events retry`` replays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
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


class EffectsFailed(Exception):
    """Some events of a batch could not have their effect; each already has its dead letter."""


def event_ids_of(kwargs: dict[str, Any]) -> list[int]:
    """The events a task was sent for: ``event_ids`` (a batch), or ``event_id``
    (one event, as the relay published before batching; still accepted so a
    deploy does not strand the tasks already queued)."""
    if kwargs.get("event_ids") is not None:
        return sorted({int(event_id) for event_id in kwargs["event_ids"]})
    if kwargs.get("event_id") is not None:
        return [int(kwargs["event_id"])]
    return []


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
        # the relay's sweep clock for these events, so the sweep does not
        # start a second retry chain for a task that is only waiting.
        event_ids = event_ids_of(kwargs)
        if not event_ids:
            return
        try:
            with session_scope() as session:
                session.execute(
                    update(ProvisioningEvent)
                    .where(ProvisioningEvent.id.in_(event_ids))
                    .values(published_at=func.now())
                )
        except (OperationalError, InterfaceError):
            log.warning("could not note the retry of %s (database unavailable)", task_id)

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if isinstance(exc, EffectsFailed):
            return  # each failed event was recorded as it failed
        event_ids = event_ids_of(kwargs)
        log.error("side effect failed for good task=%s events=%s: %r", self.name, event_ids, exc)
        for event_id in event_ids:
            record_failure(event_id, self.effect, f"{type(exc).__name__}: {exc}")


ApplyMany = Callable[[Session, list[ProvisioningEvent]], None]


def run_batch(event_ids: Sequence[int], effect: Effect, apply: ApplyMany) -> int:
    """Apply a database side effect exactly once per (event, effect), for a batch.

    The whole batch is one transaction: a handful of statements for a
    hundred events instead of a handful per event, which is what lets the
    workers keep up with an initial sync. Run rows are claimed first, in the
    effect's own transaction: a second copy of a task (redelivery, a relay
    re-publish) either waits on the first one's rows and then skips them, or
    finds them and skips. If the batch fails for a reason other than a
    transient one, its events are run again one at a time, so one bad event
    becomes one dead letter and the others still happen. Returns how many
    effects were applied now.
    """
    ids = sorted(set(event_ids))
    if not ids:
        return 0
    try:
        with session_scope() as session:
            return _apply_claimed(session, ids, effect, apply)
    except TRANSIENT:
        raise
    except Exception as exc:
        if len(ids) == 1:
            applied, failures = 0, {ids[0]: exc}
        else:
            log.warning(
                "a batch of %d %s effects failed (%s); running them one at a time",
                len(ids),
                effect.value,
                type(exc).__name__,
            )
            applied, failures = _one_at_a_time(ids, effect, apply)
    for event_id, error in failures.items():
        log.error("side effect %s failed for good event=%s: %r", effect.value, event_id, error)
        record_failure(event_id, effect, f"{type(error).__name__}: {error}")
    if failures:
        raise EffectsFailed(
            f"{len(failures)} of {len(ids)} {effect.value} effects failed; see dead letters"
        )
    return applied


def _one_at_a_time(
    ids: list[int], effect: Effect, apply: ApplyMany
) -> tuple[int, dict[int, Exception]]:
    applied, failures = 0, {}
    for event_id in ids:
        try:
            with session_scope() as session:
                applied += _apply_claimed(session, [event_id], effect, apply)
        except TRANSIENT:
            raise
        except Exception as exc:
            failures[event_id] = exc
    return applied, failures


def _apply_claimed(session: Session, ids: list[int], effect: Effect, apply: ApplyMany) -> int:
    events = load_events(session, ids)
    claimed = claim_runs(session, [event.id for event in events], effect)
    mine = [event for event in events if event.id in claimed]
    if mine:
        apply(session, mine)
    # Also for events claimed earlier: heals an event a crash left unsettled.
    settle_if_complete(session, events)
    return len(mine)


def load_events(session: Session, ids: Sequence[int]) -> list[ProvisioningEvent]:
    events = list(
        session.scalars(
            select(ProvisioningEvent)
            .where(ProvisioningEvent.id.in_(ids))
            .order_by(ProvisioningEvent.id)
        )
    )
    if len(events) < len(ids):
        # Events are only removed with their tenant (ON DELETE CASCADE).
        missing = sorted(set(ids) - {event.id for event in events})
        log.warning("provisioning events %s no longer exist; nothing to do for them", missing)
    return events


def claim_runs(session: Session, event_ids: Sequence[int], effect: Effect) -> set[int]:
    """Claim (event, effect) runs; returns the events claimed now, not earlier."""
    if not event_ids:
        return set()
    # Sorted, so two tasks claiming overlapping batches take the row locks of
    # the unique index in the same order and cannot deadlock.
    claimed = session.scalars(
        pg_insert(SideEffectRun)
        .values(
            [
                {"event_id": event_id, "effect": effect.value, "status": RunStatus.done.value}
                for event_id in sorted(event_ids)
            ]
        )
        .on_conflict_do_nothing()
        .returning(SideEffectRun.event_id)
    ).all()
    return set(claimed)


def claim_run(session: Session, event_id: int, effect: Effect) -> bool:
    return event_id in claim_runs(session, [event_id], effect)


def hold_run(session: Session, event_id: int, effect: Effect) -> None:
    """Mark a claimed run as held by the mass-deprovision guard (models/guard.py)."""
    session.execute(
        update(SideEffectRun)
        .where(SideEffectRun.event_id == event_id, SideEffectRun.effect == effect.value)
        .values(status=RunStatus.held.value)
    )


def settle_if_complete(
    session: Session, events: ProvisioningEvent | Sequence[ProvisioningEvent]
) -> None:
    """Mark events settled once every routed effect has finished (done or dead)."""
    batch = [events] if isinstance(events, ProvisioningEvent) else list(events)
    if not batch:
        return
    ids = sorted(event.id for event in batch)
    # The effects of one event run concurrently in different transactions;
    # without this lock each would count only its own uncommitted run and no
    # one would settle the event. Under READ COMMITTED the count below, a
    # statement of its own run after the lock is granted, sees the runs the
    # earlier holders committed. FOR NO KEY UPDATE, not FOR UPDATE: every
    # effect's run row holds a KEY SHARE lock on its event (the foreign key),
    # and FOR UPDATE would wait on those, deadlocking two effects of the same
    # event. In id order, so overlapping batches cannot deadlock either.
    session.execute(
        select(ProvisioningEvent.id)
        .where(ProvisioningEvent.id.in_(ids))
        .order_by(ProvisioningEvent.id)
        .with_for_update(key_share=True)
    )
    finished = dict(
        session.execute(
            select(SideEffectRun.event_id, func.count())
            .where(SideEffectRun.event_id.in_(ids))
            .group_by(SideEffectRun.event_id)
        ).all()
    )
    complete = [
        event.id for event in batch if finished.get(event.id, 0) >= len(effects_for(event.kind))
    ]
    if complete:
        session.execute(
            update(ProvisioningEvent)
            .where(ProvisioningEvent.id.in_(complete), ProvisioningEvent.settled_at.is_(None))
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
    "TRANSIENT",
    "EffectTask",
    "EffectsFailed",
    "PermanentError",
    "TransientError",
    "claim_run",
    "claim_runs",
    "event_ids_of",
    "hold_run",
    "load_events",
    "record_failure",
    "run_batch",
    "settle_if_complete",
]
