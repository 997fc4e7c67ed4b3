"""Operator commands run as ops run them: `simpleams …` as a subprocess.

Tenant settings, checkouts, the audit log and dead letters, against the real
database and, where side effects matter, the real relay and worker
processes, a private Redis and an SMTP server we can make refuse mail.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from tests.conftest import TenantHandle, make_tenant, scim_client, user_body
from tests.db import rows, scalar
from tests.integration.cli import simpleams
from tests.integration.live_server import free_port
from tests.integration.pipeline import Pipeline, Process, pipeline_processes, wait_for

OKTA = {"User-Agent": "Okta SCIM Client 1.0.0"}
DEACTIVATE = {"Operations": [{"op": "replace", "value": {"active": False}}]}
ADMINS = "it-admins@acme.test"


def ok(database_url: str, *args: str) -> str:
    result = simpleams(database_url, *args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


# --- an SMTP server that accepts, refuses, or is down -------------------------


@dataclass
class ScriptedSmtp:
    """An aiosmtpd server on a fixed port that accepts mail or answers a chosen
    reply at RCPT or DATA; it can also be stopped and started again."""

    port: int = field(default_factory=free_port)
    messages: list[EmailMessage] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    refuse_at: str | None = None
    reply: str = ""
    controller: Controller | None = None
    # While set, DATA waits on it: a message in flight, held mid-send.
    gate: threading.Event | None = None
    data_started: int = 0

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def refuse(self, stage: str, reply: str) -> None:
        self.refuse_at, self.reply = stage, reply

    def accept(self) -> None:
        self.refuse_at = None

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.refuse_at == "RCPT":
            self.refusals.append(self.reply)
            return self.reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_started += 1
        if self.gate is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 60)
        if self.refuse_at == "DATA":
            self.refusals.append(self.reply)
            return self.reply
        parsed = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted for delivery"

    def leaver_alerts(self) -> list[EmailMessage]:
        return [m for m in self.messages if m["Subject"].startswith("Leaver ")]


@pytest.fixture
def smtp() -> Iterator[ScriptedSmtp]:
    server = ScriptedSmtp()
    server.start()
    yield server
    server.stop()


# --- the pipeline (as in conftest.py, with the scripted SMTP server) ----------


@pytest.fixture
def pipeline(database_url: str, tmp_path: Path, smtp: ScriptedSmtp) -> Iterator[Pipeline]:
    with pipeline_processes(database_url, tmp_path, smtp) as running:
        yield running
    # Shown by pytest only when the test failed: what the processes said.
    for log in sorted(tmp_path.glob("*.log")):
        print(f"----- {log.name} (last 15,000 characters)")
        print(log.read_text(errors="replace")[-15_000:])


def notify_tasks_idle(worker: Process) -> bool:
    """Every notify task the worker received has finished (succeeded, retried, failed)."""
    log = worker.output()
    received = len(re.findall(r"simpleams\.notify\.on_event\[[^\]]+\] received", log))
    finished = len(
        re.findall(r"simpleams\.notify\.on_event\[[^\]]+\] (succeeded|retry|raised)", log)
    )
    return received > 0 and received == finished


# --- tenant settings ----------------------------------------------------------


def test_tenant_set_stores_the_notify_email_and_clears_it(
    database_url: str, db: Engine, tenant: TenantHandle
) -> None:
    stdout = ok(database_url, "tenant", "set", "acme", "--notify-email", ADMINS)

    assert ADMINS in stdout
    assert scalar(db, "SELECT notify_email FROM tenants WHERE slug = 'acme'") == ADMINS

    stdout = ok(database_url, "tenant", "set", "acme", "--notify-email", "")
    assert "nobody" in stdout
    assert scalar(db, "SELECT notify_email FROM tenants WHERE slug = 'acme'") is None


@pytest.mark.parametrize(
    "address", ["it-admins.acme.test", "it admins@acme.test", "it-admins@", "@acme.test"]
)
def test_tenant_set_refuses_a_bad_address(
    database_url: str, db: Engine, tenant: TenantHandle, address: str
) -> None:
    ok(database_url, "tenant", "set", "acme", "--notify-email", ADMINS)

    result = simpleams(database_url, "tenant", "set", "acme", "--notify-email", address)

    assert result.returncode == 1, result.stdout
    assert f"{address!r} is not an email address" in result.stderr
    assert "Traceback" not in result.stderr
    assert scalar(db, "SELECT notify_email FROM tenants WHERE slug = 'acme'") == ADMINS


def test_tenant_set_on_an_unknown_tenant_or_without_an_address(
    database_url: str, db: Engine
) -> None:
    unknown = simpleams(database_url, "tenant", "set", "nosuchco", "--notify-email", ADMINS)
    assert unknown.returncode == 1
    assert "No tenant with the slug 'nosuchco'" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    missing = simpleams(database_url, "tenant", "set", "nosuchco")
    assert missing.returncode == 2
    assert "--notify-email" in missing.stderr


# --- checkouts ----------------------------------------------------------------


async def test_checkout_creates_the_asset_and_checkin_keeps_the_history(
    database_url: str, db: Engine, client: httpx2.AsyncClient
) -> None:
    for email in ("lee@acme.test", "kim@acme.test"):
        assert (await client.post("/Users", json=user_body(email))).status_code == 201

    stdout = ok(database_url, "checkout", "acme", "lee@acme.test", "LAPTOP-7")

    assert "LAPTOP-7 checked out to lee@acme.test" in stdout
    asset = rows(
        db, "SELECT a.tag, a.name, t.slug FROM assets a JOIN tenants t ON t.id = a.tenant_id"
    )
    assert [tuple(a) for a in asset] == [("LAPTOP-7", "LAPTOP-7", "acme")]
    checkout = rows(
        db,
        "SELECT u.email, c.returned_at, c.recovery_flagged_at FROM checkouts c "
        "JOIN users u ON u.id = c.user_id",
    )
    assert [tuple(c) for c in checkout] == [("lee@acme.test", None, None)]

    for holder in ("lee@acme.test", "kim@acme.test"):
        again = simpleams(database_url, "checkout", "acme", holder, "LAPTOP-7")
        assert again.returncode == 1, again.stdout
        assert "already checked out" in again.stderr
        assert "Traceback" not in again.stderr
    assert scalar(db, "SELECT count(*) FROM checkouts") == 1

    assert "LAPTOP-7 checked in" in ok(database_url, "checkin", "acme", "LAPTOP-7")
    returned = rows(db, "SELECT returned_at FROM checkouts")
    assert len(returned) == 1 and returned[0].returned_at is not None

    not_out = simpleams(database_url, "checkin", "acme", "LAPTOP-7")
    assert not_out.returncode == 1
    assert "LAPTOP-7 is not checked out" in not_out.stderr

    # Out again, to someone else, on the same asset: history has both.
    ok(database_url, "checkout", "acme", "KIM@acme.test", "LAPTOP-7")
    history = rows(
        db,
        "SELECT u.email, c.returned_at IS NOT NULL AS returned FROM checkouts c "
        "JOIN users u ON u.id = c.user_id ORDER BY c.checked_out_at",
    )
    assert [tuple(h) for h in history] == [("lee@acme.test", True), ("kim@acme.test", False)]
    assert scalar(db, "SELECT count(*) FROM assets") == 1


async def test_checkout_refuses_a_user_the_idp_deactivated_before_any_worker_ran(
    database_url: str, db: Engine, client: httpx2.AsyncClient
) -> None:
    created = await client.post("/Users", json=user_body("lee@acme.test"))
    assert created.status_code == 201
    deactivated = await client.patch(f"/Users/{created.json()['id']}", json=DEACTIVATE)
    assert deactivated.status_code == 200
    # No relay and no worker: the lock flag has not been set yet.
    assert scalar(db, "SELECT checkout_locked FROM users") is False
    assert scalar(db, "SELECT count(*) FROM provisioning_events WHERE published_at IS NULL") == 2

    refused = simpleams(database_url, "checkout", "acme", "lee@acme.test", "LAPTOP-7")

    assert refused.returncode == 1, refused.stdout
    assert "lee@acme.test is locked out of checkouts" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert scalar(db, "SELECT count(*) FROM checkouts") == 0


async def test_checkout_refuses_a_user_the_idp_deleted(
    database_url: str, db: Engine, client: httpx2.AsyncClient
) -> None:
    created = await client.post("/Users", json=user_body("gone@acme.test"))
    assert (await client.delete(f"/Users/{created.json()['id']}")).status_code == 204

    refused = simpleams(database_url, "checkout", "acme", "gone@acme.test", "PHONE-1")

    assert refused.returncode == 1, refused.stdout
    assert "locked out" in refused.stderr
    assert scalar(db, "SELECT count(*) FROM checkouts") == 0


async def test_checkout_to_an_unknown_email_or_tenant_is_refused(
    database_url: str, db: Engine, client: httpx2.AsyncClient
) -> None:
    assert (await client.post("/Users", json=user_body("lee@acme.test"))).status_code == 201

    unknown = simpleams(database_url, "checkout", "acme", "nobody@acme.test", "LAPTOP-7")
    assert unknown.returncode == 1, unknown.stdout
    assert "No staff member with the email 'nobody@acme.test'" in unknown.stderr

    other_tenant = simpleams(database_url, "checkout", "nosuchco", "lee@acme.test", "LAPTOP-7")
    assert other_tenant.returncode == 1
    assert "No tenant with the slug 'nosuchco'" in other_tenant.stderr
    assert scalar(db, "SELECT count(*) FROM checkouts") == 0
    assert scalar(db, "SELECT count(*) FROM assets") == 0


async def test_checkout_goes_to_the_live_user_when_a_deleted_one_had_the_same_email(
    database_url: str, db: Engine, client: httpx2.AsyncClient
) -> None:
    """Email addresses get reused: a leaver's old address given to a new starter."""
    old = await client.post("/Users", json=user_body("lee@acme.test"))
    assert (await client.delete(f"/Users/{old.json()['id']}")).status_code == 204
    new = await client.post("/Users", json=user_body("lee.new@acme.test"))
    reuse = {
        "Operations": [
            {
                "op": "replace",
                "path": "emails",
                "value": [{"value": "lee@acme.test", "primary": True}],
            }
        ]
    }
    assert (await client.patch(f"/Users/{new.json()['id']}", json=reuse)).status_code == 200

    result = simpleams(database_url, "checkout", "acme", "lee@acme.test", "LAPTOP-7")

    assert result.returncode == 0, result.stderr
    holder = scalar(db, "SELECT u.user_name FROM checkouts c JOIN users u ON u.id = c.user_id")
    assert holder == "lee.new@acme.test"


