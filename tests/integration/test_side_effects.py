"""The side-effect pipeline with real processes: SCIM write -> outbox -> relay ->
Redis -> Celery worker -> PostgreSQL / SMTP. Nothing here is mocked."""

from __future__ import annotations

import os
import re
import signal
from typing import Any

import httpx2
from sqlalchemy import Engine, text

from gateway import staff_history, tenancy
from tests.conftest import TenantHandle, user_body
from tests.db import rows, scalar
from tests.integration.cli import simpleams
from tests.integration.live_server import free_port
from tests.integration.pipeline import Pipeline, settled, wait_for

DEACTIVATE = {"Operations": [{"op": "replace", "value": {"active": False}}]}
REACTIVATE = {"Operations": [{"op": "replace", "value": {"active": True}}]}


async def test_a_scim_write_fans_out_to_audit_lock_and_email(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle, pipeline: Pipeline
) -> None:
    with db.begin() as conn:
        tenancy.set_notify_email(conn, tenant.slug, "it-admins@acme.test")
    for name in ("worker", "relay", "beat"):
        pipeline.start(name)

    created = (await client.post("/Users", json=user_body("lee@acme.test"))).json()
    with db.begin() as conn:
        staff_history.record_checkout(conn, tenant.slug, "lee@acme.test", "LAPTOP-7")
    deactivated = await client.patch(f"/Users/{created['id']}", json=DEACTIVATE)
    assert deactivated.status_code == 200

    wait_for(lambda: settled(db) and scalar(db, "SELECT count(*) FROM audit_log") == 2, "effects")
    entries = rows(
        db, "SELECT action, actor_idp, request_id, changes FROM audit_log ORDER BY event_id"
    )
    assert [e.action for e in entries] == ["created", "deactivated"]
    assert entries[1].changes == {"active": [True, False]}
    assert entries[1].request_id == deactivated.headers["x-request-id"]
    assert scalar(db, "SELECT checkout_locked FROM users") is True
    assert scalar(db, "SELECT recovery_flagged_at IS NOT NULL FROM checkouts") is True

    leaver = wait_for(
        lambda: next((m for m in pipeline.smtp.messages if "Leaver" in m["Subject"]), None),
        "the leaver alert",
    )
    assert leaver["To"] == "it-admins@acme.test"
    assert leaver["Subject"] == "Leaver Lee Example still holds 1 asset"
    assert leaver["Message-ID"] and leaver["Date"] and "SimpleAMS" in leaver["From"]
    body = leaver.get_content()
    staff_id = scalar(db, "SELECT id FROM users")
    assert "LAPTOP-7" in body
    assert f"https://acme.simpleams.test/staff/{staff_id}" in body

    digest = wait_for(
        lambda: next((m for m in pipeline.smtp.messages if "created" in m["Subject"]), None),
        "the digest",
    )
    assert digest["Subject"] == "Your identity provider created 1 user"
    assert "https://acme.simpleams.test/staff" in digest.get_content()
    for message in pipeline.smtp.messages:
        assert tenant.token not in message.as_string()
        assert "sams_scim_" not in message.as_string()


async def test_an_initial_sync_is_one_digest_not_one_email_per_user(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle, pipeline: Pipeline
) -> None:
    with db.begin() as conn:
        tenancy.set_notify_email(conn, tenant.slug, "it-admins@acme.test")
    okta = {"User-Agent": "Okta SCIM Client 1.0.0"}
    for n in range(40):
        response = await client.post("/Users", json=user_body(f"u{n}@acme.test"), headers=okta)
        assert response.status_code == 201
    pipeline.start("worker")
    pipeline.start("relay")
    wait_for(lambda: settled(db), "all events settled")
    pipeline.start("beat")

    digest = wait_for(lambda: pipeline.smtp.messages, "the digest")[0]
    assert digest["Subject"] == "Okta created 40 users"
    wait_for(lambda: scalar(db, "SELECT count(*) FROM notifications WHERE status = 'sent'"), "sent")
    assert len(pipeline.smtp.messages) == 1


