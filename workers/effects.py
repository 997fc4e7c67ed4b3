"""One side-effect framework: claim, lease, settle, retry and dead letter.

A side effect of a provisioning event is declared once, in one of two shapes,
and ``effect_task`` makes it the Celery task the routing table names:

- ``InTransaction(effect, apply)``: ``apply(session, events)`` writes the
  effect in the transaction that claims the events' runs (the audit log, the
  checkout lock).
- ``Delivery(effect, compose, send, apply)``: a message to the outside world
  (email today, a webhook tomorrow). ``compose(session, event)`` decides, in
  the claim transaction, what the event calls for: ``Send(kind, message)``,
  ``Hold(also)`` (the mass-deprovision guard) or ``DONE`` (nothing to send;
  ``apply`` does the event's part in that transaction, with the batch). A
  message is recorded there once: its row in ``notifications``, one per
  (event, kind, recipient), is the delivery record. Then, outside any
  transaction, ``deliver`` takes the record's send lease, calls
  ``send(message)``, marks the record sent, and claims the run and settles
  the event; a failed send gives the lease back.

Each (event, effect) happens once however often and in whatever batches it
is delivered: the run row (``SideEffectRun``) is the key, claimed with the
effect's own writes, or, for a message, with the record marked sent. A
crash between recording and sending sends on the next run, never skips (at
least once); two copies of a task never both send (the lease, committed
before ``send``; a dead sender's lease expires).

A task carries a batch of events, claimed in one transaction; if the batch
fails for a reason that is not transient, its events are run again one at a
time, so one bad event becomes one dead letter and the rest still happen.
Transient failures (a database restart, a deadlock, SMTP down) retry with
exponential backoff and jitter. Anything else, and a transient failure that
outlives its retries, becomes a dead letter: a ``failed`` SideEffectRun that
``simpleams events failed`` lists and ``simpleams events retry`` replays.

Every line a side-effect task logs, Celery's own included (received aside,
which the worker's main process logs), carries the task's ``effect`` and
``event_ids``, and a line about one event its ``event_id``
(observability/logs.py): the framework sets them, never an effect. A failure
is logged by its type only; its message, which may quote the data (a mail
server's refusal names the address), is in the dead letter.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextvars import Token
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, Protocol, TypeVar

from celery import Task
from celery.signals import task_postrun, task_prerun
from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from models.notifications import Notification
from models.outbox import Effect, ProvisioningEvent, RunStatus, SideEffectRun
from observability import logs
from workers.db import session_scope
from workers.routing import ROUTES, effects_for

log = logging.getLogger("simpleams.workers")


class TransientError(Exception):
    """Worth retrying: the cause is expected to go away (SMTP down, a timeout)."""


class PermanentError(Exception):
    """Not worth retrying: recorded as a dead letter straight away."""


TRANSIENT = (OperationalError, InterfaceError, TransientError)


class EffectsFailed(Exception):
    """Some events of a batch could not have their effect; each already has its dead letter."""


# --- declaring a side effect ----------------------------------------------------

Apply = Callable[[Session, list[ProvisioningEvent]], None]


class Message(Protocol):
    """What a delivery sends; its record keeps ``to`` and ``subject``."""

    @property
    def to(self) -> str: ...

    @property
    def subject(self) -> str: ...


M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Send(Generic[M]):
    """Send ``message``; the event's run is done once it has been sent.
    ``kind`` with the event and ``message.to`` is the record's key."""

    kind: str
    message: M


@dataclass(frozen=True)
class Hold(Generic[M]):
    """Held by the mass-deprovision guard (models/guard.py): the run is
    ``held`` now and nothing is applied; ``also`` is sent all the same."""

    also: Send[M] | None = None


@dataclass(frozen=True)
class Done:
    """Nothing to send: the run is done now, with the delivery's ``apply``."""


DONE = Done()
Decision = Send[M] | Hold[M] | Done