# --- the audit log ------------------------------------------------------------


@pytest.fixture
async def globex(app: Any, db: Engine) -> AsyncIterator[httpx2.AsyncClient]:
    """A second tenant's IdP."""
    async with scim_client(app, make_tenant(db, "globex").headers) as http:
        yield http


def audit_json(database_url: str, *args: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ok(database_url, "audit", *args, "--json").splitlines()]


async def test_the_audit_log_of_a_users_lifecycle_through_the_real_pipeline(
    database_url: str,
    db: Engine,
    client: httpx2.AsyncClient,
    globex: httpx2.AsyncClient,
    pipeline: Pipeline,
) -> None:
    pipeline.start("worker")
    pipeline.start("relay")

    created = await client.post("/Users", json=user_body("lee@acme.test"), headers=OKTA)
    assert created.status_code == 201
    lee = created.json()["id"]
    kim = await client.post("/Users", json=user_body("kim@acme.test"), headers=OKTA)
    assert kim.status_code == 201
    rename = {"Operations": [{"op": "replace", "path": "displayName", "value": "Lee Smith"}]}
    updated = await client.patch(
        f"/Users/{lee}", json=rename, headers={**OKTA, "X-Request-Id": "okta-rename-1"}
    )
    assert updated.status_code == 200
    deactivated = await client.patch(f"/Users/{lee}", json=DEACTIVATE, headers=OKTA)
    assert deactivated.status_code == 200
    deleted = await client.delete(f"/Users/{lee}", headers=OKTA)
    assert deleted.status_code == 204
    elsewhere = await globex.post("/Users", json=user_body("lee@acme.test"))
    assert elsewhere.status_code == 201
    request_ids = [r.headers["x-request-id"] for r in (created, kim, updated, deactivated, deleted)]
    assert request_ids[2] == "okta-rename-1"
    assert len(set(request_ids)) == 5

    wait_for(
        lambda: (
            scalar(db, "SELECT count(*) FROM audit_log") == 6
            and scalar(db, "SELECT bool_and(settled_at IS NOT NULL) FROM provisioning_events")
        ),
        "six audit entries and every event settled",
    )

    entries = audit_json(database_url, "acme")
    assert [(e["action"], e["user"]) for e in entries] == [
        ("created", "lee@acme.test"),
        ("created", "kim@acme.test"),
        ("updated", "lee@acme.test"),
        ("deactivated", "lee@acme.test"),
        ("deleted", "lee@acme.test"),
    ]
    assert [e["request_id"] for e in entries] == request_ids
    assert {e["actor"] for e in entries} == {"okta"}
    assert {e["user_agent"] for e in entries} == {OKTA["User-Agent"]}
    times = [datetime.fromisoformat(e["time"]) for e in entries]
    assert all(t.tzinfo is not None for t in times)
    assert times == sorted(times) and len(set(times)) == 5
    lee_created = entries[0]["changes"]
    assert lee_created["userName"] == [None, "lee@acme.test"]
    assert lee_created["active"] == [None, True]
    assert entries[2]["changes"] == {"displayName": ["Lee Example", "Lee Smith"]}
    assert entries[3]["changes"] == {"active": [True, False]}
    assert entries[4]["changes"] == {}  # already inactive: the delete only hides them
    assert len({e["user_id"] for e in entries}) == 2

    human = ok(database_url, "audit", "acme").splitlines()
    assert len(human) == 5
    for line, entry in zip(human, entries, strict=True):
        assert line.startswith(entry["time"])
        assert re.search(rf"\s{entry['action']}\s+{re.escape(entry['user'])}\s+by okta", line)
        assert not line.startswith("{")  # a line for people, not a JSON object
    assert "displayName: 'Lee Example' -> 'Lee Smith'" in human[2]
    assert "active: True -> False" in human[3]

    by_lee = audit_json(database_url, "acme", "--user", "LEE@acme.test")
    assert [e["action"] for e in by_lee] == ["created", "updated", "deactivated", "deleted"]
    assert {e["user"] for e in by_lee} == {"lee@acme.test"}
    by_kim = audit_json(database_url, "acme", "--user", "kim@acme.test")
    assert [(e["action"], e["request_id"]) for e in by_kim] == [("created", request_ids[1])]
    assert audit_json(database_url, "acme", "--user", "nobody@acme.test") == []

    since = audit_json(database_url, "acme", "--since", entries[3]["time"])
    assert [e["action"] for e in since] == ["deactivated", "deleted"]
    both = audit_json(
        database_url, "acme", "--user", "lee@acme.test", "--since", entries[2]["time"]
    )
    assert [e["action"] for e in both] == ["updated", "deactivated", "deleted"]
    future = (times[-1] + timedelta(days=1)).astimezone().strftime("%Y-%m-%dT%H:%M:%SZ")
    assert audit_json(database_url, "acme", "--since", future) == []
    bad_since = simpleams(database_url, "audit", "acme", "--since", "last tuesday")
    assert bad_since.returncode == 2
    assert "not an ISO 8601 time" in bad_since.stderr

    # Another tenant's entries never appear, even for a user with the same email.
    theirs = audit_json(database_url, "globex")
    assert [(e["action"], e["user"]) for e in theirs] == [("created", "lee@acme.test")]
    assert theirs[0]["request_id"] == elsewhere.headers["x-request-id"]
    assert theirs[0]["actor"] == "scim"
    assert theirs[0]["request_id"] not in {e["request_id"] for e in entries}
    assert theirs[0]["user_id"] not in {e["user_id"] for e in entries}
    assert len(audit_json(database_url, "globex", "--user", "lee@acme.test")) == 1
    assert len(audit_json(database_url, "acme", "--user", "lee@acme.test")) == 4

    unknown = simpleams(database_url, "audit", "nosuchco")
    assert unknown.returncode == 1
    assert "No tenant with the slug 'nosuchco'" in unknown.stderr


