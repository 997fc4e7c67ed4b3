"""The fan-out table: which side effects each event kind has, and where they run.

Task names are a contract (the relay sends by name; ops read them in Flower),
so they are explicit and never derived from module paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from models.outbox import EFFECTS, Effect, EventKind


@dataclass(frozen=True)
class Route:
    task_name: str
    queue: str


ROUTES: dict[Effect, Route] = {
    Effect.audit: Route("simpleams.audit.record", "audit"),
    Effect.checkout_lock: Route("simpleams.checkout.apply_lock", "checkout"),
    Effect.notify: Route("simpleams.notify.on_event", "notify"),
}

DIGEST_TASK = Route("simpleams.notify.send_digests", "notify")
# Every queue a task is routed to, in the table's order. The app declares
# them as its task_queues (workers/app.py), and a worker started without
# --queues (the Procfile, docker-compose) consumes exactly these.
QUEUES = tuple(dict.fromkeys([*(route.queue for route in ROUTES.values()), DIGEST_TASK.queue]))

__all__ = ["DIGEST_TASK", "EFFECTS", "QUEUES", "ROUTES", "Route", "effects_for", "task_id"]


def effects_for(kind: str) -> tuple[Effect, ...]:
    return EFFECTS[EventKind(kind)]


def task_id(event_ids: Sequence[int], effect: Effect) -> str:
    """Deterministic: the same batch and effect always publish under the same id.

    ``42:audit`` for one event; ``42..97:audit`` for a batch (the first and
    last of its ids), which is what ops read in Flower.
    """
    first, last = min(event_ids), max(event_ids)
    events = str(first) if first == last else f"{first}..{last}"
    return f"{events}:{effect.value}"
