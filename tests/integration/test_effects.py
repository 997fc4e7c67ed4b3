"""The side-effect framework (workers/effects.py), run in this process against
the real database: what every delivery shares (recorded once, the send lease,
marked sent, the event settled) and what deliveries share with
in-transaction effects (batches, retries, dead letters).

``send`` is a stand-in that keeps what it sent, and fails or holds a message
in flight on demand. The same guarantees of the email path with real
processes and SMTP are in test_operations.py and test_side_effects.py.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from gateway import side_effects
from models.outbox import Effect, ProvisioningEvent
from tests.conftest import make_tenant, scim_client, user_body
from tests.db import rows
from workers import effects
from workers.audit import AUDIT
from workers.checkout_lock import CHECKOUT_LOCK
from workers.effects import (
    Decision,
    Delivery,
    EffectsFailed,
    Hold,
    InTransaction,
    PermanentError,
    Send,
    TransientError,
)

pytestmark = pytest.mark.usefixtures("workers_in_process")


@pytest.fixture
def other_task() -> Iterator[ThreadPoolExecutor]:
    """A second copy of a task, running at the same time as the test's own."""
    with ThreadPoolExecutor(max_workers=1) as executor:
        yield executor


@dataclass(frozen=True)
class Note:
    """A message of the test's delivery (workers/effects.py::Message)."""

    to: str
    subject: str
    body: str


class Crash(BaseException):
    """The worker dies here (SIGKILL): no ``except Exception`` of the framework runs."""


@dataclass
class Outbox:
    """The stand-in for SMTP. Keeps what it sent; raises ``failures[to]`` for
    that recipient; while ``hold`` is set, holds the first message in flight
    (``in_flight`` tells the test it got there)."""

    sent: list[Any] = field(default_factory=list)
    attempts: int = 0
    failures: dict[str, BaseException] = field(default_factory=dict)
    hold: threading.Event | None = None
    in_flight: threading.Event = field(default_factory=threading.Event)

    def __call__(self, message: Any) -> None:
        self.attempts += 1
        if self.hold is not None and self.attempts == 1:
            self.in_flight.set()
            assert self.hold.wait(timeout=30), "the test never let the first send finish"
        if message.to in self.failures:
            raise self.failures[message.to]
        self.sent.append(message)

    def subjects(self) -> list[str]:
        return [message.subject for message in self.sent]


def address(event_id: int) -> str:
    return f"admins+{event_id}@acme.test"


def note_about(session: Session, event: ProvisioningEvent) -> Decision[Note]:
    return Send("note", Note(address(event.id), f"Event {event.id}", "body"))


Compose = Callable[[Session, ProvisioningEvent], Decision[Note]]


def notes(send: Callable[[Note], None], compose: Compose = note_about) -> Delivery[Note]:
    """A delivery of one note per event, run as the notify effect."""
    return Delivery(Effect.notify, compose=compose, send=send)


async def user_events(db: Engine, client: httpx2.AsyncClient, count: int) -> list[int]:
    """``count`` users created through the gateway: their events, with the
    audit and checkout-lock effects done, so that notify's settles them."""
    for n in range(count):
        created = await client.post("/Users", json=user_body(f"u{n}@acme.test"))
        assert created.status_code == 201
    ids = [row.id for row in rows(db, "SELECT id FROM provisioning_events ORDER BY id")]
    effects.run(AUDIT, ids)
    effects.run(CHECKOUT_LOCK, ids)
    return ids


def notify_runs(db: Engine) -> dict[int, tuple[str, str | None]]:
    """The notify runs: event -> (status, error)."""
    found = rows(db, "SELECT event_id, status, error FROM side_effect_runs WHERE effect = 'notify'")
    return {row.event_id: (row.status, row.error) for row in found}


def records(db: Engine) -> dict[str, tuple[str, bool]]:
    """The delivery records by recipient: (status, whether a send lease is held)."""
    found = rows(
        db,
        "SELECT recipient, status, coalesce(sending_until > now(), false) AS leased"
        " FROM notifications",
    )
    return {row.recipient: (row.status, row.leased) for row in found}


