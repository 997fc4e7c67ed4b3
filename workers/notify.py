"""Side effect: tell the tenant's admins, without flooding them.

- A leaver (deactivated or deleted by the IdP) who still holds assets, and
  someone who has just become an admin, get an immediate alert; a leaver the
  mass-deprovision guard holds is not alerted, but the admins are, once per
  trip.
- Everything else becomes a digest item; ``send_digests`` (run by beat) folds
  a tenant's pending items into one email at most every
  ``SIMPLEAMS_DIGEST_INTERVAL_SECONDS``: an initial sync of 50,000 users is
  one email per interval, not 50,000.

This module decides what an event means (``decide``) and composes the
emails. Recording each email once (models/notifications.py), the send lease,
sending, marking, retries and dead letters are the side-effect framework's
(workers/effects.py), for the digests as for the alerts.

Emails never contain a token. Users are named as they were named when the
event happened (``names_at``), and every piece of their name that reaches an
email goes through ``mail.header_text``: one line, no control characters,
bounded, so no name can forge a header or make an alert undeliverable.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from models import guard
from models.checkouts import open_checkouts
from models.event_kinds import EVENT_KINDS, idp_in_mail
from models.notifications import DigestItem, Notification, NotificationKind
from models.outbox import Effect, ProvisioningEvent
from models.tenants import Tenant
from models.users import Role, User, primary_email
from workers import mail
from workers.app import app
from workers.db import session_scope
from workers.effects import (
    DONE,
    SENT,
    Decision,
    Delivery,
    Hold,
    PermanentError,
    Send,
    deliver,
    effect_task,
)
from workers.routing import DIGEST_TASK
from workers.settings import settings

# The longest name an alert shows, in characters: long enough for any real
# name, short enough that the Subject still says what happened.
NAME_LIMIT = 80
UNNAMED = "an unnamed user"


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    body: str


# --- composing (pure) ---------------------------------------------------------


def person_name(display_name: str | None, email: str | None, user_name: str | None) -> str:
    """How an alert names a user: the first of their displayName, email and
    userName with something printable in it, made safe (``mail.header_text``)."""
    for candidate in (display_name, email, user_name):
        name = mail.header_text(candidate or "", NAME_LIMIT)
        if name:
            return name
    return UNNAMED


def leaver_email(
    tenant_slug: str,
    to: str,
    person: str,
    idp: str,
    held: list[tuple[str, str, datetime]],
    staff_url: str,
) -> Email:
    person = mail.header_text(person, NAME_LIMIT) or UNNAMED
    count = len(held)
    noun = "asset" if count == 1 else "assets"
    lines = [
        f"{idp_in_mail(idp)} has deactivated {person}, who still has "
        f"{count} {noun} checked out. They can no longer check anything out; "
        "please arrange for these to be returned:",
        "",
        *(f"  - {tag}  {name}  (checked out {when:%d %b %Y})" for tag, name, when in held),
        "",
        f"Staff record and checkout history: {staff_url}",
        "",
        f"-- SimpleAMS provisioning for {tenant_slug}",
    ]
    subject = mail.header_text(f"Leaver {person} still holds {count} {noun}")
    return Email(to=to, subject=subject, body="\n".join(lines))


def new_admin_email(tenant_slug: str, to: str, person: str, idp: str, staff_url: str) -> Email:
    person = mail.header_text(person, NAME_LIMIT) or UNNAMED
    lines = [
        f"{person} is now an admin in SimpleAMS: {idp_in_mail(idp)} put them in a group that is",
        "mapped to the admin role (simpleams roles list shows the mappings).",
        "",
        "If you did not expect this, remove them from the group in your identity provider.",
        "",
        f"Staff record: {staff_url}",
        "",
        f"-- SimpleAMS provisioning for {tenant_slug}",
    ]
    return Email(
        to=to, subject=mail.header_text(f"{person} is now an admin"), body="\n".join(lines)
    )


def guard_email(tenant_slug: str, to: str, staff_url: str) -> Email:
    lines = [
        "An unusual number of your users were deactivated or deleted by your identity "
        "provider in a short time. SimpleAMS has recorded the deactivations, but it is",
        "holding their checkout locks and notifications until an administrator reviews them.",
        "",
        "If this was intended (a reorganisation, an offboarding wave), release them with:",
        f"    simpleams guard release {tenant_slug}",
        "If it was not, check your identity provider and regenerate the SCIM token.",
        "",
        f"Staff list: {staff_url}",
        "",
        f"-- SimpleAMS provisioning for {tenant_slug}",
    ]
    subject = mail.header_text("Mass deprovisioning held for review")
    return Email(to=to, subject=subject, body="\n".join(lines))


def digest_email(
    tenant_slug: str, to: str, counts: Counter[tuple[str, str]], staff_url: str
) -> Email:
    """``counts`` maps (idp, event kind) to a number of users."""
    per_idp: dict[str, list[str]] = {}
    for (idp, kind), number in sorted(counts.items()):
        names = EVENT_KINDS[kind]
        noun = names.noun if number == 1 else f"{names.noun}s"
        per_idp.setdefault(idp, []).append(f"{names.verb} {number:,} {noun}")
    summaries = [f"{idp_in_mail(idp)} {', '.join(parts)}" for idp, parts in per_idp.items()]
    lines = [
        "Provisioning since the last summary:",
        "",
        *(f"  - {summary}" for summary in summaries),
        "",
        f"Staff list: {staff_url}",
        "",
        f"-- SimpleAMS provisioning for {tenant_slug}",
    ]
    return Email(to=to, subject=mail.header_text("; ".join(summaries)), body="\n".join(lines))


def send_email(email: Email) -> None:
    mail.send(settings, mail.build_message(settings, email.to, email.subject, email.body))


# --- per event ----------------------------------------------------------------


# The attributes (wire names, as events record them) an alert names a user by.
_NAMING = ("displayName", "emails", "userName")


def names_at(session: Session, event: ProvisioningEvent, user: User) -> str:
    """How to name ``user`` in an alert about ``event``: as they were named
    just after it, not as they are named now (a rename may have come since).

    ``user`` holds today's values. Every write since the event recorded the
    values it replaced (``changes``: {"displayName": [before, after]}), and
    writes to one user are serialised (the gateway locks the row), so event
    ids follow their order: the first later change of an attribute holds its
    value at the time of the event. ``user`` must have been read before this
    runs: a rename committed in between is then among the later events.
    """
    display_name, email, user_name = user.display_name, user.email, user.user_name
    later = session.scalars(
        select(ProvisioningEvent.changes)
        .where(
            ProvisioningEvent.user_id == user.id,
            ProvisioningEvent.id > event.id,
            ProvisioningEvent.changes.has_any(array(_NAMING)),
        )
        .order_by(ProvisioningEvent.id.desc())
    )
    for changes in later:  # newest first: each older change overrides
        if _changed(changes, "displayName"):
            display_name = _before(changes, "displayName")
        if _changed(changes, "userName"):
            user_name = _before(changes, "userName") or user_name
        if _changed(changes, "emails"):
            emails = changes["emails"][0]
            email = primary_email(emails)
    return person_name(display_name, email, user_name)


def _changed(changes: dict[str, Any], attribute: str) -> bool:
    pair = changes.get(attribute)
    return isinstance(pair, list) and len(pair) == 2


def _before(changes: dict[str, Any], attribute: str) -> str | None:
    value = changes[attribute][0]
    return value if isinstance(value, str) else None


def _is_leaving(event: ProvisioningEvent, user: User) -> bool:
    # Decide on the user's current state: a leaver re-enabled since is not one.
    return guard.is_leaving(event) and (not user.active or user.deleted_at is not None)


def _became_admin(event: ProvisioningEvent) -> bool:
    role = (event.changes or {}).get("role")
    return isinstance(role, list) and len(role) == 2 and role[1] == Role.admin.value


def decide(session: Session, event: ProvisioningEvent) -> Decision[Email]:
    """What ``event`` means for the admins: held by the guard (and, once per
    trip, the guard's alert), a leaver alert, a new-admin alert, or a digest
    item (``DONE``: ``queue_for_digest`` does it, with the batch)."""
    if not (guard.is_leaving(event) or _became_admin(event)):
        return DONE  # joiners and movers: nothing to read but the event
    tenant = session.get(Tenant, event.tenant_id)
    user = session.get(User, event.user_id) if event.user_id is not None else None
    if tenant is None or user is None:
        raise PermanentError(f"event {event.id}: its tenant or user no longer exists")
    if guard.holds(session, event):
        return Hold(_guard_alert(session, event, tenant))
    if not tenant.notify_email:
        return DONE
    staff_page = settings.addresses.staff_page(tenant.slug, user.id)
    if _became_admin(event):
        name = names_at(session, event, user)
        alert = new_admin_email(tenant.slug, tenant.notify_email, name, event.actor_idp, staff_page)
        return Send(NotificationKind.new_admin, alert)
    held = open_checkouts(session, user.id) if _is_leaving(event, user) else []
    if not held:
        return DONE
    name = names_at(session, event, user)
    alert = leaver_email(tenant.slug, tenant.notify_email, name, event.actor_idp, held, staff_page)
    return Send(NotificationKind.leaver_with_assets, alert)


def _guard_alert(session: Session, event: ProvisioningEvent, tenant: Tenant) -> Send[Email] | None:
    """Tell the admins the guard tripped, once per trip: unless another held
    event of this trip has recorded the alert already."""
    if not tenant.notify_email:
        return None
    tripped = select(Tenant.guard_tripped_at).where(Tenant.id == tenant.id).scalar_subquery()
    already = session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(
            Notification.tenant_id == tenant.id,
            Notification.kind == NotificationKind.guard_tripped.value,
            Notification.created_at >= tripped,
            Notification.event_id != event.id,
        )
    )
    if already:
        return None
    staff_list = settings.addresses.staff_list(tenant.slug)
    return Send(
        NotificationKind.guard_tripped, guard_email(tenant.slug, tenant.notify_email, staff_list)
    )


def queue_for_digest(session: Session, events: list[ProvisioningEvent]) -> None:
    """Digest items for events whose notification runs were claimed in this transaction."""
    addresses = dict(
        session.execute(
            select(Tenant.id, Tenant.notify_email).where(
                Tenant.id.in_({event.tenant_id for event in events})
            )
        ).all()
    )
    items = [
        {
            "event_id": event.id,
            "tenant_id": event.tenant_id,
            "kind": event.kind,
            "actor_idp": event.actor_idp,
        }
        for event in events
        if addresses.get(event.tenant_id)
    ]
    if items:  # a tenant with no notification address gets no digest
        session.execute(pg_insert(DigestItem).values(items).on_conflict_do_nothing())


NOTIFY = Delivery(Effect.notify, compose=decide, send=send_email, apply=queue_for_digest)
on_event = effect_task(app, NOTIFY)


# --- digests ------------------------------------------------------------------


@app.task(name=DIGEST_TASK.task_name, acks_late=True, ignore_result=True)
def send_digests() -> int:
    """Send each tenant with pending items one digest, at most once per interval."""
    with session_scope() as session:
        tenant_ids = session.scalars(
            select(DigestItem.tenant_id).where(DigestItem.notification_id.is_(None)).distinct()
        ).all()
    prepared = _unsent_digests() + [
        digest for digest in map(_prepare_digest, tenant_ids) if digest is not None
    ]
    # The first failure ends the run; what it did not send is sent by a later one.
    return sum(deliver(record_id, email, send_email) == SENT for record_id, email in prepared)


def _prepare_digest(tenant_id: uuid.UUID) -> tuple[uuid.UUID, Email] | None:
    """Record the tenant's next digest: its row, and its items pointing at it."""
    with session_scope() as session:
        # One digest builder per tenant at a time (two beats, overlapping runs).
        tenant = session.scalars(
            select(Tenant)
            .where(Tenant.id == tenant_id)
            .with_for_update(skip_locked=True, key_share=True)
        ).one_or_none()
        if tenant is None or not tenant.notify_email:
            return None
        since = datetime.now().astimezone() - timedelta(seconds=settings.digest_interval_seconds)
        recent = session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(
                Notification.tenant_id == tenant_id,
                Notification.kind == NotificationKind.digest.value,
                Notification.created_at > since,
            )
        )
        pending = session.scalar(
            select(func.count())
            .select_from(DigestItem)
            .where(DigestItem.tenant_id == tenant_id, DigestItem.notification_id.is_(None))
        )
        if recent or not pending:
            return None
        notification = Notification(
            tenant_id=tenant_id,
            kind=NotificationKind.digest.value,
            recipient=tenant.notify_email,
            subject="",
        )
        session.add(notification)
        session.flush()
        session.execute(
            update(DigestItem)
            .where(DigestItem.tenant_id == tenant_id, DigestItem.notification_id.is_(None))
            .values(notification_id=notification.id)
        )
        email = _digest_for(session, tenant, notification.id)
        notification.subject = email.subject[:500]
        return notification.id, email


def _digest_for(session: Session, tenant: Tenant, notification_id: uuid.UUID) -> Email:
    counts = Counter(
        (row.actor_idp, row.kind)
        for row in session.execute(
            select(DigestItem.actor_idp, DigestItem.kind).where(
                DigestItem.notification_id == notification_id
            )
        )
    )
    return digest_email(
        tenant.slug,
        tenant.notify_email or "",
        counts,
        settings.addresses.staff_list(tenant.slug),
    )


def _unsent_digests() -> list[tuple[uuid.UUID, Email]]:
    """Digests recorded by a run that died before sending them: send them now."""
    stale = datetime.now().astimezone() - timedelta(minutes=2)
    with session_scope() as session:
        rows = session.execute(
            select(Notification.id, Notification.tenant_id)
            .where(
                Notification.kind == NotificationKind.digest.value,
                Notification.status == "pending",
                Notification.created_at < stale,
            )
            .with_for_update(skip_locked=True)
        ).all()
        unsent = []
        for row in rows:
            tenant = session.get(Tenant, row.tenant_id)
            if tenant is not None and tenant.notify_email:
                unsent.append((row.id, _digest_for(session, tenant, row.id)))
        return unsent
