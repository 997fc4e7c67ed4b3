"""The mass-deprovision guard: a burst of deactivations past the tenant's
threshold is answered normally, but its locks and notifications are held for
an admin, who is emailed at once and releases them with the CLI."""

from __future__ import annotations

import httpx2
import pytest
from sqlalchemy import Engine

from gateway import staff_history, tenancy
from tests.conftest import TenantHandle, user_body
from tests.db import scalar
from tests.integration.cli import simpleams
from tests.integration.pipeline import (
    Pipeline,
    settled,
    wait_for,
)

DEACTIVATE = {"Operations": [{"op": "replace", "value": {"active": False}}]}


async def test_a_burst_of_deactivations_is_held_until_an_admin_releases_it(
    client: httpx2.AsyncClient,
    db: Engine,
    tenant: TenantHandle,
    pipeline: Pipeline,
    database_url: str,
) -> None:
    with db.begin() as conn:
        tenancy.set_notify_email(conn, tenant.slug, "it-admins@acme.test")
        tenancy.set_guard(conn, tenant.slug, guard_percent=10, guard_min_users=3)
    ids = []
    for n in range(20):
        ids.append((await client.post("/Users", json=user_body(f"g{n:02}@acme.test"))).json()["id"])
    pipeline.start("worker")
    pipeline.start("relay")
    wait_for(lambda: settled(db), "the creations' effects")

    for scim_id in ids[:6]:  # threshold: max(3, 10 % of 20) = 3
        assert (await client.patch(f"/Users/{scim_id}", json=DEACTIVATE)).status_code == 200
    wait_for(lambda: settled(db), "the deactivations' effects")

    locked = "SELECT count(*) FROM users WHERE checkout_locked"
    held = "SELECT count(*) FROM side_effect_runs WHERE status = 'held'"
    assert scalar(db, locked) == 3  # the first three, under the threshold
    assert scalar(db, held) == 6  # lock + notify of the next three
    alert = wait_for(
        lambda: [m for m in pipeline.smtp.messages if "held" in m["Subject"]], "the admin alert"
    )
    assert len(alert) == 1
    assert "simpleams guard release acme" in alert[0].get_content()
    # A held leaver keeps access until an admin decides; a locked one does not.
    with db.begin() as conn:
        staff_history.record_checkout(conn, tenant.slug, "g05@acme.test", "KEY-5")
        with pytest.raises(tenancy.OperatorError, match="locked out"):
            staff_history.record_checkout(conn, tenant.slug, "g00@acme.test", "KEY-0")

    released = simpleams(database_url, "guard", "release", tenant.slug)
    assert released.returncode == 0, released.stderr
    assert "Released 3" in released.stdout

    wait_for(lambda: scalar(db, locked) == 6 and settled(db), "the released locks")
    assert scalar(db, held) == 0
    assert scalar(db, "SELECT guard_tripped_at FROM tenants") is None
    assert scalar(db, "SELECT recovery_flagged_at IS NOT NULL FROM checkouts") is True