def settled(db: Engine) -> list[int]:
    found = rows(db, "SELECT id FROM provisioning_events WHERE settled_at IS NOT NULL ORDER BY id")
    return [row.id for row in found]


def expire_leases(db: Engine) -> None:
    """Two minutes pass: every send lease has run out."""
    with db.begin() as conn:
        conn.execute(text("UPDATE notifications SET sending_until = now() - interval '1 second'"))


# --- a delivery ---------------------------------------------------------------


async def test_a_delivery_is_recorded_sent_and_settled_once(
    db: Engine, client: httpx2.AsyncClient
) -> None:
    ids = await user_events(db, client, 3)
    outbox = Outbox()

    assert effects.run(notes(outbox), ids) == "note sent: 3"
    assert effects.run(notes(outbox), [*ids, ids[0]]) == "already sent: 3"

    assert sorted(note.to for note in outbox.sent) == sorted(address(i) for i in ids)
    assert records(db) == {address(i): ("sent", True) for i in ids}
    assert notify_runs(db) == dict.fromkeys(ids, ("done", None))
    assert settled(db) == ids


async def test_a_second_copy_of_the_task_does_not_send_while_the_first_is_sending(
    db: Engine, client: httpx2.AsyncClient, other_task: ThreadPoolExecutor
) -> None:
    """A redelivery or a sweep re-publish running while the first copy is
    still sending: the lease, committed before ``send``, sends it aside."""
    [event] = await user_events(db, client, 1)
    outbox = Outbox(hold=threading.Event())
    first = other_task.submit(effects.run, notes(outbox), [event])
    assert outbox.in_flight.wait(timeout=30)

    try:
        second = effects.run(notes(outbox), [event])

        assert second == "being sent by another task: 1"
        assert outbox.attempts == 1
        assert notify_runs(db) == {}  # the first copy finishes the run, once sent
        assert settled(db) == []
    finally:
        outbox.hold.set()
    assert first.result(timeout=30) == "note sent: 1"
    assert [note.to for note in outbox.sent] == [address(event)]
    assert notify_runs(db) == {event: ("done", None)}
    assert settled(db) == [event]


async def test_a_failed_send_gives_the_lease_back_and_the_retry_sends_at_once(
    db: Engine, client: httpx2.AsyncClient
) -> None:
    [event] = await user_events(db, client, 1)
    outbox = Outbox(failures={address(event): TransientError("451 try again later")})

    with pytest.raises(TransientError):  # EffectTask retries the task (autoretry_for)
        effects.run(notes(outbox), [event])

    assert records(db) == {address(event): ("pending", False)}
    assert notify_runs(db) == {}
    assert settled(db) == []
    outbox.failures.clear()
    assert effects.run(notes(outbox), [event]) == "note sent: 1"
    assert outbox.attempts == 2 and len(outbox.sent) == 1
    assert notify_runs(db) == {event: ("done", None)}
    assert settled(db) == [event]


async def test_a_crash_between_recording_and_sending_sends_on_a_later_run(
    db: Engine, client: httpx2.AsyncClient
) -> None:
    """Never skipped: the record is committed before the send; the dead
    sender's lease expires, and the next run sends. At least once: a crash
    after sending and before marking sends again."""
    [event] = await user_events(db, client, 1)
    outbox = Outbox(failures={address(event): Crash()})
    with pytest.raises(Crash):
        effects.run(notes(outbox), [event])
    assert records(db) == {address(event): ("pending", True)}
    # A copy running while the lease holds leaves it to its (dead) holder.
    assert effects.run(notes(outbox), [event]) == "being sent by another task: 1"
    assert outbox.sent == [] and notify_runs(db) == {}

    expire_leases(db)
    outbox.failures.clear()
    assert effects.run(notes(outbox), [event]) == "note sent: 1"
    assert len(outbox.sent) == 1
    assert notify_runs(db) == {event: ("done", None)}
    assert settled(db) == [event]