async def test_writes_succeed_while_redis_is_down_and_every_effect_runs_once_after(
    client: httpx2.AsyncClient, db: Engine, pipeline: Pipeline
) -> None:
    pipeline.start("worker")
    pipeline.start("relay")
    pipeline.redis.stop()

    ids = []
    for n in range(5):
        response = await client.post("/Users", json=user_body(f"r{n}@acme.test"))
        assert response.status_code == 201
        ids.append(response.json()["id"])
    assert (await client.patch(f"/Users/{ids[0]}", json=DEACTIVATE)).status_code == 200
    assert (await client.delete(f"/Users/{ids[1]}")).status_code == 204
    assert scalar(db, "SELECT count(*) FROM provisioning_events WHERE published_at IS NULL") == 7

    pipeline.redis.start()

    wait_for(lambda: settled(db), "every event settled after Redis came back", timeout=90)
    assert scalar(db, "SELECT count(*) FROM audit_log") == 7
    # Every routed effect ran exactly once: 7 audits, 5+2 lock runs, 7 notify runs.
    per_effect = dict(rows(db, "SELECT effect, count(*) FROM side_effect_runs GROUP BY effect"))
    assert per_effect == {"audit": 7, "checkout_lock": 7, "notify": 7}
    assert scalar(db, "SELECT count(*) FROM side_effect_runs WHERE status <> 'done'") == 0
    locked = rows(db, "SELECT user_name FROM users WHERE checkout_locked ORDER BY user_name")
    assert [r.user_name for r in locked] == ["r0@acme.test", "r1@acme.test"]


async def test_a_task_killed_mid_run_runs_again_and_its_effect_happens_once(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle, pipeline: Pipeline
) -> None:
    worker = pipeline.start("worker", WORKER_CONCURRENCY="1")
    pipeline.start("relay")
    created = (await client.post("/Users", json=user_body("kat@acme.test"))).json()
    with db.begin() as conn:
        staff_history.record_checkout(conn, tenant.slug, "kat@acme.test", "PHONE-3")
    wait_for(lambda: settled(db), "the creation's effects")

    # Hold the checkout row so the lock task blocks mid-transaction.
    with db.connect() as blocker:
        blocker.execute(text("SELECT id FROM checkouts FOR UPDATE"))
        assert (await client.patch(f"/Users/{created['id']}", json=DEACTIVATE)).status_code == 200
        waiting = wait_for(
            lambda: scalar(
                db,
                # This database's worker only: other pytest-xdist processes run theirs.
                "SELECT application_name FROM pg_stat_activity "
                "WHERE datname = current_database() "
                "AND application_name LIKE 'simpleams-worker:%' AND wait_event_type = 'Lock'",
            ),
            "the lock task to block on the checkout row",
        )
        os.kill(int(waiting.split(":")[1]), signal.SIGKILL)
        blocker.rollback()

    wait_for(lambda: settled(db), "the deactivation's effects after the kill", timeout=90)
    assert re.search(r"SIGKILL|signal 9", worker.output())
    assert scalar(db, "SELECT checkout_locked FROM users") is True
    assert scalar(db, "SELECT recovery_flagged_at IS NOT NULL FROM checkouts") is True
    assert (
        scalar(db, "SELECT count(*) FROM side_effect_runs WHERE effect = 'checkout_lock'") == 2
    )  # one per event: created, deactivated
    assert scalar(db, "SELECT count(*) FROM audit_log") == 2