async def test_the_audit_log_is_append_only_even_for_the_table_owner(
    database_url: str, db: Engine, client: httpx2.AsyncClient
) -> None:
    created = await client.post("/Users", json=user_body("lee@acme.test"))
    assert created.status_code == 201
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_log (event_id, tenant_id, user_id, occurred_at, action, "
                "actor_idp, target_user_name, target_email, changes, request_id) "
                "SELECT id, tenant_id, user_id, occurred_at, 'created', actor_idp, "
                "'lee@acme.test', 'lee@acme.test', changes, request_id FROM provisioning_events"
            )
        )
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)

    with psycopg.connect(dsn, autocommit=True) as conn:
        owner, me = conn.execute(
            "SELECT tableowner, current_user FROM pg_tables WHERE tablename = 'audit_log'"
        ).fetchone() or (None, None)
        assert owner == me  # we are the owner: privileges are not what stops us

        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only: UPDATE"):
            conn.execute("UPDATE audit_log SET action = 'deleted', changes = '{}'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only: DELETE"):
            conn.execute("DELETE FROM audit_log")

        entry = conn.execute("SELECT action, target_email FROM audit_log").fetchall()
        assert entry == [("created", "lee@acme.test")]

    assert audit_json(database_url, "acme")[0]["action"] == "created"