async def test_a_crash_after_sending_and_before_marking_sends_again(
    db: Engine, client: httpx2.AsyncClient
) -> None:
    [event] = await user_events(db, client, 1)
    outbox = Outbox()

    def sent_then_killed(note: Note) -> None:
        outbox(note)
        raise Crash

    with pytest.raises(Crash):
        effects.run(notes(sent_then_killed), [event])
    expire_leases(db)
    assert effects.run(notes(outbox), [event]) == "note sent: 1"

    assert [note.to for note in outbox.sent] == [address(event)] * 2
    assert notify_runs(db) == {event: ("done", None)}


async def test_a_permanent_failure_is_one_dead_letter_and_the_others_are_sent(
    db: Engine, client: httpx2.AsyncClient
) -> None:
    ids = await user_events(db, client, 3)
    bad = ids[1]
    outbox = Outbox(failures={address(bad): PermanentError("SMTP 550: no such mailbox")})

    with pytest.raises(EffectsFailed, match="1 of 3 notify effects failed"):
        effects.run(notes(outbox), ids)

    assert {note.to for note in outbox.sent} == {address(ids[0]), address(ids[2])}
    assert len(outbox.sent) == 2
    assert notify_runs(db) == {
        ids[0]: ("done", None),
        ids[1]: ("failed", "PermanentError: SMTP 550: no such mailbox"),
        ids[2]: ("done", None),
    }
    assert records(db)[address(bad)] == ("pending", False)  # the lease given back
    assert settled(db) == ids  # a dead letter finishes its event
    with db.begin() as conn:
        [letter] = side_effects.failed_side_effects(conn)  # `simpleams events failed`
        assert letter.id == f"{bad}:notify"
        assert side_effects.retry_side_effects(conn, [letter.id]) == 1

    outbox.failures.clear()
    assert effects.run(notes(outbox), ids) == "already sent: 2, note sent: 1"
    assert len(outbox.sent) == 3
    assert notify_runs(db) == dict.fromkeys(ids, ("done", None))