async def test_deactivate_then_reactivate_ends_unlocked_even_when_run_out_of_order(
    client: httpx2.AsyncClient, db: Engine, pipeline: Pipeline
) -> None:
    from celery import Celery

    from workers.relay import CeleryPublisher

    created = (await client.post("/Users", json=user_body("ooo@acme.test"))).json()
    await client.patch(f"/Users/{created['id']}", json=DEACTIVATE)
    await client.patch(f"/Users/{created['id']}", json=REACTIVATE)
    events = rows(db, "SELECT id, kind FROM provisioning_events ORDER BY id")
    assert [e.kind for e in events] == ["user.created", "user.deactivated", "user.reactivated"]

    # No relay: publish by hand, newest first, to a single worker process.
    publisher = CeleryPublisher(Celery(broker=pipeline.redis.url))
    for event in reversed(events):
        publisher.publish([(event.id, event.kind)])
    with db.begin() as conn:
        conn.execute(text("UPDATE provisioning_events SET published_at = now()"))
    pipeline.start("worker", WORKER_CONCURRENCY="1")

    wait_for(lambda: settled(db), "all three events settled")
    order = rows(
        db,
        "SELECT event_id FROM side_effect_runs WHERE effect = 'checkout_lock' ORDER BY finished_at",
    )
    assert [r.event_id for r in order] == [e.id for e in reversed(events)]
    assert scalar(db, "SELECT checkout_locked FROM users") is False


async def test_flower_lists_the_worker_and_the_tasks_it_processed(
    client: httpx2.AsyncClient, db: Engine, pipeline: Pipeline
) -> None:
    port = free_port()
    pipeline.start("flower", FLOWER_PORT=str(port), FLOWER_BASIC_AUTH="ops:watch")
    api = f"http://127.0.0.1:{port}/api"

    def flower(path: str) -> Any:
        try:
            response = httpx2.get(f"{api}{path}", auth=("ops", "watch"), timeout=5)
        except httpx2.TransportError:
            return None
        return response.json() if response.status_code == 200 else None

    wait_for(lambda: flower("/workers") is not None, "flower to answer")
    pipeline.start("worker", "-n flower-test@%h")
    pipeline.start("relay")
    await client.post("/Users", json=user_body("fl@acme.test"))
    wait_for(lambda: settled(db), "the effects")

    workers = wait_for(
        lambda: (
            (found := flower("/workers?refresh=1"))
            and any("flower-test@" in w for w in found)
            and found
        ),
        "flower to list the worker",
    )
    assert any("flower-test@" in name for name in workers)
    tasks = wait_for(
        lambda: (found := flower("/tasks")) and len(found) >= 3 and found, "flower to list tasks"
    )
    names = {task["name"] for task in tasks.values()}
    assert names >= {
        "simpleams.audit.record",
        "simpleams.checkout.apply_lock",
        "simpleams.notify.on_event",
    }
    assert {task["state"] for task in tasks.values()} == {"SUCCESS"}


async def test_one_bad_event_in_a_batch_is_one_dead_letter_and_the_rest_happen(
    client: httpx2.AsyncClient, db: Engine, pipeline: Pipeline
) -> None:
    """The five events reach the worker as one batch per effect; the audit
    batch fails on one of them, and is run again one event at a time."""
    for n in range(5):
        assert (await client.post("/Users", json=user_body(f"b{n}@acme.test"))).status_code == 201
    ids = [row.id for row in rows(db, "SELECT id FROM provisioning_events ORDER BY id")]
    bad = ids[2]
    # An entry for the event already in the log, unknown to the run
    # bookkeeping: recording it again breaks the log's unique event_id.
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_log (event_id, tenant_id, user_id, occurred_at, action,"
                " actor_idp, target_user_name, changes)"
                " SELECT id, tenant_id, user_id, occurred_at, 'created', 'scim', 'x', '{}'"
                " FROM provisioning_events WHERE id = :id"
            ),
            {"id": bad},
        )
    worker = pipeline.start("worker")
    pipeline.start("relay")

    wait_for(lambda: settled(db), "every event settled, the bad one with a dead letter")
    runs = rows(db, "SELECT event_id, effect, status, error FROM side_effect_runs ORDER BY 1, 2")
    failed = [(r.event_id, r.effect) for r in runs if r.status != "done"]
    assert failed == [(bad, "audit")]
    assert "IntegrityError" in next(r.error for r in runs if r.status == "failed")
    assert len(runs) == 5 * 3
    assert scalar(db, "SELECT count(*) FROM audit_log") == 5
    assert "a batch of 5 audit effects failed" in worker.output()


