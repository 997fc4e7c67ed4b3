"""Alerts built from any name a user can be given are deliverable: one-line
headers, no injected header, nothing the mail library refuses."""

from __future__ import annotations

import io
import re
from collections import Counter
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.generator import BytesGenerator
from email.message import EmailMessage

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from workers import mail, notify
from workers.settings import WorkerSettings

SETTINGS = WorkerSettings()
ADMINS = "it-admins@acme.test"
URL = "https://acme.simpleams.test/staff/1"
HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "auto-submitted",
    "content-type",
    "content-transfer-encoding",
    "mime-version",
}
LINE_OR_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# Any code point, surrogates, unassigned and private-use ones included.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=300)


def on_the_wire(message: EmailMessage) -> bytes:
    """The bytes smtplib.send_message sends for ``message``."""
    out = io.BytesIO()
    BytesGenerator(out, policy=message.policy.clone(linesep="\r\n")).flatten(message)
    return out.getvalue()


def delivered(email: notify.Email) -> EmailMessage:
    """Build, serialise and parse back an alert as the SMTP server sees it."""
    raw = on_the_wire(mail.build_message(SETTINGS, email.to, email.subject, email.body))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"\r(?!\n)|(?<!\r)\n|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", head), head
    names = [f.split(b":", 1)[0].decode().lower() for f in re.split(rb"\r\n(?![ \t])", head)]
    assert sorted(names) == sorted(HEADERS)
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    subject = str(parsed["Subject"])
    assert not LINE_OR_CONTROL.search(subject), repr(subject)
    # The same text, but for spaces: where the email package folds a long
    # non-ASCII Subject into several RFC 2047 encoded words, a space between
    # two of them is dropped on reading (RFC 2047 §6.2 says to ignore it).
    assert subject.replace(" ", "") == email.subject.replace(" ", "")
    assert len(subject) <= mail.HEADER_LIMIT
    return parsed


def alerts(name: str) -> list[notify.Email]:
    held = [("LAPTOP-1", "ThinkPad", datetime(2024, 3, 1, tzinfo=UTC))]
    return [
        notify.leaver_email("acme", ADMINS, name, "okta", held, URL),
        notify.new_admin_email("acme", ADMINS, name, "okta", URL),
        notify.new_admin_email("acme", ADMINS, name, "admin", URL),
    ]


@given(ANY_TEXT)
@example("Eve\r\nBcc: attacker@evil.test")
@example("Eve\u2028Mallory\x85\x00\x1b[31m")
@example("\ud800 lone surrogate")
@example("x" * 5000)
def test_an_alert_about_any_name_is_deliverable(name: str) -> None:
    for email in alerts(name):
        message = delivered(email)
        body = str(message.get_content()).replace("\r\n", "\n")
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]", body), repr(body)


@given(ANY_TEXT)
def test_any_subject_handed_to_build_message_is_sent_as_one_clean_line(subject: str) -> None:
    delivered(notify.Email(ADMINS, mail.header_text(subject), "body"))
    message = mail.build_message(SETTINGS, ADMINS, subject, "body")
    assert str(message["Subject"]) == mail.header_text(subject)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("Eve\rMallory", "Eve Mallory"),
        ("Eve\nMallory", "Eve Mallory"),
        ("Eve\r\nBcc: attacker@evil.test", "Eve Bcc: attacker@evil.test"),
        ("Eve\u2028Mallory\u2029", "Eve Mallory"),
        ("Eve\x85Mallory", "Eve Mallory"),
        ("Eve\x00Mallory", "Eve Mallory"),
        ("Eve\x1b[31mMallory", "Eve [31mMallory"),
        ("  Eve\t\x0b\x0c Mallory  ", "Eve Mallory"),
        ("Eve\u202eyrollaM\u200b\ufeff", "EveyrollaM"),
        ("Ελένη Παπαδοπούλου 😀", "Ελένη Παπαδοπούλου 😀"),
        ("Zoë 👩\u200d💻", "Zoë 👩\u200d💻"),
        ("\ud800x", "\ufffdx"),
        ("\r\n\u2028\u200b", ""),
    ],
)
def test_header_text_folds_line_breaks_and_drops_control_characters(value: str, text: str) -> None:
    assert mail.header_text(value) == text


def test_header_text_cuts_a_long_value_with_an_ellipsis() -> None:
    assert mail.header_text("Eve " + "x" * 5000, 20) == "Eve " + "x" * 15 + "…"
    assert mail.header_text("Eve " + " " * 30 + "Mallory", 20) == "Eve Mallory"
    assert mail.header_text("a" * 20, 20) == "a" * 20
    assert len(mail.header_text("x" * 5000)) == mail.HEADER_LIMIT


def test_a_name_with_nothing_printable_is_named_by_the_next_candidate() -> None:
    assert notify.person_name("\r\n", "eve@acme.test", "eve") == "eve@acme.test"
    assert notify.person_name(None, None, "eve") == "eve"
    assert notify.person_name("\u2028", "", "\x1b") == "an unnamed user"


def test_a_long_name_is_cut_so_the_subject_still_says_what_happened() -> None:
    leaver = notify.leaver_email("acme", ADMINS, "Eve " + "x" * 5000, "okta", [], URL)
    assert leaver.subject.endswith("… still holds 0 assets")
    assert len(leaver.subject) <= len("Leaver  still holds 0 assets") + notify.NAME_LIMIT


def test_every_alert_kind_has_a_clean_subject() -> None:
    counts: Counter[tuple[str, str]] = Counter({("okta", "user.created"): 3})
    for email in [
        *alerts("Eve\r\nBcc: attacker@evil.test"),
        notify.guard_email("acme", ADMINS, URL),
        notify.digest_email("acme", ADMINS, counts, URL),
    ]:
        delivered(email)
