"""How provisioning events and the actors behind them are named, in one registry.

The audit log's ``action``, the notification emails ("Okta created 3
users") and the activity page ("Okta: 3 users created", the Change and From
columns, the chart's series) all read these tables; none keeps its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.outbox import EventKind


@dataclass(frozen=True)
class EventKindNames:
    """How one event kind is named.

    :param kind: the event kind.
    :param noun: what the event is about, ``user`` or ``group``.
    :param verb: what happened to it, past tense: ``created``.
    :param series: the activity chart's series a user's event counts in
        (``created``, ``updated`` or ``deactivated``), or None.
    """

    kind: EventKind
    noun: str
    verb: str
    series: str | None = None

    @property
    def label(self) -> str:
        """The activity page's Change column: ``Created``."""
        return self.verb.capitalize()

    @property
    def audit_action(self) -> str:
        """``audit_log.action``: the verb for a user's entry (``deactivated``),
        the kind itself for a group's (``group.created``)."""
        return self.verb if self.noun == "user" else self.kind.value


# In the order the activity page lists them: a person's lifecycle, then groups.
_ALL = (
    EventKindNames(EventKind.user_created, "user", "created", "created"),
    EventKindNames(EventKind.user_updated, "user", "updated", "updated"),
    EventKindNames(EventKind.user_deactivated, "user", "deactivated", "deactivated"),
    EventKindNames(EventKind.user_reactivated, "user", "reactivated", "updated"),
    # A delete from the IdP deactivates; a re-hire restores a deleted user.
    EventKindNames(EventKind.user_deleted, "user", "deleted", "deactivated"),
    EventKindNames(EventKind.user_restored, "user", "restored", "created"),
    EventKindNames(EventKind.group_created, "group", "created"),
    EventKindNames(EventKind.group_updated, "group", "updated"),
    EventKindNames(EventKind.group_deleted, "group", "deleted"),
)
# Keyed by the kind's value (an EventKind is one too).
EVENT_KINDS: dict[str, EventKindNames] = {names.kind.value: names for names in _ALL}


@dataclass(frozen=True)
class IdpNames:
    """How one actor of events (``provisioning_events.actor_idp``) is named.

    :param label: on its own, as the activity page shows it: ``Entra ID``.
    :param in_mail: as the subject of a sentence in an email, in full:
        ``Microsoft Entra ID created 3 users``, ``Your identity provider has
        deactivated …``.
    """

    label: str
    in_mail: str


_SOME_IDP = "Your identity provider"

IDPS: dict[str, IdpNames] = {
    "okta": IdpNames("Okta", "Okta"),
    "entra": IdpNames("Entra ID", "Microsoft Entra ID"),
    "scim": IdpNames("SCIM client", _SOME_IDP),
    "manual": IdpNames("Manual", _SOME_IDP),
    "admin": IdpNames("SimpleAMS admin", "A SimpleAMS administrator"),
}


def idp_label(idp: str) -> str:
    """The activity page's name for an actor; an unknown one as it is recorded."""
    names = IDPS.get(idp)
    return names.label if names is not None else idp


def idp_in_mail(idp: str) -> str:
    """An email's name for an actor; an unknown one is "Your identity provider"."""
    names = IDPS.get(idp)
    return names.in_mail if names is not None else _SOME_IDP
