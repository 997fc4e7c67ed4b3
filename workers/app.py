"""The Celery application and its configuration, in one place.

Delivery guarantees the tasks rely on (docs/dependencies.md, "Celery on Redis"):

- ``acks_late`` + ``reject_on_worker_lost``: a task whose worker dies
  mid-task is delivered again; every task is idempotent (models/outbox.py).
- ``prefetch_multiplier=1``: a worker holds at most one unacknowledged
  task per process, so a crash re-queues little.
- A hard time limit well below Redis' visibility timeout: a task that ran
  longer would be redelivered again and again.
- No result backend: effects are recorded in PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.apps.beat import Beat
from celery.signals import celeryd_init, setup_logging, worker_process_init
from kombu.entity import Exchange, Queue

from observability import logs
from workers import broker
from workers.routing import DIGEST_TASK, QUEUES
from workers.settings import settings

# redis:// and rediss:// broker URLs use our transport (workers/broker.py),
# in every process that imports this app: worker, relay, beat and Flower.
broker.use_for_redis_urls()

app = Celery("simpleams", include=["workers.audit", "workers.checkout_lock", "workers.notify"])
app.conf.update(
    broker_url=settings.redis_url,
    result_backend=None,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    timezone="UTC",
    enable_utc=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # Each queue on its own direct exchange and routing key. A bare
    # Queue(name) inherits the default exchange and key, so all three queues
    # were declared bound to one key; send_task(queue=...) still routed by
    # queue name (measured: each task ran once), but a publish by exchange
    # and key would have reached every queue. Explicit bindings remove that trap.
    task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
    task_default_queue="notify",
    task_default_exchange="notify",
    task_default_routing_key="notify",
    # Flower needs task events to show what the workers do.
    worker_send_task_events=True,
    task_send_sent_event=True,
    # Our logging configuration, not Celery's (``_log_as_every_process_does``).
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    # The relay retries publishing itself (tenacity) and must not block for
    # long on a frozen Redis: bound every socket operation.
    task_publish_retry=False,
    broker_transport_options={
        "visibility_timeout": 300,
        "socket_timeout": 5,
        "socket_connect_timeout": 5,
    },
    task_time_limit=60,
    task_soft_time_limit=50,
    beat_schedule={
        "send-digests": {
            "task": DIGEST_TASK.task_name,
            "schedule": settings.digest_check_every_seconds,
            "options": {"queue": DIGEST_TASK.queue, "expires": 60},
        }
    },
)


@setup_logging.connect
def _log_as_every_process_does(loglevel: Any = None, **_: Any) -> None:
    """The worker and beat log as web and the relay do (observability/logs.py):
    with a receiver for this signal, Celery configures no logging of its own."""
    logs.configure(loglevel or "INFO")


def _quiet_when_json() -> bool:
    """With JSON logs, the worker and beat skip Celery's start banner (as
    ``celery --quiet`` does): it is printed, not logged, and is not JSON."""
    return logs.log_format() == "json"


@celeryd_init.connect
def _worker_starts(instance: Any = None, options: Any = None, **_: Any) -> None:
    # Before Celery sets up logging (the signal above), the worker may warn
    # (running as root): configured now, that warning is a line in the format too.
    logs.configure((options or {}).get("loglevel") or "INFO")
    if instance is not None and _quiet_when_json():
        instance.quiet = True


class _Beat(Beat):  # type: ignore[misc]
    """``celery beat``, quiet when the logs are JSON. Beat prints its banner before
    any signal a receiver could answer, so the class itself decides."""

    def __init__(self, *args: Any, quiet: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, quiet=quiet or _quiet_when_json(), **kwargs)


app.Beat = app.subclass_with_self(_Beat)


@worker_process_init.connect
def _fresh_database_pool(**_: Any) -> None:
    from workers.db import reset_after_fork

    reset_after_fork()
