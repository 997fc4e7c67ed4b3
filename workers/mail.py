"""Sending one email over SMTP, with failures sorted into transient and permanent."""

from __future__ import annotations

import smtplib
import ssl
import unicodedata
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

from workers.effects import PermanentError, TransientError
from workers.settings import WorkerSettings

_TRUE = {"1", "true", "yes", "on"}

# The longest header value we build, in characters: a Subject a mail client
# shows whole. Header lines are folded to 78 bytes by the email package.
HEADER_LIMIT = 200
# Invisible format characters kept: emoji sequences and some scripts need the
# joiners. The others (bidi overrides that reverse a Subject, zero-width
# spaces, BOM) are dropped.
_JOINERS = {"\u200c", "\u200d"}
_DROPPED_AT_THE_END = " \u200c\u200d"


def header_text(value: str, limit: int = HEADER_LIMIT) -> str:
    """``value``, from users' data, as one line of text safe in any header.

    Every header built from data a user or an IdP controls goes through
    here: the email package refuses a header containing a line break
    (CR, LF, NEL, U+2028 …), which would turn the alert into a permanent
    failure, and must never be handed a header that forges another.

    - line breaks and other control characters (C0, DEL, C1) become spaces;
    - format characters are dropped, except the zero-width (non-)joiners;
    - a lone surrogate becomes U+FFFD (it cannot be encoded);
    - runs of whitespace fold into one space, and the ends are trimmed;
    - at most ``limit`` characters: a longer value is cut, ending in "…".

    Idempotent: ``header_text(header_text(v)) == header_text(v)``.
    """
    kept: list[str] = []
    for char in value:
        category = unicodedata.category(char)
        if category in ("Cc", "Zl", "Zp"):
            kept.append(" ")
        elif category == "Cs":
            kept.append("\ufffd")
        elif category != "Cf" or char in _JOINERS:
            kept.append(char)
    text = " ".join("".join(kept).split())  # str.split: every Unicode space
    if len(text) > limit:
        text = text[: limit - 1].rstrip(_DROPPED_AT_THE_END) + "…"
    return text


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply


def build_message(settings: WorkerSettings, to: str, subject: str, body: str) -> EmailMessage:
    """The email; ``subject`` may hold anything (it goes through ``header_text``).

    ``to`` is the tenant's notification address, checked when the operator
    sets it (gateway/tenancy.py), and From is configuration: neither
    comes from users' data.
    """
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = header_text(subject)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(idstring=uuid.uuid4().hex[:12], domain="simpleams.co.uk")
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
    message.set_content(body, charset="utf-8")
    return message


def send(settings: WorkerSettings, message: EmailMessage) -> None:
    """Deliver through ``SMTP_URL``; raise TransientError or PermanentError."""
    url = urlsplit(settings.smtp_url)
    options = {key: values[-1] for key, values in parse_qs(url.query).items()}
    implicit_tls = url.scheme == "smtps"
    host = url.hostname or "127.0.0.1"
    port = url.port or (465 if implicit_tls else 25)
    context = ssl.create_default_context()
    if options.get("verify", "true").lower() not in _TRUE:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        client: smtplib.SMTP = (
            smtplib.SMTP_SSL(host, port, timeout=20, context=context)
            if implicit_tls
            else smtplib.SMTP(host, port, timeout=20)
        )
        with client:
            if not implicit_tls and options.get("starttls", "false").lower() in _TRUE:
                client.starttls(context=context)
            if url.username:
                client.login(unquote(url.username), unquote(url.password or ""))
            client.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        replies = {
            address: (code, _text(reply)) for address, (code, reply) in exc.recipients.items()
        }
        reason = f"the SMTP server refused the recipient(s): {replies}"
        # RFC 5321 §4.2.1: 4yz (greylisting, a full mailbox) is worth retrying.
        if all(400 <= code < 500 for code, _ in replies.values()):
            raise TransientError(reason) from exc
        raise PermanentError(reason) from exc
    except smtplib.SMTPResponseException as exc:
        # RFC 5321 §4.2.1: 4yz is transient, 5yz permanent.
        reason = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
        if 400 <= exc.smtp_code < 500:
            raise TransientError(reason) from exc
        raise PermanentError(reason) from exc
    except (OSError, smtplib.SMTPException) as exc:
        # Connection refused, timeouts, a dropped connection: the server may come back.
        raise TransientError(
            f"SMTP delivery to {host}:{port} failed: {type(exc).__name__}"
        ) from exc
