"""Alerts about users whose names are hostile (line breaks, control characters,
a forged header, very long, non-ASCII) still reach the admins, with a
single-line Subject and no injected header; and alerts name a user as they
were named when the event happened, not as they are named when it is sent.

Real processes throughout: SCIM writes through the gateway, the Procfile's
relay, worker and beat, a private Redis and an aiosmtpd server that keeps
every message with its envelope."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx2
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, text

from gateway import role_mappings, side_effects, staff_history, tenancy
from tests.conftest import TenantHandle, user_body
from tests.db import scalar
from tests.integration.live_server import free_port
from tests.integration.pipeline import Pipeline, pipeline_processes, settled, wait_for

ADMINS = "it-admins@acme.test"
OKTA = {"User-Agent": "Okta SCIM Client 1.0.0"}
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
DEACTIVATE = {"Operations": [{"op": "replace", "value": {"active": False}}]}
LONG = "Eve " + "x" * 5000

# displayName as the IdP sends it -> the name the admins must read. NUL is
# not storable: the gateway answers 400 to a body containing U+0000 (see
# test_a_nul_in_a_name_is_refused_at_the_door below), so it never reaches a worker.
HOSTILE: dict[str, str] = {
    "Eve\rMallory": "Eve Mallory",
    "Eve\nMallory": "Eve Mallory",
    "Eve\r\nBcc: attacker@evil.test": "Eve Bcc: attacker@evil.test",
    "Eve\r\n\r\nFake body\r\n.\r\nMAIL FROM:<x@evil.test>": (
        "Eve Fake body . MAIL FROM:<x@evil.test>"
    ),
    "Eve\u2028Mallory": "Eve Mallory",
    "Eve\u2029Mallory": "Eve Mallory",
    "Eve\x85Mallory": "Eve Mallory",
    "Eve\x1b[31mMallory\x1b[0m": "Eve [31mMallory [0m",
    "Eve\x0b\x0c\x1c\x1d\x1e\x7fMallory": "Eve Mallory",
    "Eve\tMallory   ": "Eve Mallory",
    "Eve\u202eyrollaM": "EveyrollaM",  # a right-to-left override, invisible: dropped
    "Ελένη Παπαδοπούλου 😀": "Ελένη Παπαδοπούλου 😀",
    "Zoë 👩\u200d💻": "Zoë 👩\u200d💻",  # the joiner of an emoji sequence stays
    "\r\n\u2028": "",  # nothing left: named by email instead
    LONG: "",  # checked on its own: cut with an ellipsis
}
# Header lines every alert has, and nothing else.
HEADERS = {
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Auto-Submitted",
    "Content-Type",
    "Content-Transfer-Encoding",
    "MIME-Version",
}
# Characters that break a line, or are control characters, anywhere in Unicode.
LINE_OR_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass
class Delivered:
    message: EmailMessage
    raw: bytes
    recipients: list[str]


@dataclass
class EnvelopeSink:
    """An aiosmtpd server keeping each message with its raw bytes and envelope
    recipients (an injected Bcc would show there: smtplib moves it to RCPT)."""

    port: int = field(default_factory=free_port)
    delivered: list[Delivered] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.delivered.append(Delivered(parsed, raw, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def subjects(self, pattern: str) -> list[Delivered]:
        return [d for d in self.delivered if re.search(pattern, str(d.message["Subject"]))]


@contextmanager
def envelope_sink() -> Iterator[EnvelopeSink]:
    sink = EnvelopeSink()
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture
def sink() -> Iterator[EnvelopeSink]:
    with envelope_sink() as running:
        yield running


@pytest.fixture
def pipeline(database_url: str, tmp_path: Path, sink: EnvelopeSink) -> Iterator[Pipeline]:
    with pipeline_processes(database_url, tmp_path, sink) as running:
        yield running


def dead_letters(db: Engine) -> list[Any]:
    with db.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT event_id, effect, status, error FROM side_effect_runs"
                    " WHERE status <> 'done' ORDER BY event_id"
                )
            ).all()
        )


def body_of(delivered: Delivered) -> str:
    """The text of an alert, with the wire's CRLF line ends as newlines."""
    return str(delivered.message.get_content()).replace("\r\n", "\n")


def assert_clean(delivered: Delivered) -> str:
    """One well-formed alert, to the admins only; returns its Subject."""
    message = delivered.message
    assert delivered.recipients == [ADMINS]
    subject = str(message["Subject"])
    assert not LINE_OR_CONTROL.search(subject), repr(subject)
    assert subject.splitlines() == [subject]
    assert subject == subject.strip() and "  " not in subject, repr(subject)
    # On the wire: each header field once, folded only by CRLF + whitespace.
    head = delivered.raw.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"\r(?!\n)|(?<!\r)\n|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", head), head
    fields = re.split(rb"\r\n(?![ \t])", head)
    names = sorted(f.split(b":", 1)[0].decode().lower() for f in fields)
    assert names == sorted(h.lower() for h in HEADERS), names
    return subject


def person(index: int, name: str) -> str:
    """The name an alert about user ``index`` must use."""
    return HOSTILE[name] or f"h{index:02}@acme.test"


