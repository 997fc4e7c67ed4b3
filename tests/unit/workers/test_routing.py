"""The fan-out table and the queues it relies on."""

from __future__ import annotations

from models.outbox import Effect, EventKind
from workers.app import app
from workers.routing import EFFECTS, ROUTES, task_id


def test_every_event_kind_is_audited_and_routed() -> None:
    assert set(EFFECTS) == set(EventKind)
    for kind, effects in EFFECTS.items():
        assert Effect.audit in effects
        if kind.startswith("user."):
            assert Effect.notify in effects
        else:
            # A group's own events are audited only: the roles they change
            # are user events, which notify (models/roles.py).
            assert effects == (Effect.audit,)


def test_each_queue_has_its_own_binding() -> None:
    # A bare Queue(name) inherits the default exchange and routing key, so
    # every queue is bound to the same key: a publish by exchange and key
    # would reach all of them.
    bindings = {
        name: (queue.exchange.name, queue.routing_key) for name, queue in app.amqp.queues.items()
    }
    for route in ROUTES.values():
        assert bindings[route.queue] == (route.queue, route.queue)
    assert len(set(bindings.values())) == len(bindings)


def test_task_names_are_registered_and_stable() -> None:
    app.loader.import_default_modules()
    for route in ROUTES.values():
        assert route.task_name in app.tasks
        assert route.task_name.startswith("simpleams.")


def test_task_ids_are_deterministic() -> None:
    assert task_id([42], Effect.audit) == "42:audit"
    assert task_id([42, 43, 97], Effect.notify) == "42..97:notify"
