"""The relay against the real PostgreSQL: SCIM writes -> outbox -> a fake
publisher. Publishing order, batching, rollback on a broker
error (at least once), SKIP LOCKED between relays, the sweep, and the
LISTEN/NOTIFY wake-up. The broker side is tests/unit/workers/test_publisher.py,
and the count of waiting tasks (which holds the sweep back) is checked
against a real Redis at the end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from celery import Celery
from sqlalchemy import Engine, create_engine, text

from models.outbox import EFFECTS, EventKind
from tests.conftest import user_body
from tests.integration.pipeline import RedisServer
from workers.app import app as production_app
from workers.relay import HOLD_BACK_PAUSE, CeleryPublisher, Listener, Relay

DEACTIVATE = {"Operations": [{"op": "replace", "value": {"active": False}}]}


@dataclass
class FakePublisher:
    """Records what was published, in order; the ``fail_on``-th call raises
    the error a dead Redis raises, after the calls before it went through."""

    fail_on: int | None = None
    calls: list[tuple[int, str]] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    attempts: int = 0
    queued: int = 0

    def waiting(self) -> int:
        return self.queued

    def publish(self, events: Sequence[tuple[int, str]]) -> None:
        self.batches.append(len(events))
        for event_id, kind in events:  # one send per event, as one per task
            self.attempts += 1
            if self.attempts == self.fail_on:
                raise ConnectionError("Error 111 connecting to redis:6379. Connection refused.")
            self.calls.append((event_id, kind))


@dataclass
class BlockingPublisher(FakePublisher):
    """Blocks in its first publish, holding the relay's claimed rows, until released."""

    started: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def publish(self, events: Sequence[tuple[int, str]]) -> None:
        self.started.set()
        if not self.release.wait(timeout=30):
            raise AssertionError("the blocked relay was never released")
        super().publish(events)


@pytest.fixture
def engines(database_url: str) -> Iterator[Callable[..., Engine]]:
    """Engines of their own for relays (one per relay, as one per process)."""
    made: list[Engine] = []

    def make(**kwargs: Any) -> Engine:
        engine = create_engine(database_url, **kwargs)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.dispose()


async def create_users(client: httpx2.AsyncClient, count: int, prefix: str = "u") -> list[str]:
    ids = []
    for n in range(count):
        response = await client.post("/Users", json=user_body(f"{prefix}{n}@acme.test"))
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def events(db: Engine) -> list[Any]:
    with db.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT id, kind, published_at, publish_count, settled_at"
                    " FROM provisioning_events ORDER BY id"
                )
            ).all()
        )


def published(db: Engine) -> list[int]:
    return [e.id for e in events(db) if e.published_at is not None]


async def test_each_event_is_published_once_in_id_order_and_marked_published(
    client: httpx2.AsyncClient, db: Engine, engines: Callable[..., Engine]
) -> None:
    ids = await create_users(client, 3)
    assert (await client.patch(f"/Users/{ids[1]}", json=DEACTIVATE)).status_code == 200
    outbox = events(db)
    assert [e.kind for e in outbox] == ["user.created"] * 3 + ["user.deactivated"]
    publisher = FakePublisher()
    relay = Relay(engines(), publisher)

    assert relay.drain_once() == 4

    assert publisher.calls == [(e.id, e.kind) for e in outbox]
    assert publisher.batches == [4]  # one publish for the claimed batch
    after = events(db)
    assert all(e.published_at is not None for e in after)
    assert [e.publish_count for e in after] == [1, 1, 1, 1]
    assert relay.drain_once() == 0
    assert len(publisher.calls) == 4
    assert [e.publish_count for e in events(db)] == [1, 1, 1, 1]