def check_long_name(subject: str, prefix: str, suffix: str) -> None:
    assert subject.startswith(f"{prefix}Eve xxxx") and subject.endswith(f"…{suffix}"), subject
    named = subject.removeprefix(prefix).removesuffix(suffix)
    assert 40 <= len(named) <= 80, len(named)


async def create_hostile_users(client: httpx2.AsyncClient, tenant: TenantHandle) -> list[str]:
    ids = []
    for n, name in enumerate(HOSTILE):
        created = await client.post(
            "/Users", json=user_body(f"h{n:02}@acme.test", displayName=name), headers=OKTA
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    return ids


def staff_ids(db: Engine) -> dict[str, str]:
    with db.connect() as conn:
        return {
            row.user_name: str(row.id)
            for row in conn.execute(text("SELECT id, user_name FROM users"))
        }


def about(delivered: list[Delivered], staff_id: str) -> Delivered:
    """The one alert among ``delivered`` that links to this staff record."""
    [found] = [d for d in delivered if f"/staff/{staff_id}\n" in body_of(d)]
    return found


async def test_every_alert_about_a_hostile_name_arrives_with_a_single_line_subject(
    client: httpx2.AsyncClient,
    db: Engine,
    tenant: TenantHandle,
    pipeline: Pipeline,
    sink: EnvelopeSink,
) -> None:
    """Digest, new admin (made by the IdP and by an administrator) and leaver
    alerts, for every hostile name; none becomes a dead letter."""
    with db.begin() as conn:
        tenancy.set_notify_email(conn, tenant.slug, ADMINS)
        tenancy.set_guard(conn, tenant.slug, guard_min_users=1000)
        role_mappings.map_group(conn, tenant.slug, "IdP Admins", "admin")
    for name in ("worker", "relay", "beat"):
        pipeline.start(name)
    ids = await create_hostile_users(client, tenant)
    half = len(ids) // 2
    for group, members in (("IdP Admins", ids[:half]), ("Later Admins", ids[half:])):
        body = {
            "schemas": [GROUP],
            "displayName": group,
            "members": [{"value": i} for i in members],
        }
        assert (await client.post("/Groups", json=body, headers=OKTA)).status_code == 201
    with db.begin() as conn:  # an administrator maps the second group afterwards
        changed = role_mappings.map_group(conn, tenant.slug, "Later Admins", "admin")
        assert changed == len(ids) - half
        for n in range(len(ids)):
            staff_history.record_checkout(conn, tenant.slug, f"h{n:02}@acme.test", f"LAPTOP-{n}")
    for scim_id in ids:
        assert (
            await client.patch(f"/Users/{scim_id}", json=DEACTIVATE, headers=OKTA)
        ).status_code == 200

    def digested() -> int:
        counts = [
            re.fullmatch(r"Okta created (\d+) users?", str(d.message["Subject"]))
            for d in sink.subjects(r"^Okta created")
        ]
        return sum(int(match[1]) for match in counts if match)

    wait_for(lambda: settled(db) and digested() == len(ids), "every effect and the digest")
    assert dead_letters(db) == []

    admins = sink.subjects(r" is now an admin$")
    leavers = sink.subjects(r"^Leaver ")
    digests = sink.subjects(r"^Okta created \d+ users?$")
    assert len(admins) == len(leavers) == len(ids)
    assert len(sink.delivered) == 2 * len(ids) + len(digests)
    for delivered in sink.delivered:
        assert_clean(delivered)
        text_of_it = body_of(delivered)
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202e]", text_of_it), (
            text_of_it
        )

    staff = staff_ids(db)
    for n, name in enumerate(HOSTILE):
        leaver = about(leavers, staff[f"h{n:02}@acme.test"])
        admin = about(admins, staff[f"h{n:02}@acme.test"])
        leaver_subject, admin_subject = (
            str(leaver.message["Subject"]),
            str(admin.message["Subject"]),
        )
        source = "Okta" if n < half else "A SimpleAMS administrator"
        assert f"{source} put them in a group" in body_of(admin)
        assert f"LAPTOP-{n} " in body_of(leaver)
        if name == LONG:
            check_long_name(leaver_subject, "Leaver ", " still holds 1 asset")
            check_long_name(admin_subject, "", " is now an admin")
            continue
        assert leaver_subject == f"Leaver {person(n, name)} still holds 1 asset"
        assert admin_subject == f"{person(n, name)} is now an admin"
        assert (
            body_of(leaver)
            .split("\n", 1)[0]
            .startswith(
                f"Okta has deactivated {person(n, name)}, who still has 1 asset checked out."
            )
        )
        assert body_of(admin).startswith(f"{person(n, name)} is now an admin ")