# --- dead letters -------------------------------------------------------------


def dead_letters(database_url: str) -> str:
    return ok(database_url, "events", "failed")


async def leaver_with_an_asset(
    database_url: str, client: httpx2.AsyncClient, email: str, tag: str
) -> None:
    created = await client.post("/Users", json=user_body(email), headers=OKTA)
    assert created.status_code == 201
    ok(database_url, "checkout", "acme", email, tag)
    deactivated = await client.patch(f"/Users/{created.json()['id']}", json=DEACTIVATE)
    assert deactivated.status_code == 200


def event_id(db: Engine, email: str, kind: str) -> int:
    found: int = scalar(
        db,
        "SELECT e.id FROM provisioning_events e JOIN users u ON u.id = e.user_id "
        "WHERE u.email = :email AND e.kind = :kind",
        email=email,
        kind=kind,
    )
    assert found is not None
    return found


def settled_event(db: Engine, event: int) -> bool:
    return bool(
        scalar(
            db, "SELECT settled_at IS NOT NULL FROM provisioning_events WHERE id = :id", id=event
        )
    )


async def test_two_copies_of_a_leaver_alert_task_at_once_send_one_email(
    database_url: str, db: Engine, client: httpx2.AsyncClient, pipeline: Pipeline
) -> None:
    """A redelivery or a sweep re-publish can run while the first copy is
    still talking to SMTP: the second copy must leave the email to it."""
    from celery import Celery

    ok(database_url, "tenant", "set", "acme", "--notify-email", ADMINS)
    await leaver_with_an_asset(database_url, client, "lee@acme.test", "LAPTOP-7")
    leaver_event = event_id(db, "lee@acme.test", "user.deactivated")
    pipeline.smtp.gate = threading.Event()
    worker = pipeline.start("worker", WORKER_CONCURRENCY="2")
    app = Celery(broker=pipeline.redis.url)
    for copy in ("first", "second"):
        app.send_task(
            "simpleams.notify.on_event",
            kwargs={"event_ids": [leaver_event]},
            task_id=f"{leaver_event}:notify:{copy}",
            queue="notify",
        )

    def second_copy_done() -> bool:
        return bool(re.search(r"on_event\[[^\]]+\] succeeded .*being sent", worker.output()))

    # The first copy is held mid-DATA; the second either sends too (the bug)
    # or finishes without sending.
    wait_for(
        lambda: pipeline.smtp.data_started >= 2 or second_copy_done(),
        "the second copy to send or to step aside",
    )
    pipeline.smtp.gate.set()
    wait_for(
        lambda: (
            scalar(db, "SELECT status FROM notifications WHERE event_id = :id", id=leaver_event)
            == "sent"
        ),
        "the alert recorded as sent",
    )
    assert pipeline.smtp.data_started == 1
    assert len(pipeline.smtp.leaver_alerts()) == 1


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("RCPT", "550 5.1.1 <it-admins@acme.test>: Recipient address rejected: User unknown"),
        ("DATA", "550 5.7.1 Message rejected as spam"),
    ],
)
async def test_a_permanent_email_failure_is_a_dead_letter_that_retry_replays(
    database_url: str,
    db: Engine,
    client: httpx2.AsyncClient,
    pipeline: Pipeline,
    stage: str,
    reply: str,
) -> None:
    pipeline.smtp.refuse(stage, reply)
    ok(database_url, "tenant", "set", "acme", "--notify-email", ADMINS)
    worker = pipeline.start("worker")
    pipeline.start("relay")
    assert dead_letters(database_url).strip() == "No failed side effects."

    await leaver_with_an_asset(database_url, client, "lee@acme.test", "LAPTOP-7")
    leaver_event = event_id(db, "lee@acme.test", "user.deactivated")
    letter_id = f"{leaver_event}:notify"

    listing = wait_for(
        lambda: (out := dead_letters(database_url)) and letter_id in out and out,
        "`simpleams events failed` to list the leaver alert",
    )
    [line] = [line for line in listing.splitlines() if line.startswith(letter_id)]
    assert re.match(rf"{letter_id}\s+acme\s+user\.deactivated\s+attempts=1 failed=\S+ \S+ ", line)
    assert "PermanentError" in line
    if stage == "RCPT":
        assert "refused the recipient" in line and ADMINS in line
    else:
        assert "SMTP 550" in line and "spam" in line
    # A dead letter finishes its event (once its other effects are done too),
    # so the sweep leaves it alone.
    wait_for(lambda: settled_event(db, leaver_event), "the leaver event settled with a dead letter")
    wait_for(lambda: notify_tasks_idle(worker), "the worker to finish every notify task")
    assert len(dead_letters(database_url).splitlines()) == 1  # nothing else failed
    assert len(pipeline.smtp.refusals) == 1  # permanent: not retried
    assert pipeline.smtp.messages == []
    assert scalar(db, "SELECT status FROM notifications WHERE event_id = :id", id=leaver_event) == (
        "pending"
    )
    # The other effects of the leaver event were done.
    assert scalar(db, "SELECT checkout_locked FROM users") is True
    assert scalar(db, "SELECT count(*) FROM audit_log WHERE event_id = :id", id=leaver_event) == 1

    # An effect that did not fail is not a dead letter.
    done = simpleams(database_url, "events", "retry", f"{leaver_event}:audit")
    assert done.returncode == 1
    assert f"No failed side effect '{leaver_event}:audit'" in done.stderr

    pipeline.smtp.accept()
    retried = ok(database_url, "events", "retry", letter_id)
    assert retried.startswith("1 failed side effect(s) put back in the outbox")

    alert = wait_for(lambda: pipeline.smtp.leaver_alerts(), "the leaver alert after the retry")[0]
    assert alert["To"] == ADMINS
    assert alert["Subject"] == "Leaver Lee Example still holds 1 asset"
    assert "LAPTOP-7" in alert.get_content()
    wait_for(
        lambda: dead_letters(database_url).strip() == "No failed side effects.",
        "`simpleams events failed` to list none",
    )
    wait_for(lambda: settled_event(db, leaver_event), "the leaver event settled again")
    wait_for(lambda: notify_tasks_idle(worker), "the worker to finish every notify task")
    assert len(pipeline.smtp.leaver_alerts()) == 1
    runs = rows(
        db, "SELECT effect, status FROM side_effect_runs WHERE event_id = :id", id=leaver_event
    )
    assert sorted(tuple(r) for r in runs) == [
        ("audit", "done"),
        ("checkout_lock", "done"),
        ("notify", "done"),
    ]
    assert scalar(db, "SELECT status FROM notifications WHERE event_id = :id", id=leaver_event) == (
        "sent"
    )
    # Replaying re-published the other effects too; each ran once.
    assert scalar(db, "SELECT count(*) FROM audit_log WHERE event_id = :id", id=leaver_event) == 1
    assert (
        scalar(db, "SELECT publish_count FROM provisioning_events WHERE id = :id", id=leaver_event)
        == 2
    )


