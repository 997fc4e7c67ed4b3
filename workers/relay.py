"""The relay: outbox rows -> Celery tasks. Runs as its own process (`relay` in the Procfile).

    python -m workers.relay

Loop: claim a batch of unpublished events (``FOR UPDATE SKIP LOCKED``, so
two relays never claim the same rows), publish per side effect one task per
``SIMPLEAMS_EFFECT_BATCH_SIZE`` events with a deterministic task id, mark
them published, commit. While the workers still have tasks queued, the relay
holds back for a moment so that the next claim is a bigger batch. A crash between
publishing and committing publishes again; tasks are idempotent. Between
batches the relay sleeps on PostgreSQL ``LISTEN provisioning_events`` (a
trigger NOTIFYs on every committed insert) with a short timeout as a
fallback, and every so often sweeps: events published long ago whose
effects have not all finished (their task was lost with a Redis restart)
are published again, once no task is waiting in the queues.

Broker errors are retried with tenacity; while Redis is down events simply
stay in the outbox, and the IdP's requests never notice.
"""

from __future__ import annotations

import contextlib
import logging
import select
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

import psycopg
from celery import Celery
from kombu.exceptions import ChannelError
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError
from sqlalchemy import Engine, func, update
from sqlalchemy import select as sql_select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError as SQLAlchemyOperationalError
from tenacity import (
    before_sleep_log,
    retry,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from models.outbox import ProvisioningEvent
from observability import logs
from workers.routing import QUEUES, ROUTES, effects_for, task_id
from workers.settings import WorkerSettings

log = logging.getLogger("simpleams.relay")

BROKER_ERRORS = (KombuOperationalError, RedisError, ConnectionError, TimeoutError)
DATABASE_ERRORS = (SQLAlchemyOperationalError, psycopg.OperationalError, psycopg.InterfaceError)
CHANNEL = "provisioning_events"
# How long the relay waits before asking the broker again while holding back
# for the workers.
HOLD_BACK_PAUSE = 0.05


class Publisher(Protocol):
    def publish(self, events: Sequence[tuple[int, str]]) -> None:
        """Publish the side effects of these (event id, kind) pairs."""
        ...

    def waiting(self) -> int:
        """Tasks queued in the broker that no worker has taken yet."""
        ...


class CeleryPublisher:
    """Publishes the side effects of a batch of events: per effect, one task
    per ``batch_size`` events, by stable name and deterministic id.

    Batches are what let the workers keep up with an initial sync: a task
    does a handful of statements for its whole batch (workers/effects.py).
    """

    def __init__(self, app: Celery, batch_size: int = 100) -> None:
        self.app = app
        self.batch_size = batch_size

    @retry(
        retry=retry_if_exception_type(BROKER_ERRORS),
        wait=wait_exponential_jitter(multiplier=0.2, max=5),
        stop=stop_after_delay(30),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    )
    def publish(self, events: Sequence[tuple[int, str]]) -> None:
        for effect, route in ROUTES.items():
            ids = sorted(event_id for event_id, kind in events if effect in effects_for(kind))
            for start in range(0, len(ids), self.batch_size):
                batch = ids[start : start + self.batch_size]
                self.app.send_task(
                    route.task_name,
                    kwargs={"event_ids": batch},
                    task_id=task_id(batch, effect),
                    queue=route.queue,
                )

    def waiting(self) -> int:
        # From the broker pool: a new connection per call was most of the
        # relay's CPU while it held back (it asks every HOLD_BACK_PAUSE).
        with self.app.pool.acquire(block=True) as connection:
            channel = connection.default_channel
            total = 0
            for queue in QUEUES:
                # A queue never declared has had no task queued: ChannelError (404).
                with contextlib.suppress(ChannelError):
                    total += channel.queue_declare(queue=queue, passive=True).message_count
            return total


@dataclass
class Relay:
    """
    :param engine: a synchronous engine on the application database.
    :param publisher: where tasks go (Celery in production, a fake in unit tests).
    :param batch_size: events claimed per transaction.
    :param sweep_after: re-publish events still unsettled this long after publishing.
    :param linger_seconds: while events keep arriving, publish at most this
        often (an event after a quiet spell is published at once).
    :param max_waiting: hold new events back while this many tasks wait in the
        broker (0: publish as soon as events arrive).
    :param max_hold_seconds: but never longer than this since the last publish.
    :param clock: ``time.monotonic``; tests pass their own.
    """

    engine: Engine
    publisher: Publisher
    batch_size: int = 500
    sweep_after: timedelta = timedelta(minutes=5)
    linger_seconds: float = 0.0
    max_waiting: int = 0
    max_hold_seconds: float = 1.0
    clock: Callable[[], float] = time.monotonic
    _last_publish: float = field(default=float("-inf"), init=False)
    _last_claim_full: bool = field(default=False, init=False)

    def drain_once(self) -> int:
        """Publish one batch of unpublished events; returns how many."""
        published = self._publish_claimed(
            sql_select(ProvisioningEvent.id, ProvisioningEvent.kind)
            .where(ProvisioningEvent.published_at.is_(None))
            .order_by(ProvisioningEvent.id)
        )
        if published:
            self._last_publish = self.clock()
        self._last_claim_full = published >= self.batch_size
        return published

    def hold_back_for(self) -> float:
        """How long to let the outbox collect a bigger batch before publishing (0: now).

        Publishing each event as it arrives makes tiny batches: during an
        initial sync, one task per few events and effect, and a task's fixed
        cost (the broker, Celery's bookkeeping, a transaction of half a dozen
        statements) then costs the workers more CPU than the events' own
        work, CPU the gateway needs on the same machine. So:

        - while events keep arriving, publish at most every ``linger_seconds``
          (a lone update after a quiet spell goes out at once, a backlog that
          fills whole claims goes out back to back);
        - while the workers still have ``max_waiting`` tasks queued, wait for
          them to run low, for at most ``max_hold_seconds`` since the last
          publish, so a slow queue (SMTP down, notify tasks retrying) delays
          the other effects by at most that.
        """
        since = self.clock() - self._last_publish
        if since < self.linger_seconds and not self._last_claim_full:
            return self.linger_seconds - since
        if not self.max_waiting or since >= self.max_hold_seconds:
            return 0.0
        return HOLD_BACK_PAUSE if self.publisher.waiting() >= self.max_waiting else 0.0

    def sweep_once(self) -> int:
        """Publish again events whose effects have not all finished in time.

        Not while tasks are still queued: then the workers are behind (a
        large initial sync), not missing tasks, and publishing the old part
        of the backlog again would only queue it twice, sweep after sweep.
        Tasks lost with Redis are re-published once the queues have drained.
        """
        if self.publisher.waiting():
            return 0
        cutoff = func.now() - self.sweep_after
        return self._publish_claimed(
            sql_select(ProvisioningEvent.id, ProvisioningEvent.kind)
            .where(
                ProvisioningEvent.published_at.is_not(None),
                ProvisioningEvent.settled_at.is_(None),
                ProvisioningEvent.published_at < cutoff,
            )
            .order_by(ProvisioningEvent.published_at)
        )

    def _publish_claimed(self, query: Any) -> int:
        with self.engine.begin() as conn:
            rows: Sequence[Any] = conn.execute(
                query.limit(self.batch_size).with_for_update(skip_locked=True, key_share=True)
            ).all()
            if rows:
                self.publisher.publish([(row.id, row.kind) for row in rows])
                conn.execute(
                    update(ProvisioningEvent)
                    .where(ProvisioningEvent.id.in_([row.id for row in rows]))
                    .values(
                        published_at=func.now(),
                        publish_count=ProvisioningEvent.publish_count + 1,
                    )
                )
        return len(rows)


class Listener:
    """A dedicated autocommit connection LISTENing for new events."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self.conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
        self.conn.execute(f"LISTEN {CHANNEL}")

    def wait(self, timeout: float) -> None:
        """Return when an event was committed, or after ``timeout`` seconds."""
        ready, _, _ = select.select([self.conn.fileno()], [], [], timeout)
        if ready:
            # Drain every pending notification: one wake-up per batch is enough.
            for _ in self.conn.notifies(timeout=0):
                pass

    def close(self) -> None:
        self.conn.close()


def run(settings: WorkerSettings) -> None:
    from workers.app import app
    from workers.db import engine

    relay = Relay(
        engine,
        CeleryPublisher(app, batch_size=settings.effect_batch_size),
        sweep_after=timedelta(seconds=settings.sweep_after_seconds),
        linger_seconds=settings.relay_linger_ms / 1000,
        max_waiting=settings.relay_max_waiting,
    )
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    listener: Listener | None = None
    next_sweep = time.monotonic()
    log.info("relay started")
    while not stopping:
        try:
            if listener is None and settings.relay_listen:
                listener = Listener(settings.database_url)
            pause = relay.hold_back_for()
            if pause:
                time.sleep(pause)  # a rate limit: let the next batch grow
                continue
            published = relay.drain_once()
            if time.monotonic() >= next_sweep:
                swept = relay.sweep_once()
                if swept:
                    log.warning("re-published %d unsettled events", swept)
                next_sweep = time.monotonic() + max(1.0, settings.sweep_after_seconds / 4)
            if published:
                log.info("published %d events", published)
                continue  # drain until the outbox is empty
            if listener is not None:
                listener.wait(settings.relay_poll_seconds)
            else:
                time.sleep(settings.relay_poll_seconds)  # polling mode: the interval is the point
        except BROKER_ERRORS as exc:
            # tenacity gave up for now: the events stay unpublished; try again.
            log.error("broker unavailable, events stay in the outbox: %s", type(exc).__name__)
            time.sleep(settings.relay_poll_seconds)  # back off before the next attempt
        except DATABASE_ERRORS as exc:
            log.error("database unavailable: %s", type(exc).__name__)
            if listener is not None:
                listener.close()
                listener = None
            time.sleep(settings.relay_poll_seconds)  # back off until PostgreSQL is back
    if listener is not None:
        listener.close()
    log.info("relay stopped")


def main() -> None:
    from workers.settings import settings

    logs.configure()
    run(settings)


if __name__ == "__main__":
    main()