async def test_a_backlog_larger_than_a_batch_is_drained_over_several_calls(
    client: httpx2.AsyncClient, db: Engine, engines: Callable[..., Engine]
) -> None:
    await create_users(client, 5)
    outbox = [e.id for e in events(db)]
    publisher = FakePublisher()
    relay = Relay(engines(), publisher, batch_size=2)

    assert relay.drain_once() == 2
    assert published(db) == outbox[:2]  # oldest first
    assert relay.drain_once() == 2
    assert published(db) == outbox[:4]
    assert relay.drain_once() == 1
    assert relay.drain_once() == 0

    assert [event_id for event_id, _ in publisher.calls] == outbox
    assert [e.publish_count for e in events(db)] == [1] * 5


async def test_a_broker_error_mid_batch_rolls_the_batch_back_and_the_next_drain_resends_it(
    client: httpx2.AsyncClient, db: Engine, engines: Callable[..., Engine]
) -> None:
    await create_users(client, 4)
    outbox = [(e.id, e.kind) for e in events(db)]
    publisher = FakePublisher(fail_on=3)
    relay = Relay(engines(), publisher)

    with pytest.raises(ConnectionError):
        relay.drain_once()

    assert publisher.calls == outbox[:2]  # sent before Redis went away...
    after = events(db)
    assert [e.published_at for e in after] == [None] * 4  # ...yet nothing is marked
    assert [e.publish_count for e in after] == [0] * 4

    publisher.fail_on = None
    assert relay.drain_once() == 4

    # At least once: the two already sent go again (same task ids, idempotent tasks).
    assert publisher.calls == outbox[:2] + outbox
    after = events(db)
    assert all(e.published_at is not None for e in after)
    assert [e.publish_count for e in after] == [1] * 4


async def test_two_relays_draining_at_once_never_publish_the_same_event(
    client: httpx2.AsyncClient, db: Engine, engines: Callable[..., Engine]
) -> None:
    await create_users(client, 6)
    outbox = [(e.id, e.kind) for e in events(db)]
    holder = BlockingPublisher()
    other = FakePublisher()
    first = Relay(engines(), holder, batch_size=2)
    # Without SKIP LOCKED the second relay would queue behind the first one's
    # row locks: fail with a lock timeout instead of hanging the suite.
    second = Relay(engines(connect_args={"options": "-c lock_timeout=5s"}), other, batch_size=10)

    with ThreadPoolExecutor(max_workers=2) as pool:
        holding = pool.submit(first.drain_once)
        try:
            assert holder.started.wait(timeout=10), "the first relay never claimed its batch"
            # The first relay now sits inside its transaction with rows 1-2 locked.
            assert pool.submit(second.drain_once).result(timeout=10) == 4
        finally:
            holder.release.set()
        assert holding.result(timeout=10) == 2

    assert holder.calls == outbox[:2]
    assert other.calls == outbox[2:]
    assert [e.publish_count for e in events(db)] == [1] * 6
    assert first.drain_once() == 0
    assert second.drain_once() == 0


def age(db: Engine, event_id: int, *, published_minutes_ago: int, settled: bool) -> None:
    with db.begin() as conn:
        conn.execute(
            text(
                "UPDATE provisioning_events SET"
                " published_at = now() - make_interval(mins => :minutes),"
                " settled_at = CASE WHEN :settled THEN now() END"
                " WHERE id = :id"
            ),
            {"id": event_id, "minutes": published_minutes_ago, "settled": settled},
        )