async def test_retry_all_replays_every_dead_letter(
    database_url: str, db: Engine, client: httpx2.AsyncClient, pipeline: Pipeline
) -> None:
    pipeline.smtp.refuse("DATA", "554 5.7.1 Relay access denied")
    ok(database_url, "tenant", "set", "acme", "--notify-email", ADMINS)
    worker = pipeline.start("worker")
    pipeline.start("relay")

    await leaver_with_an_asset(database_url, client, "lee@acme.test", "LAPTOP-7")
    await leaver_with_an_asset(database_url, client, "kim@acme.test", "PHONE-2")
    ids = [
        f"{event_id(db, e, 'user.deactivated')}:notify" for e in ("lee@acme.test", "kim@acme.test")
    ]

    wait_for(
        lambda: all(letter in dead_letters(database_url) for letter in ids),
        "both leaver alerts listed as dead letters",
    )
    pipeline.smtp.accept()
    assert ok(database_url, "events", "retry", "--all").startswith("2 failed side effect(s)")

    alerts = wait_for(
        lambda: len(pipeline.smtp.leaver_alerts()) >= 2 and pipeline.smtp.leaver_alerts(),
        "both leaver alerts delivered",
    )
    wait_for(
        lambda: dead_letters(database_url).strip() == "No failed side effects.",
        "no dead letters left",
    )
    wait_for(
        lambda: scalar(db, "SELECT bool_and(settled_at IS NOT NULL) FROM provisioning_events"),
        "every event settled",
    )
    wait_for(lambda: notify_tasks_idle(worker), "the worker to finish every notify task")
    assert sorted(a["Subject"] for a in pipeline.smtp.leaver_alerts()) == [
        "Leaver Kim Example still holds 1 asset",
        "Leaver Lee Example still holds 1 asset",
    ]
    assert len(alerts) == 2
    assert ok(database_url, "events", "retry", "--all").startswith("0 failed side effect(s)")