def tenant_order(events: Sequence[ProvisioningEvent]) -> list[ProvisioningEvent]:
    """Events tenant by tenant, each tenant's in id order: the order every
    effect takes the guard's tenant locks in (models/guard.holds), so two
    tasks with leavers of the same tenants cannot deadlock."""
    return sorted(events, key=lambda event: (event.tenant_id, event.id))


@dataclass(frozen=True)
class InTransaction:
    """A side effect written in the transaction that claims its runs."""

    effect: Effect
    apply: Apply

    def claim(self, session: Session, ids: Sequence[int]) -> Claimed:
        events = load_events(session, ids)
        claimed = claim_runs(session, self.effect, {event.id: RunStatus.done for event in events})
        mine = [event for event in events if event.id in claimed]
        if mine:
            self.apply(session, mine)
        # Also for events claimed earlier: heals an event a crash left unsettled.
        settle_if_complete(session, events)
        return Claimed(Counter({"done": len(mine), "already done": len(events) - len(mine)}))


@dataclass(frozen=True)
class Delivery(Generic[M]):
    """A side effect that sends a message; see the module docstring."""

    effect: Effect
    compose: Callable[[Session, ProvisioningEvent], Decision[M]]
    send: Callable[[M], None]
    # The events ``compose`` sends nothing for (``DONE``), in the claim transaction.
    apply: Apply | None = None

    def claim(self, session: Session, ids: Sequence[int]) -> Claimed:
        events = load_events(session, ids)
        result = Claimed()
        runs: dict[int, RunStatus] = {}
        for event in tenant_order(events):
            # Composed even when the run is finished: a message recorded and
            # not yet sent (the guard's alert, whose run is held at once) goes out.
            with logs.context(event_id=event.id):
                decision = self.compose(session, event)
            if isinstance(decision, Send):
                result.outgoing.append(_recorded(session, event, decision, finishes=True))
            elif isinstance(decision, Hold):
                runs[event.id] = RunStatus.held
                if decision.also is not None:
                    result.outgoing.append(_recorded(session, event, decision.also, finishes=False))
            else:
                runs[event.id] = RunStatus.done
        claimed = claim_runs(session, self.effect, runs)
        done = [e for e in events if e.id in claimed and runs[e.id] is RunStatus.done]
        if done and self.apply is not None:
            self.apply(session, done)
        result.outcomes.update(
            {
                "done": len(done),
                "held": len(claimed) - len(done),
                "already done": len(runs) - len(claimed),
            }
        )
        settle_if_complete(session, events)
        return result

    def deliver_recorded(self, outgoing: _Outgoing[M]) -> str:
        def finish(session: Session) -> None:
            event = session.get(ProvisioningEvent, outgoing.event_id)
            if event is None:
                raise PermanentError(f"provisioning event {outgoing.event_id} disappeared")
            claim_runs(session, self.effect, {event.id: RunStatus.done})
            settle_if_complete(session, event)

        state = deliver(
            outgoing.record_id, outgoing.message, self.send, finish if outgoing.finishes else None
        )
        return f"{outgoing.kind} {state}" if state == SENT else state


def effect_task(app: Any, declared: InTransaction | Delivery[Any]) -> Any:
    """The Celery task of a side effect, under the name the routing table gives it."""

    def run_task(event_ids: list[int] | None = None, event_id: int | None = None) -> str:
        return run(declared, event_ids_of({"event_ids": event_ids, "event_id": event_id}))

    route = ROUTES[declared.effect]
    return app.task(name=route.task_name, base=EffectTask, effect=declared.effect)(run_task)


# --- running it: one batch, one claim transaction -----------------------------------


@dataclass
class _Outgoing(Generic[M]):
    """A message recorded in the claim transaction, to be sent after it."""

    event_id: int
    record_id: uuid.UUID
    kind: str
    message: M
    finishes: bool  # sending it is what finishes the event's run


def _recorded(
    session: Session, event: ProvisioningEvent, send: Send[M], finishes: bool
) -> _Outgoing[M]:
    return _Outgoing(event.id, _record(session, event, send), send.kind, send.message, finishes)


