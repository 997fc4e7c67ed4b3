"""Notifications on the side-effect framework, run in this process against the
real database with a stand-in for SMTP: digests at most once per interval per
tenant, a digest a dead beat recorded sent by a later one, two beats never
both sending; the guard's alert once per trip, even after a failed send; a
leaver re-enabled since is not alerted.

The same paths with real processes and SMTP: test_side_effects.py,
test_operations.py, test_deprovision_guard.py, test_hostile_names.py.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, text

from gateway import staff_history, tenancy
from tests.conftest import TenantHandle, make_tenant, scim_client, user_body
from tests.db import rows, scalar
from tests.integration.test_effects import Outbox
from workers import effects, notify
from workers.audit import AUDIT
from workers.checkout_lock import CHECKOUT_LOCK
from workers.effects import TransientError

pytestmark = pytest.mark.usefixtures("workers_in_process")

ADMINS = "it-admins@acme.test"
DEACTIVATE = {"Operations": [{"op": "replace", "value": {"active": False}}]}
REACTIVATE = {"Operations": [{"op": "replace", "value": {"active": True}}]}


@pytest.fixture
def outbox(monkeypatch: pytest.MonkeyPatch) -> Outbox:
    """SMTP, for notify: every email it sends, alert or digest, arrives here."""
    box = Outbox()
    monkeypatch.setattr(notify, "send_email", box)
    monkeypatch.setattr(notify, "NOTIFY", dataclasses.replace(notify.NOTIFY, send=box))
    monkeypatch.setattr(
        notify, "settings", dataclasses.replace(notify.settings, digest_interval_seconds=300)
    )
    return box


@pytest.fixture
def admins(db: Engine, tenant: TenantHandle) -> str:
    with db.begin() as conn:
        tenancy.set_notify_email(conn, tenant.slug, ADMINS)
    return ADMINS


@pytest.fixture
def other_beat() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as executor:
        yield executor


async def create(client: httpx2.AsyncClient, *names: str) -> list[str]:
    ids = []
    for name in names:
        created = await client.post("/Users", json=user_body(name))
        assert created.status_code == 201
        ids.append(created.json()["id"])
    return ids


def run_effects(db: Engine) -> str:
    """Every effect of the events not yet settled; returns notify's result."""
    ids = [r.id for r in rows(db, "SELECT id FROM provisioning_events WHERE settled_at IS NULL")]
    effects.run(AUDIT, ids)
    effects.run(CHECKOUT_LOCK, ids)
    return effects.run(notify.NOTIFY, ids)


def age_digests(db: Engine, seconds: int) -> None:
    with db.begin() as conn:
        conn.execute(
            text("UPDATE notifications SET created_at = created_at - make_interval(secs => :s)"),
            {"s": seconds},
        )


# --- digests ------------------------------------------------------------------


async def test_a_tenant_gets_at_most_one_digest_per_interval(
    db: Engine, app: Any, client: httpx2.AsyncClient, admins: str, outbox: Outbox
) -> None:
    globex = make_tenant(db, "globex")
    with db.begin() as conn:
        tenancy.set_notify_email(conn, "globex", "it@globex.test")
    await create(client, "lee@acme.test", "kim@acme.test")
    async with scim_client(app, globex.headers) as theirs:
        await create(theirs, "ann@globex.test")
    run_effects(db)

    assert notify.send_digests() == 2  # one per tenant
    assert sorted((m.to, m.subject) for m in outbox.sent) == [
        (ADMINS, "Your identity provider created 2 users"),
        ("it@globex.test", "Your identity provider created 1 user"),
    ]
    await create(client, "sam@acme.test")
    run_effects(db)
    assert notify.send_digests() == 0  # within the interval

    age_digests(db, 301)
    assert notify.send_digests() == 1
    assert outbox.subjects()[2:] == ["Your identity provider created 1 user"]
    assert notify.send_digests() == 0
    assert scalar(db, "SELECT count(*) FROM digest_items WHERE notification_id IS NULL") == 0
    assert scalar(db, "SELECT bool_and(status = 'sent') FROM notifications") is True


