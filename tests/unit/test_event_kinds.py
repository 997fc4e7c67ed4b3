"""models/event_kinds.py: the one naming of event kinds and IdPs, and its readers."""

from __future__ import annotations

from collections import Counter

from models.event_kinds import EVENT_KINDS, IDPS, idp_in_mail, idp_label
from models.outbox import EventKind
from workers import notify

ADMINS = "it-admins@acme.test"
URL = "https://acme.simpleams.test/staff"


def test_every_event_kind_is_named_in_lifecycle_order() -> None:
    assert list(EVENT_KINDS) == [kind.value for kind in EventKind]
    assert all(EVENT_KINDS[kind].kind is kind for kind in EventKind)


def test_the_names_of_a_kind() -> None:
    deactivated = EVENT_KINDS[EventKind.user_deactivated]
    assert (deactivated.noun, deactivated.verb, deactivated.label) == (
        "user",
        "deactivated",
        "Deactivated",
    )
    assert deactivated.audit_action == "deactivated"
    renamed = EVENT_KINDS["group.updated"]
    assert (renamed.noun, renamed.verb, renamed.label) == ("group", "updated", "Updated")
    # A group's audit entry keeps its kind, so it never reads as a user's.
    assert renamed.audit_action == "group.updated"


def test_an_idp_is_named_on_its_own_and_in_a_sentence() -> None:
    assert set(IDPS) == {"okta", "entra", "scim", "manual", "admin"}
    assert (idp_label("entra"), idp_in_mail("entra")) == ("Entra ID", "Microsoft Entra ID")
    assert (idp_label("scim"), idp_in_mail("scim")) == ("SCIM client", "Your identity provider")
    assert (idp_label("admin"), idp_in_mail("admin")) == (
        "SimpleAMS admin",
        "A SimpleAMS administrator",
    )
    assert (idp_label("other"), idp_in_mail("other")) == ("other", "Your identity provider")


def test_emails_name_idps_from_the_registry() -> None:
    counts: Counter[tuple[str, str]] = Counter(
        {("entra", "user.created"): 1, ("admin", "user.updated"): 2, ("okta", "user.deleted"): 3}
    )
    digest = notify.digest_email("acme", ADMINS, counts, URL)
    assert digest.subject == (
        "A SimpleAMS administrator updated 2 users; Microsoft Entra ID created 1 user; "
        "Okta deleted 3 users"
    )
    leaver = notify.leaver_email("acme", ADMINS, "Lee", "entra", [], URL)
    assert leaver.body.startswith("Microsoft Entra ID has deactivated Lee, ")
    promoted = notify.new_admin_email("acme", ADMINS, "Lee", "admin", URL)
    assert "SimpleAMS: A SimpleAMS administrator put them" in promoted.body