async def test_the_sweep_republishes_only_events_left_unsettled_too_long(
    client: httpx2.AsyncClient, db: Engine, engines: Callable[..., Engine]
) -> None:
    await create_users(client, 5)
    engine = engines()
    assert Relay(engine, FakePublisher()).drain_once() == 5
    e = [row.id for row in events(db)]
    age(db, e[0], published_minutes_ago=20, settled=False)  # lost: swept second
    age(db, e[1], published_minutes_ago=10, settled=True)  # done long ago
    age(db, e[2], published_minutes_ago=4, settled=False)  # still within sweep_after
    age(db, e[3], published_minutes_ago=30, settled=False)  # lost: swept first
    # e[4]: just published, unsettled. And one not yet published at all:
    await create_users(client, 1, prefix="late")
    late = events(db)[-1].id
    publisher = FakePublisher()
    relay = Relay(engine, publisher, batch_size=1, sweep_after=timedelta(minutes=5))

    assert relay.sweep_once() == 1
    assert relay.sweep_once() == 1
    assert relay.sweep_once() == 0  # a re-published event starts a fresh sweep_after

    assert publisher.calls == [(e[3], "user.created"), (e[0], "user.created")]
    after = {row.id: row for row in events(db)}
    assert {i: after[i].publish_count for i in (*e, late)} == {
        e[0]: 2,
        e[1]: 1,
        e[2]: 1,
        e[3]: 2,
        e[4]: 1,
        late: 0,
    }
    assert after[late].published_at is None  # unpublished events are drain_once's job
    with db.connect() as conn:
        recent = conn.execute(
            text("SELECT id FROM provisioning_events WHERE published_at > now() - interval '1 min'")
        ).scalars()
        assert set(recent) == {e[0], e[3], e[4]}


async def test_the_sweep_waits_while_tasks_are_still_queued(
    client: httpx2.AsyncClient, db: Engine, engines: Callable[..., Engine]
) -> None:
    """A backlog older than sweep_after is the workers being behind, not lost
    tasks: sweeping it would queue it a second time (and a third...)."""
    await create_users(client, 2)
    engine = engines()
    assert Relay(engine, FakePublisher()).drain_once() == 2
    for event in events(db):
        age(db, event.id, published_minutes_ago=20, settled=False)
    publisher = FakePublisher(queued=7)
    relay = Relay(engine, publisher, sweep_after=timedelta(minutes=5))

    assert relay.sweep_once() == 0
    assert publisher.calls == []
    publisher.queued = 0  # the workers caught up; what is still unsettled was lost
    assert relay.sweep_once() == 2
    assert [kind for _, kind in publisher.calls] == ["user.created", "user.created"]


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_relay_holds_new_events_back_while_the_workers_have_queued_work(
    client: httpx2.AsyncClient, db: Engine, engines: Callable[..., Engine]
) -> None:
    """Backpressure makes batches: while tasks wait in the broker the outbox
    collects events, so the next claim takes many; never for longer than
    max_hold_seconds after the last publish."""
    clock = FakeClock()
    publisher = FakePublisher()
    relay = Relay(engines(), publisher, max_waiting=6, max_hold_seconds=1.0, clock=clock)
    publisher.queued = 50
    assert relay.hold_back_for() == 0  # nothing published yet: nothing to wait for

    await create_users(client, 1)
    assert relay.drain_once() == 1
    publisher.queued = 5
    assert relay.hold_back_for() == 0  # the workers are running low: publish
    publisher.queued = 6
    assert relay.hold_back_for() == HOLD_BACK_PAUSE
    await create_users(client, 3, prefix="later")
    clock.now += 0.9
    assert relay.hold_back_for() == HOLD_BACK_PAUSE
    clock.now += 0.1
    assert relay.hold_back_for() == 0  # held for max_hold_seconds: publish anyway
    assert relay.drain_once() == 3
    assert publisher.batches == [1, 3]
    assert relay.hold_back_for() == HOLD_BACK_PAUSE  # the clock restarts with each publish


async def test_while_events_keep_coming_the_relay_publishes_at_most_once_per_linger(
    client: httpx2.AsyncClient, db: Engine, engines: Callable[..., Engine]
) -> None:
    """Linger makes batches without slowing a lone update: the first event
    after a quiet spell goes out at once, the ones right behind it wait for
    the rest of linger_seconds and go out together; a full claim (a backlog)
    is followed by the next one at once."""
    clock = FakeClock()
    publisher = FakePublisher(queued=0)
    relay = Relay(engines(), publisher, batch_size=3, linger_seconds=0.25, clock=clock)
    assert relay.hold_back_for() == 0

    await create_users(client, 1)
    assert relay.drain_once() == 1  # a lone update: at once
    await create_users(client, 2, prefix="right-behind")
    clock.now += 0.1
    assert relay.hold_back_for() == pytest.approx(0.15)
    clock.now += 0.15
    assert relay.hold_back_for() == 0
    assert relay.drain_once() == 2
    assert publisher.batches == [1, 2]

    await create_users(client, 5, prefix="backlog")
    clock.now += 0.25
    assert relay.drain_once() == 3  # a full claim...
    assert relay.hold_back_for() == 0  # ...so more is waiting: no linger
    assert relay.drain_once() == 2
    assert relay.hold_back_for() == pytest.approx(0.25)
    clock.now += 10  # a quiet spell
    assert relay.hold_back_for() == 0
    assert publisher.batches == [1, 2, 3, 2]


