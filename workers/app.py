"""The Celery application and its configuration, in one place.

Tasks arrive with the side-effect pipeline (audit, checkout-lock, notify);
the settings below are the delivery guarantees they rely on.
"""

from __future__ import annotations

import os

from celery import Celery

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("simpleams")
app.conf.update(
    broker_url=REDIS_URL,
    # No result backend: tasks record their effects in PostgreSQL.
    result_backend=None,
    task_serializer="json",
    accept_content=["json"],
    timezone="UTC",
    enable_utc=True,
    # At-least-once: acknowledge after the task ran, and re-queue the task of
    # a worker that died mid-task. Tasks are idempotent (models/outbox.py).
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # Flower needs task events to show what the workers do.
    worker_send_task_events=True,
    task_send_sent_event=True,
    # Keep our logging configuration (Warehouse does the same).
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    # A task running longer than the visibility timeout is redelivered again
    # and again (DEPENDENCIES.md): keep the hard limit well below it.
    broker_transport_options={"visibility_timeout": 300},
    task_time_limit=60,
    task_soft_time_limit=50,
)