async def test_overlapping_batches_apply_each_effect_once(
    client: httpx2.AsyncClient, db: Engine, pipeline: Pipeline
) -> None:
    """The same events published twice in batches of different shapes (a
    relay re-publish after a crash, the sweep), plus one task in the format
    before batching: two worker processes, and each effect still happens once."""
    from celery import Celery

    from workers.relay import CeleryPublisher

    for n in range(8):
        assert (await client.post("/Users", json=user_body(f"o{n}@acme.test"))).status_code == 201
    events = [(row.id, row.kind) for row in rows(db, "SELECT id, kind FROM provisioning_events")]
    app = Celery(broker=pipeline.redis.url)
    CeleryPublisher(app, batch_size=3).publish(events)
    CeleryPublisher(app, batch_size=5).publish(events)
    app.send_task("simpleams.audit.record", kwargs={"event_id": events[0][0]}, queue="audit")
    with db.begin() as conn:
        conn.execute(text("UPDATE provisioning_events SET published_at = now()"))
    worker = pipeline.start("worker", WORKER_CONCURRENCY="2")

    wait_for(lambda: settled(db), "all events settled")
    assert scalar(db, "SELECT count(*) FROM side_effect_runs WHERE status = 'done'") == 8 * 3
    assert scalar(db, "SELECT count(*) FROM audit_log") == 8
    assert scalar(db, "SELECT count(DISTINCT event_id) FROM audit_log") == 8
    assert scalar(db, "SELECT bool_or(checkout_locked) FROM users") is False
    wait_for(
        lambda: (
            len(re.findall(r"simpleams\.audit\.record\[[^\]]+\] succeeded", worker.output()))
            == 3 + 2 + 1
        ),
        "every audit task to finish",
    )
    assert "failed" not in worker.output()


async def test_someone_who_becomes_an_admin_is_announced_and_audited(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle, pipeline: Pipeline
) -> None:
    from gateway import role_mappings

    with db.begin() as conn:
        tenancy.set_notify_email(conn, tenant.slug, "it-admins@acme.test")
        role_mappings.map_group(conn, tenant.slug, "SimpleAMS Admins", "admin")
    pipeline.start("worker")
    pipeline.start("relay")
    user = (await client.post("/Users", json=user_body("lee@acme.test"))).json()
    group = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "SimpleAMS Admins",
        "members": [{"value": user["id"]}],
    }
    okta = {"User-Agent": "Okta SCIM Client 1.0.0"}
    assert (await client.post("/Groups", json=group, headers=okta)).status_code == 201

    alert = wait_for(
        lambda: next((m for m in pipeline.smtp.messages if "admin" in m["Subject"]), None),
        "the new-admin alert",
    )
    assert alert["Subject"] == "Lee Example is now an admin"
    assert alert["To"] == "it-admins@acme.test"
    body = alert.get_content()
    assert "Okta put them in a group" in body
    staff_id = scalar(db, "SELECT id FROM users")
    assert f"https://acme.simpleams.test/staff/{staff_id}" in body
    wait_for(lambda: settled(db), "every event settled")
    entries = rows(
        db,
        "SELECT action, changes, target_user_name, target_group_name FROM audit_log"
        " ORDER BY event_id",
    )
    assert [(e.action, e.target_user_name, e.target_group_name) for e in entries] == [
        ("created", "lee@acme.test", None),
        ("group.created", None, "SimpleAMS Admins"),
        ("updated", "lee@acme.test", None),
    ]
    assert entries[2].changes == {"role": ["staff", "admin"]}
    assert len([m for m in pipeline.smtp.messages if "admin" in m["Subject"]]) == 1
    # The operator's audit read shows the group's entry too.
    printed = simpleams(pipeline.env["DATABASE_URL"], "audit", "acme").stdout
    [line] = [line for line in printed.splitlines() if "group.created" in line]
    assert "group.created  group 'SimpleAMS Admins'  by okta  " in line
    assert "displayName: None -> 'SimpleAMS Admins'" in line and "members: 1 added" in line