@dataclass
class Claimed:
    """What claim transactions did: outcomes by name, and the messages to send."""

    outcomes: Counter[str] = field(default_factory=Counter)
    outgoing: list[_Outgoing[Any]] = field(default_factory=list)

    def add(self, other: Claimed) -> None:
        self.outcomes.update(other.outcomes)
        self.outgoing.extend(other.outgoing)


def run(declared: InTransaction | Delivery[Any], event_ids: Sequence[int]) -> str:
    """Run a side effect for a batch of events; returns what happened (the task's result)."""
    effect = declared.effect
    ids = sorted(set(event_ids))
    if not ids:
        return "nothing to do"
    claimed, failures = _claim(declared, ids)
    _dead_letters(effect, failures)  # before anything is sent
    failed = len(failures)
    if isinstance(declared, Delivery):
        for outgoing in claimed.outgoing:
            try:
                with logs.context(event_id=outgoing.event_id):
                    claimed.outcomes[declared.deliver_recorded(outgoing)] += 1
            except TRANSIENT:
                raise  # the task is retried; what was done is skipped next time
            except Exception as exc:
                _dead_letters(effect, {outgoing.event_id: exc})
                failed += 1
    if failed:
        raise EffectsFailed(
            f"{failed} of {len(ids)} {effect.value} effects failed; see dead letters"
        )
    return ", ".join(f"{outcome}: {count}" for outcome, count in claimed.outcomes.items() if count)


def _claim(
    declared: InTransaction | Delivery[Any], ids: list[int]
) -> tuple[Claimed, dict[int, Exception]]:
    """The batch in one transaction (a handful of statements for a hundred
    events instead of a handful per event: what lets the workers keep up with
    an initial sync); if it fails for a reason other than a transient one,
    one transaction per event."""
    try:
        with session_scope() as session:
            return declared.claim(session, ids), {}
    except TRANSIENT:
        raise
    except Exception as exc:
        if len(ids) == 1:
            return Claimed(), {ids[0]: exc}
        log.warning(
            "a batch of %d %s effects failed (%s); running them one at a time",
            len(ids),
            declared.effect.value,
            type(exc).__name__,
        )
    claimed, failures = Claimed(), {}
    for event_id in ids:
        try:
            with logs.context(event_id=event_id), session_scope() as session:
                claimed.add(declared.claim(session, [event_id]))
        except TRANSIENT:
            raise
        except Exception as exc:
            failures[event_id] = exc
    return claimed, failures


def _dead_letters(effect: Effect, failures: Mapping[int, Exception]) -> None:
    for event_id, error in failures.items():
        with logs.context(event_id=event_id):
            log.error(
                "side effect %s failed for good event=%s: %s (`simpleams events failed`)",
                effect.value,
                event_id,
                type(error).__name__,
            )
            record_failure(event_id, effect, f"{type(error).__name__}: {error}")


# --- deliveries: record, lease, send, mark ----------------------------------------

# Longer than any SMTP conversation (20 s timeouts, workers/mail.py), shorter
# than the relay's sweep: a sender that died mid-send is replaced in time.
SEND_LEASE = timedelta(minutes=2)
SENT = "sent"
ALREADY_SENT = "already sent"
BEING_SENT = "being sent by another task"


def _record(session: Session, event: ProvisioningEvent, send: Send[Any]) -> uuid.UUID:
    """The delivery record of a message about ``event``, written once; its id."""
    key = {"event_id": event.id, "kind": send.kind, "recipient": send.message.to}
    session.execute(
        pg_insert(Notification)
        .values(tenant_id=event.tenant_id, subject=send.message.subject, **key)
        .on_conflict_do_nothing()
    )
    return session.scalars(select(Notification.id).filter_by(**key)).one()


