"""CeleryPublisher: per routed side effect, one task per batch of events, by
stable name and deterministic id, retried through broker hiccups.

No sockets: kombu's Redis transport talks to a fakeredis server. kombu builds
its redis-py connection pools from ``Channel.connection_class``; pointing that
at a ``FakeRedisConnection`` bound to one ``FakeServer`` is the one seam, and
everything above it (Celery's router, kombu's serialisation, the LPUSH onto
the queue's list) runs for real.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import kombu.transport.redis
import pytest
import redis
import tenacity
from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError

from models.outbox import Effect, EventKind
from workers.app import app as production_app
from workers.relay import CeleryPublisher
from workers.routing import EFFECTS, QUEUES, ROUTES


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeServer:
    """The fake Redis every kombu connection of this test talks to."""
    server = fakeredis.FakeServer()

    class _FakeBrokerConnection(fakeredis.FakeRedisConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "server": server})

        def read_response(self, *args: Any, **kwargs: Any) -> Any:
            # redis-py's own read_response pushes the next PING health check
            # out by health_check_interval (kombu sets 25 s); fakeredis's
            # override does not, so every command would be preceded by a PING.
            # Since redis-py 8.2 the connection handshake sends its commands
            # first and reads their replies after, and such a PING, sent in
            # between, reads a handshake reply: "Bad response from PING health
            # check". Doing the bookkeeping here makes the seam behave as a
            # real connection does on any redis-py (docs/dependencies.md).
            response = super().read_response(*args, **kwargs)
            self.next_health_check = time.monotonic() + self.health_check_interval
            return response

    monkeypatch.setattr(kombu.transport.redis.Channel, "connection_class", _FakeBrokerConnection)
    return server


@pytest.fixture
def app(broker: fakeredis.FakeServer) -> Iterator[Celery]:
    """A private Celery app with the production configuration (queues,
    serializer, publish options); only the broker is fake."""
    test_app = Celery("simpleams-test", set_as_current=False)
    test_app.conf.update(production_app.conf.changes)
    # kombu keeps producer pools in a process-wide registry keyed by broker
    # address: a fresh address per test, or the pool of an earlier test (and
    # its FakeServer) would be reused.
    test_app.conf.broker_url = f"redis://fake-broker-{uuid.uuid4().hex}:6379/0"
    # kombu's own connect retry (up to broker_connection_timeout, 4 s, with
    # real sleeps) would run inside every tenacity attempt; off, so that the
    # retries under test are tenacity's alone and the tests stay instant.
    test_app.conf.broker_transport_options = {
        **production_app.conf.broker_transport_options,
        "max_retries": 0,
    }
    # Declare the queues, as a worker starting up does: with their bindings in
    # Redis, a message routed by exchange rather than by queue would fan out.
    with test_app.connection_for_write() as connection:
        for queue in test_app.amqp.queues.values():
            queue.bind(connection.default_channel).declare()
    yield test_app
    producers = test_app.amqp.producer_pool
    producers.force_close_all()
    producers.connections.force_close_all()
    test_app.close()


@dataclass(frozen=True)
class Message:
    queue: str
    task: str
    id: str
    args: list[Any]
    kwargs: dict[str, Any]
    content_type: str
    correlation_id: str


def messages(server: fakeredis.FakeServer, queue: str) -> list[Message]:
    """What a worker consuming ``queue`` would receive, oldest first."""
    client = fakeredis.FakeRedis(server=server)
    found = []
    # kombu LPUSHes and workers BRPOP: the oldest message is at the right end.
    for raw in reversed(client.lrange(queue, 0, -1)):
        envelope = json.loads(raw)
        properties = envelope["properties"]
        assert properties["body_encoding"] == "base64"
        args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        found.append(
            Message(
                queue=properties["delivery_info"]["routing_key"],
                task=envelope["headers"]["task"],
                id=envelope["headers"]["id"],
                args=args,
                kwargs=kwargs,
                content_type=envelope["content-type"],
                correlation_id=properties["correlation_id"],
            )
        )
    return found


def by_queue(server: fakeredis.FakeServer) -> dict[str, list[tuple[str, str]]]:
    return {queue: [(m.task, m.id) for m in messages(server, queue)] for queue in QUEUES}


@dataclass
class FakeSleep:
    """Stands in for tenacity's sleep: records the waits, never sleeps, and can
    bring the broker back after a number of them."""

    server: fakeredis.FakeServer | None = None
    recover_after: int | None = None
    waits: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.server is not None and len(self.waits) == self.recover_after:
            self.server.connected = True


def test_a_created_user_fans_out_to_audit_lock_and_notify_by_stable_name(
    app: Celery, broker: fakeredis.FakeServer
) -> None:
    CeleryPublisher(app).publish([(7, "user.created")])

    # Literal names: task names are a contract with running workers.
    assert by_queue(broker) == {
        "audit": [("simpleams.audit.record", "7:audit")],
        "checkout": [("simpleams.checkout.apply_lock", "7:checkout_lock")],
        "notify": [("simpleams.notify.on_event", "7:notify")],
    }
    for queue in QUEUES:
        (message,) = messages(broker, queue)
        assert message.queue == queue
        assert message.args == []
        assert message.kwargs == {"event_ids": [7]}
        assert message.content_type == "application/json"
        assert message.correlation_id == message.id


def test_an_update_has_no_checkout_lock_task(app: Celery, broker: fakeredis.FakeServer) -> None:
    CeleryPublisher(app).publish([(8, "user.updated")])

    assert by_queue(broker) == {
        "audit": [("simpleams.audit.record", "8:audit")],
        "checkout": [],
        "notify": [("simpleams.notify.on_event", "8:notify")],
    }


@pytest.mark.parametrize("kind", list(EventKind))
def test_every_kind_publishes_exactly_its_routed_effects(
    app: Celery, broker: fakeredis.FakeServer, kind: EventKind
) -> None:
    CeleryPublisher(app).publish([(41, kind.value)])

    expected: dict[str, list[tuple[str, str]]] = {queue: [] for queue in QUEUES}
    for effect in EFFECTS[kind]:
        route = ROUTES[effect]
        expected[route.queue].append((route.task_name, f"41:{effect.value}"))
    assert by_queue(broker) == expected
    assert all(m.kwargs == {"event_ids": [41]} for q in QUEUES for m in messages(broker, q))


def test_a_batch_of_events_is_one_task_per_effect_and_batch_size(
    app: Celery, broker: fakeredis.FakeServer
) -> None:
    """Five events, batches of two: each effect's events in id order, split in
    twos; an effect only carries the events routed to it."""
    events = [
        (13, "user.created"),
        (11, "user.updated"),
        (12, "user.created"),
        (14, "user.updated"),
        (15, "user.deactivated"),
    ]
    CeleryPublisher(app, batch_size=2).publish(events)

    audit = messages(broker, "audit")
    assert [(m.id, m.kwargs) for m in audit] == [
        ("11..12:audit", {"event_ids": [11, 12]}),
        ("13..14:audit", {"event_ids": [13, 14]}),
        ("15:audit", {"event_ids": [15]}),
    ]
    lock = messages(broker, "checkout")
    assert [(m.id, m.kwargs) for m in lock] == [
        ("12..13:checkout_lock", {"event_ids": [12, 13]}),
        ("15:checkout_lock", {"event_ids": [15]}),
    ]
    notify = messages(broker, "notify")
    assert [m.kwargs["event_ids"] for m in notify] == [[11, 12], [13, 14], [15]]
    assert {m.task for m in audit} == {"simpleams.audit.record"}


def test_publishing_an_event_again_reuses_its_task_ids(
    app: Celery, broker: fakeredis.FakeServer
) -> None:
    publisher = CeleryPublisher(app)
    publisher.publish([(12, "user.deactivated")])
    publisher.publish([(12, "user.deactivated")])

    for effect in (Effect.audit, Effect.checkout_lock, Effect.notify):
        sent = messages(broker, ROUTES[effect].queue)
        assert [m.id for m in sent] == [f"12:{effect.value}"] * 2


def test_a_broker_outage_is_retried_until_redis_answers_again(
    app: Celery, broker: fakeredis.FakeServer
) -> None:
    broker.connected = False
    sleep = FakeSleep(server=broker, recover_after=2)

    CeleryPublisher.publish.retry_with(sleep=sleep)(CeleryPublisher(app), [(5, "user.created")])

    assert len(sleep.waits) == 2
    assert by_queue(broker) == {
        "audit": [("simpleams.audit.record", "5:audit")],
        "checkout": [("simpleams.checkout.apply_lock", "5:checkout_lock")],
        "notify": [("simpleams.notify.on_event", "5:notify")],
    }


def test_a_connection_error_mid_event_republishes_under_the_same_ids(
    app: Celery, broker: fakeredis.FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis drops between two effects of one event: the retry sends the whole
    event again, and the duplicate carries the same id, so consumers dedupe."""
    real_send_task = app.send_task
    calls = 0

    def flaky_send_task(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise redis.ConnectionError("Connection reset by peer")
        return real_send_task(*args, **kwargs)

    monkeypatch.setattr(app, "send_task", flaky_send_task)
    sleep = FakeSleep()

    CeleryPublisher.publish.retry_with(sleep=sleep)(CeleryPublisher(app), [(9, "user.created")])

    assert len(sleep.waits) == 1
    assert by_queue(broker) == {
        "audit": [("simpleams.audit.record", "9:audit")] * 2,
        "checkout": [("simpleams.checkout.apply_lock", "9:checkout_lock")],
        "notify": [("simpleams.notify.on_event", "9:notify")],
    }


class FakeClock:
    """tenacity's clock and sleep in one: sleeping advances the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        if len(self.waits) > 1000:
            raise AssertionError("publish never gave up on a dead broker")
        self.now += seconds


def test_a_lasting_outage_reraises_the_broker_error_once_the_policy_gives_up(
    app: Celery, broker: fakeredis.FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production wait and stop, on a fake clock: the relay gets the broker
    error itself (not tenacity's RetryError) and leaves the event in the outbox."""
    clock = FakeClock()
    monkeypatch.setattr(tenacity, "time", clock)  # the clock stop_after_delay reads
    broker.connected = False

    with pytest.raises(KombuOperationalError):
        CeleryPublisher.publish.retry_with(sleep=clock.sleep)(
            CeleryPublisher(app), [(3, "user.created")]
        )

    assert len(clock.waits) >= 3
    # Backoff capped at 5 s; gives up on the first failure at or after 30 s.
    assert max(clock.waits) <= 5
    assert 30 <= sum(clock.waits) < 30 + 5
    broker.connected = True
    assert by_queue(broker) == {queue: [] for queue in QUEUES}


def test_errors_that_are_not_the_brokers_are_not_retried(
    app: Celery, broker: fakeredis.FakeServer
) -> None:
    sleep = FakeSleep()

    with pytest.raises(ValueError, match=r"user\.exploded"):
        CeleryPublisher.publish.retry_with(sleep=sleep)(
            CeleryPublisher(app), [(1, "user.exploded")]
        )

    assert sleep.waits == []
    assert by_queue(broker) == {queue: [] for queue in QUEUES}