def test_a_relay_without_max_waiting_or_linger_never_holds_back(
    engines: Callable[..., Engine],
) -> None:
    publisher = FakePublisher(queued=10_000)
    relay = Relay(engines(), publisher, clock=FakeClock())
    assert relay.max_waiting == 0 and relay.linger_seconds == 0
    assert relay.hold_back_for() == 0


def timed_wait(listener: Listener, timeout: float, ready: threading.Event) -> float:
    ready.set()
    start = time.monotonic()
    listener.wait(timeout)
    return time.monotonic() - start


async def test_the_listener_wakes_as_soon_as_a_scim_write_commits(
    client: httpx2.AsyncClient, db: Engine, database_url: str, engines: Callable[..., Engine]
) -> None:
    listener = Listener(database_url)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            ready = threading.Event()
            waiting = pool.submit(timed_wait, listener, 10, ready)
            assert ready.wait(timeout=5)
            await create_users(client, 1)
            elapsed = waiting.result(timeout=15)
        assert elapsed < 1.5, f"woke {elapsed:.2f} s after a 10 s wait began"
        # Woken after the commit: the relay finds the event.
        assert Relay(engines(), FakePublisher()).drain_once() == 1
    finally:
        listener.close()


async def test_a_wake_up_consumes_the_pending_notifications(
    client: httpx2.AsyncClient, db: Engine, database_url: str
) -> None:
    listener = Listener(database_url)
    try:
        await create_users(client, 1)
        start = time.monotonic()
        listener.wait(10)
        assert time.monotonic() - start < 1.5

        # Consumed: with nothing new, the next wait lasts its whole timeout.
        start = time.monotonic()
        listener.wait(0.3)
        assert time.monotonic() - start >= 0.3

        # Three commits: PostgreSQL may deliver their notifications a moment
        # apart, so a wake-up per notification at most, then quiet again
        # (left unread, one would wake every wait: a busy loop).
        await create_users(client, 3, prefix="more")
        quick = 0
        for _ in range(10):
            start = time.monotonic()
            listener.wait(0.3)
            if time.monotonic() - start >= 0.3:
                break
            quick += 1
        assert 1 <= quick <= 3
    finally:
        listener.close()


def test_the_listener_returns_after_its_timeout_when_nothing_happens(
    db: Engine, database_url: str
) -> None:
    listener = Listener(database_url)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            elapsed = pool.submit(timed_wait, listener, 0.3, threading.Event()).result(timeout=5)
        assert 0.3 <= elapsed < 1.5
    finally:
        listener.close()


def test_the_celery_publisher_counts_tasks_no_worker_has_taken() -> None:
    """CeleryPublisher.waiting() against a real (private) Redis."""
    redis = RedisServer()
    redis.start()
    try:
        app = Celery("waiting-test", broker=redis.url)
        app.conf.update(
            task_queues=production_app.conf.task_queues,
            broker_connection_retry_on_startup=True,
        )
        publisher = CeleryPublisher(app)
        assert publisher.waiting() == 0
        publisher.publish([(1, EventKind.user_created.value)])
        publisher.publish([(2, EventKind.user_deactivated.value)])
        expected = len(EFFECTS[EventKind.user_created]) + len(EFFECTS[EventKind.user_deactivated])
        assert publisher.waiting() == expected
    finally:
        redis.cleanup()