def deliver(
    record_id: uuid.UUID,
    message: M,
    send: Callable[[M], None],
    then: Callable[[Session], None] | None = None,
) -> str:
    """Send a recorded message, unless it was sent or another task is sending it.

    The lease is committed before ``send``, which runs outside any
    transaction; the record is marked sent after it, with ``then`` (the run's
    claim) in the same transaction. Returns ``SENT``, ``ALREADY_SENT`` or
    ``BEING_SENT``.
    """
    with session_scope() as session:
        refused = _lease(session, record_id)
        if refused == ALREADY_SENT and then is not None:
            then(session)  # sent by an earlier run that did not get this far
    if refused is not None:
        return refused
    try:
        send(message)
    except Exception:
        _release(record_id)
        raise
    with session_scope() as session:
        session.execute(
            update(Notification)
            .where(Notification.id == record_id)
            .values(status="sent", sent_at=func.now())
        )
        if then is not None:
            then(session)
    return SENT


def _lease(session: Session, record_id: uuid.UUID) -> str | None:
    """None when this task now holds the send lease; else why it does not."""
    leased = session.scalar(
        update(Notification)
        .where(
            Notification.id == record_id,
            Notification.status != "sent",
            or_(Notification.sending_until.is_(None), Notification.sending_until < func.now()),
        )
        .values(sending_until=func.now() + SEND_LEASE)
        .returning(Notification.id)
    )
    if leased is not None:
        return None
    status = session.scalar(select(Notification.status).where(Notification.id == record_id))
    return ALREADY_SENT if status == "sent" else BEING_SENT


def _release(record_id: uuid.UUID) -> None:
    """Give the lease back after a failed send, so the retry may send at once."""
    try:
        with session_scope() as session:
            session.execute(
                update(Notification)
                .where(Notification.id == record_id, Notification.status != "sent")
                .values(sending_until=None)
            )
    except TRANSIENT:
        log.warning("could not release the send lease of %s; it expires by itself", record_id)


# --- runs: claim, settle, dead letters ---------------------------------------------


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
    """Base class of the side-effect tasks (``effect_task``)."""

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
        log.error(
            "side effect failed for good task=%s: %s (`simpleams events failed`)",
            self.name,
            type(exc).__name__,
        )
        for event_id in event_ids:
            record_failure(event_id, self.effect, f"{type(exc).__name__}: {exc}")


# The log context of each side-effect task running in this process, by task id:
# opened before Celery starts it, closed after Celery has logged how it went.
_task_log_contexts: dict[str, Token[dict[str, Any] | None]] = {}


@task_prerun.connect
def _open_task_log_context(
    task_id: str | None = None, task: Any = None, kwargs: Any = None, **_: Any
) -> None:
    if isinstance(task, EffectTask) and task_id is not None:
        _task_log_contexts[task_id] = logs.enter(
            effect=task.effect.value, event_ids=event_ids_of(kwargs or {})
        )


@task_postrun.connect
def _close_task_log_context(task_id: str | None = None, **_: Any) -> None:
    token = _task_log_contexts.pop(task_id or "", None)
    if token is not None:
        logs.leave(token)


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


def claim_runs(session: Session, effect: Effect, runs: Mapping[int, RunStatus]) -> set[int]:
    """Claim (event, effect) runs, each finished as its status; returns the
    events claimed now, not earlier."""
    if not runs:
        return set()
    # Sorted, so two tasks claiming overlapping batches take the row locks of
    # the unique index in the same order and cannot deadlock.
    claimed = session.scalars(
        pg_insert(SideEffectRun)
        .values(
            [
                {"event_id": event_id, "effect": effect.value, "status": runs[event_id].value}
                for event_id in sorted(runs)
            ]
        )
        .on_conflict_do_nothing()
        .returning(SideEffectRun.event_id)
    ).all()
    return set(claimed)


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
    "ALREADY_SENT",
    "BEING_SENT",
    "DONE",
    "SEND_LEASE",
    "SENT",
    "TRANSIENT",
    "Decision",
    "Delivery",
    "Done",
    "EffectTask",
    "EffectsFailed",
    "Hold",
    "InTransaction",
    "Message",
    "PermanentError",
    "Send",
    "TransientError",
    "claim_runs",
    "deliver",
    "effect_task",
    "event_ids_of",
    "hold_run",
    "load_events",
    "record_failure",
    "run",
    "settle_if_complete",
    "tenant_order",
]