async def test_a_digest_a_dead_beat_recorded_is_sent_by_a_later_beat_after_two_minutes(
    db: Engine, client: httpx2.AsyncClient, admins: str, outbox: Outbox
) -> None:
    await create(client, "lee@acme.test")
    run_effects(db)
    tenant_id = scalar(db, "SELECT id FROM tenants")
    # A beat recorded the digest and died before sending it.
    assert notify._prepare_digest(tenant_id) is not None

    assert notify.send_digests() == 0  # too fresh to be a dead beat's; none due either
    age_digests(db, 121)
    assert notify.send_digests() == 1
    assert notify.send_digests() == 0

    assert outbox.subjects() == ["Your identity provider created 1 user"]
    assert scalar(db, "SELECT status FROM notifications") == "sent"


async def test_two_beats_never_both_send_a_digest(
    db: Engine,
    client: httpx2.AsyncClient,
    admins: str,
    outbox: Outbox,
    other_beat: ThreadPoolExecutor,
) -> None:
    """The digest's send lease, as an alert's: the second beat leaves it to the first."""
    await create(client, "lee@acme.test")
    run_effects(db)
    assert notify._prepare_digest(scalar(db, "SELECT id FROM tenants")) is not None
    age_digests(db, 121)
    outbox.hold = hold = threading.Event()
    first = other_beat.submit(notify.send_digests)
    assert outbox.in_flight.wait(timeout=30)
    try:
        assert notify.send_digests() == 0
        assert outbox.attempts == 1
    finally:
        hold.set()
    assert first.result(timeout=30) == 1
    assert outbox.subjects() == ["Your identity provider created 1 user"]


# --- alerts -------------------------------------------------------------------


async def test_the_guards_alert_goes_once_per_trip_even_after_a_failed_send(
    db: Engine, client: httpx2.AsyncClient, tenant: TenantHandle, admins: str, outbox: Outbox
) -> None:
    with db.begin() as conn:
        tenancy.set_guard(conn, tenant.slug, guard_percent=10, guard_min_users=3)
    users = await create(client, *(f"g{n}@acme.test" for n in range(8)))
    run_effects(db)
    for user in users[:6]:  # the threshold is 3 leavers: the 4th trips the guard
        assert (await client.patch(f"/Users/{user}", json=DEACTIVATE)).status_code == 200
    leavers = [
        r.id for r in rows(db, "SELECT id FROM provisioning_events WHERE settled_at IS NULL")
    ]

    outbox.failures[ADMINS] = TransientError("SMTP 451")
    with pytest.raises(TransientError):
        effects.run(notify.NOTIFY, leavers[:4])
    assert effects.run(notify.NOTIFY, leavers[4:5]) == "held: 1"  # announced by the 4th
    assert effects.run(notify.NOTIFY, leavers[5:]) == "held: 1"
    assert outbox.sent == [] and outbox.attempts == 1

    outbox.failures.clear()  # the task's retry
    assert effects.run(notify.NOTIFY, leavers[:4]) == "already done: 4, guard_tripped sent: 1"
    assert effects.run(notify.NOTIFY, leavers) == "already done: 6, already sent: 1"
    assert outbox.subjects() == ["Mass deprovisioning held for review"]
    held = "SELECT count(*) FROM side_effect_runs WHERE effect = 'notify' AND status = 'held'"
    assert scalar(db, held) == 3


async def test_a_leaver_re_enabled_before_the_alert_is_not_alerted(
    db: Engine, client: httpx2.AsyncClient, tenant: TenantHandle, admins: str, outbox: Outbox
) -> None:
    lee, kim = await create(client, "lee@acme.test", "kim@acme.test")
    with db.begin() as conn:
        staff_history.record_checkout(conn, tenant.slug, "lee@acme.test", "LAPTOP-7")
        staff_history.record_checkout(conn, tenant.slug, "kim@acme.test", "PHONE-2")
    for user in (lee, kim):
        assert (await client.patch(f"/Users/{user}", json=DEACTIVATE)).status_code == 200
    assert (await client.patch(f"/Users/{kim}", json=REACTIVATE)).status_code == 200

    assert "leaver_with_assets sent: 1" in run_effects(db)

    assert outbox.subjects() == ["Leaver Lee Example still holds 1 asset"]
    digested = rows(db, "SELECT kind FROM digest_items ORDER BY event_id")
    assert [r.kind for r in digested] == [
        "user.created",
        "user.created",
        "user.deactivated",  # Kim's: no alert, a digest item
        "user.reactivated",
    ]