async def test_a_bad_event_in_a_batch_is_one_dead_letter_for_a_delivery_too(
    db: Engine, client: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """``compose`` failing for one event: the batch is composed again one event
    at a time, as an in-transaction effect's batch is."""
    ids = await user_events(db, client, 4)
    bad = ids[2]

    def compose(session: Session, event: ProvisioningEvent) -> Decision[Note]:
        if event.id == bad:
            raise ValueError("cannot compose this one")
        return note_about(session, event)

    outbox = Outbox()
    with caplog.at_level(logging.WARNING), pytest.raises(EffectsFailed):
        effects.run(notes(outbox, compose), ids)

    assert "a batch of 4 notify effects failed (ValueError)" in caplog.text
    assert sorted(note.to for note in outbox.sent) == sorted(address(i) for i in ids if i != bad)
    assert notify_runs(db)[bad] == ("failed", "ValueError: cannot compose this one")
    assert [status for status, _ in notify_runs(db).values()].count("done") == 3
    assert address(bad) not in records(db)  # nothing recorded for it


async def test_a_held_events_message_is_sent_even_though_its_run_finished_at_once(
    db: Engine, client: httpx2.AsyncClient
) -> None:
    """``Hold(also)``: the run is held in the claim transaction; the message
    (the guard's alert) still goes out, on a later run if sending failed."""
    [event] = await user_events(db, client, 1)

    def hold(session: Session, event: ProvisioningEvent) -> Decision[Note]:
        return Hold(Send("note", Note(address(event.id), "Held", "body")))

    outbox = Outbox(failures={address(event): TransientError("SMTP down")})
    with pytest.raises(TransientError):
        effects.run(notes(outbox, hold), [event])
    assert notify_runs(db) == {event: ("held", None)}
    assert settled(db) == [event]

    outbox.failures.clear()
    assert effects.run(notes(outbox, hold), [event]) == "already done: 1, note sent: 1"
    assert effects.run(notes(outbox, hold), [event]) == "already done: 1, already sent: 1"
    assert [note.subject for note in outbox.sent] == ["Held"]
    assert notify_runs(db) == {event: ("held", None)}


# --- what deliveries and in-transaction effects share ---------------------------


async def test_nothing_to_send_is_done_in_the_claim_transaction_with_the_batch(
    db: Engine, client: httpx2.AsyncClient
) -> None:
    """``DONE``: the delivery's ``apply`` runs once per event, for the batch."""
    ids = await user_events(db, client, 3)
    applied: list[list[int]] = []

    def nothing(session: Session, event: ProvisioningEvent) -> Decision[Note]:
        return effects.DONE

    def apply(session: Session, events: list[ProvisioningEvent]) -> None:
        applied.append([event.id for event in events])

    delivery = Delivery(Effect.notify, compose=nothing, send=Outbox(), apply=apply)
    assert effects.run(delivery, ids[:2]) == "done: 2"
    assert effects.run(delivery, ids) == "done: 1, already done: 2"

    assert applied == [ids[:2], ids[2:]]
    assert notify_runs(db) == dict.fromkeys(ids, ("done", None))
    assert settled(db) == ids
    assert records(db) == {}


async def test_an_in_transaction_effect_has_the_same_dead_letters_and_retries(
    db: Engine, client: httpx2.AsyncClient
) -> None:
    ids = await user_events(db, client, 3)
    broken = {ids[0]: PermanentError("not this one")}
    applied: list[int] = []

    def apply(session: Session, events: list[ProvisioningEvent]) -> None:
        for event in events:
            if event.id in broken:
                raise broken[event.id]
        applied.extend(event.id for event in events)

    effect = InTransaction(Effect.notify, apply)
    with pytest.raises(EffectsFailed, match="1 of 3 notify effects failed"):
        effects.run(effect, ids)
    assert applied == ids[1:]
    assert notify_runs(db)[ids[0]] == ("failed", "PermanentError: not this one")
    assert settled(db) == ids

    with db.begin() as conn:  # `simpleams events retry --all`
        assert side_effects.retry_side_effects(conn, None) == 1
    broken[ids[0]] = TransientError("database restarting")
    with pytest.raises(TransientError):  # retried by the task, not a dead letter
        effects.run(effect, ids)
    assert ids[0] not in notify_runs(db)

    broken.clear()
    assert effects.run(effect, ids) == "done: 1, already done: 2"
    assert sorted(applied) == ids
    assert notify_runs(db) == dict.fromkeys(ids, ("done", None))


async def test_every_effect_takes_the_guards_tenant_locks_in_one_order(
    app: Any, client: httpx2.AsyncClient, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard locks a leaver's tenant (models/guard.holds). A batch that
    reached tenants B then A while another reached A then B would deadlock;
    every effect therefore decides tenant by tenant (effects.tenant_order)."""
    other = make_tenant(db, "beta")
    async with scim_client(app, other.headers) as beta:
        for idp in (client, beta, client, beta):
            created = await idp.post("/Users", json=user_body(f"{uuid.uuid4().hex[:8]}@x.test"))
            assert created.status_code == 201
    asked: list[tuple[Any, int]] = []

    def holds(session: Session, event: ProvisioningEvent) -> bool:
        asked.append((event.tenant_id, event.id))
        return False

    monkeypatch.setattr("models.guard.holds", holds)
    with Session(db) as session:
        events = list(session.scalars(select(ProvisioningEvent).order_by(ProvisioningEvent.id)))
        assert len({event.tenant_id for event in events}) == 2
        CHECKOUT_LOCK.apply(session, events)
        session.rollback()
    assert asked == sorted(asked, key=lambda pair: (pair[0], pair[1]))
    assert len(asked) == 4