def test_events_retry_usage_and_bad_ids(database_url: str, db: Engine) -> None:
    no_args = simpleams(database_url, "events", "retry")
    assert no_args.returncode == 2
    assert "give dead-letter IDs or --all" in no_args.stderr

    both = simpleams(database_url, "events", "retry", "1:notify", "--all")
    assert both.returncode == 2
    assert "give dead-letter IDs or --all" in both.stderr

    for bad in ("notify", "12", "x:notify", "12:"):
        malformed = simpleams(database_url, "events", "retry", bad)
        assert malformed.returncode == 1, bad
        assert f"{bad!r} is not a dead-letter id (EVENT_ID:EFFECT)" in malformed.stderr
        assert "Traceback" not in malformed.stderr

    unknown = simpleams(database_url, "events", "retry", "999999:notify")
    assert unknown.returncode == 1
    assert "No failed side effect '999999:notify'; see `simpleams events failed`" in unknown.stderr

    assert dead_letters(database_url).strip() == "No failed side effects."


@pytest.mark.parametrize(
    "failure",
    ["451 at RCPT (greylisting)", "451 at DATA", "SMTP server down"],
)
async def test_a_transient_email_failure_is_retried_until_the_server_accepts(
    database_url: str,
    db: Engine,
    client: httpx2.AsyncClient,
    pipeline: Pipeline,
    failure: str,
) -> None:
    if failure.startswith("451 at RCPT"):
        pipeline.smtp.refuse("RCPT", "451 4.7.1 Greylisted, please try again later")
    elif failure.startswith("451 at DATA"):
        pipeline.smtp.refuse("DATA", "451 4.3.0 Temporary local problem, try again")
    else:
        pipeline.smtp.stop()
    ok(database_url, "tenant", "set", "acme", "--notify-email", ADMINS)
    worker = pipeline.start("worker")
    # As in production (600 s against retry_backoff_max 300 s), the sweep
    # waits longer than any retry countdown, so the retries counted below are
    # Celery's own (two copies at once: test_two_copies_of_a_leaver_alert...).
    pipeline.start("relay", SIMPLEAMS_SWEEP_AFTER_SECONDS="60")

    await leaver_with_an_asset(database_url, client, "lee@acme.test", "LAPTOP-7")
    leaver_event = event_id(db, "lee@acme.test", "user.deactivated")

    def retries() -> int:
        return len(re.findall(r"on_event\[[^\]]+\] retry: Retry in", worker.output()))

    def dead() -> int:
        return int(scalar(db, "SELECT count(*) FROM side_effect_runs WHERE status = 'failed'"))

    # Celery retries with backoff (up to 2 s, then up to 4 s): wait for two
    # retries, or stop early if the failure was taken for a permanent one.
    wait_for(lambda: retries() >= 2 or dead(), "two retries of the notify task", timeout=30)
    listing = dead_letters(database_url)
    assert f"{leaver_event}:notify" not in listing, (
        f"a transient SMTP failure ({failure}) became a dead letter:\n{listing}"
    )
    assert retries() >= 2
    assert not settled_event(db, leaver_event)
    assert pipeline.smtp.messages == []

    if failure == "SMTP server down":
        pipeline.smtp.start()
    else:
        pipeline.smtp.accept()

    alert = wait_for(lambda: pipeline.smtp.leaver_alerts(), "the leaver alert", timeout=60)[0]
    assert alert["Subject"] == "Leaver Lee Example still holds 1 asset"
    wait_for(lambda: settled_event(db, leaver_event), "the leaver event settled")
    wait_for(lambda: notify_tasks_idle(worker), "the worker to finish every notify task")
    assert len(pipeline.smtp.leaver_alerts()) == 1
    assert dead_letters(database_url).strip() == "No failed side effects."
    assert scalar(db, "SELECT status FROM notifications WHERE event_id = :id", id=leaver_event) == (
        "sent"
    )
    assert (
        scalar(
            db,
            "SELECT status FROM side_effect_runs WHERE event_id = :id AND effect = 'notify'",
            id=leaver_event,
        )
        == "done"
    )