async def test_the_mass_deprovision_alert_and_released_leavers_arrive_for_hostile_names(
    client: httpx2.AsyncClient,
    db: Engine,
    tenant: TenantHandle,
    pipeline: Pipeline,
    sink: EnvelopeSink,
) -> None:
    """The guard's own alert, then the leaver alerts it held, once released."""
    with db.begin() as conn:
        tenancy.set_notify_email(conn, tenant.slug, ADMINS)
        tenancy.set_guard(conn, tenant.slug, guard_percent=10, guard_min_users=3)
    pipeline.start("worker")
    pipeline.start("relay")
    ids = await create_hostile_users(client, tenant)
    with db.begin() as conn:
        for n in range(len(ids)):
            staff_history.record_checkout(conn, tenant.slug, f"h{n:02}@acme.test", f"KEY-{n}")
    wait_for(lambda: settled(db), "the creations' effects")
    for scim_id in ids:
        assert (await client.patch(f"/Users/{scim_id}", json=DEACTIVATE)).status_code == 200
    wait_for(lambda: settled(db), "the deactivations' effects")
    unfinished = dead_letters(db)
    assert {(r.status, r.error) for r in unfinished} == {("held", None)}
    assert len(unfinished) == 2 * (len(ids) - 3)  # the lock and the alert of each
    held = wait_for(lambda: sink.subjects(r"held"), "the guard's alert")
    assert [assert_clean(d) for d in held] == ["Mass deprovisioning held for review"]
    assert len(sink.subjects(r"^Leaver ")) == 3  # under the threshold: sent at once

    with db.begin() as conn:
        assert side_effects.release_guard(conn, tenant.slug) == len(ids) - 3
    wait_for(
        lambda: settled(db) and len(sink.subjects(r"^Leaver ")) == len(ids), "the released alerts"
    )
    assert dead_letters(db) == []
    staff = staff_ids(db)
    for n, name in enumerate(HOSTILE):
        subject = assert_clean(about(sink.subjects(r"^Leaver "), staff[f"h{n:02}@acme.test"]))
        if name == LONG:
            check_long_name(subject, "Leaver ", " still holds 1 asset")
        else:
            assert subject == f"Leaver {person(n, name)} still holds 1 asset"
    assert len(sink.delivered) == len(ids) + 1


async def test_a_nul_in_a_name_is_refused_at_the_door(client: httpx2.AsyncClient) -> None:
    """NUL cannot be stored (PostgreSQL text), so no alert can carry one."""
    refused = await client.post("/Users", json=user_body("nul@acme.test", displayName="Eve\x00M"))
    assert refused.status_code == 400
    assert "NUL" in refused.json()["detail"]


# --- the name at the time of the event ----------------------------------------


async def test_alerts_name_the_user_as_named_when_the_event_happened(
    client: httpx2.AsyncClient,
    db: Engine,
    tenant: TenantHandle,
    pipeline: Pipeline,
    sink: EnvelopeSink,
) -> None:
    """Renamed after the event and before the worker sends the alert: the
    alert names the old name (displayName, or the email when there is none)."""
    with db.begin() as conn:
        tenancy.set_notify_email(conn, tenant.slug, ADMINS)
        role_mappings.map_group(conn, tenant.slug, "Admins", "admin")
    ann = (
        await client.post("/Users", json=user_body("ann@acme.test", displayName="Ann Old"))
    ).json()
    bob = (
        await client.post("/Users", json=user_body("bob@acme.test", displayName="Bob Old"))
    ).json()
    no_display = user_body("carl@acme.test")
    del no_display["displayName"]
    carl = (await client.post("/Users", json=no_display)).json()
    with db.begin() as conn:
        staff_history.record_checkout(conn, tenant.slug, "ann@acme.test", "LAPTOP-A")
        staff_history.record_checkout(conn, tenant.slug, "carl@acme.test", "LAPTOP-C")
    group = {"schemas": [GROUP], "displayName": "Admins", "members": [{"value": bob["id"]}]}
    assert (await client.post("/Groups", json=group, headers=OKTA)).status_code == 201
    for user in (ann, carl):
        assert (await client.patch(f"/Users/{user['id']}", json=DEACTIVATE)).status_code == 200
    # The events are written; no worker has run. Now the IdP renames everyone.
    renames = [
        (ann, {"displayName": "Ann New"}),
        (bob, {"displayName": "Bob New"}),
        (
            carl,
            {
                "userName": "carl.new@acme.test",
                "emails": [{"primary": True, "value": "carl.new@acme.test", "type": "work"}],
            },
        ),
        (ann, {"displayName": "Ann Newer"}),
    ]
    for user, value in renames:
        rename = {"Operations": [{"op": "replace", "value": value}]}
        assert (await client.patch(f"/Users/{user['id']}", json=rename)).status_code == 200
    assert scalar(db, "SELECT count(*) FROM side_effect_runs") == 0

    pipeline.start("worker")
    pipeline.start("relay")
    wait_for(lambda: settled(db), "every effect")
    assert dead_letters(db) == []
    subjects = sorted(assert_clean(d) for d in sink.delivered)
    assert subjects == [
        "Bob Old is now an admin",
        "Leaver Ann Old still holds 1 asset",
        "Leaver carl@acme.test still holds 1 asset",
    ]
    bodies = "\n".join(body_of(d) for d in sink.delivered)
    assert "Ann New" not in bodies and "Bob New" not in bodies and "carl.new" not in bodies
