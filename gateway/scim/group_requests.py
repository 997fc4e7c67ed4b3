"""Group request bodies (POST/PUT) and PATCH operations -> what to change.

A group's own attributes are validated and patched by the shared engine
(gateway/scim/schema.validate, gateway/scim/patch.py), as a user's are. What
is read here is what only groups have: ``members``, a list of user ids read
in time linear in its length, and a PATCH's membership operations, kept as
net changes so that applying them costs the number of changes, not the size
of the group (gateway/scim/group_store.py).

What Okta (Push Groups) and Entra send, all accepted:

- Okta renames with ``replace`` and no path: ``{"id": …, "displayName": …}``;
  adds with ``add`` ``path: members`` and a list; removes with
  ``path: members[value eq "…"]``, one operation per member.
- Entra capitalises ``op`` (``Add``/``Remove``/``Replace``) and removes with
  ``path: members`` *and* a ``value`` list: that removes the listed members
  only (reading it as "remove all", as some servers do, empties the group).
- ``remove`` of ``members`` without a value removes everyone (RFC 7644
  §3.5.2.2); ``replace`` of ``members`` sets the whole list.

Members are users of the same tenant, named by their SCIM id; SimpleAMS has
no nested groups, so a member of ``type`` Group is refused.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from scim2_models import Context, PatchOp
from scim2_models import Group as ScimGroup

from gateway.scim import errors
from gateway.scim.patch import apply_operations, read_operations, validate_operations
from gateway.scim.resources import GROUP, GROUP_URN
from gateway.scim.schema import validate

MAX_NAME_LENGTH = 256
_MEMBER_PATH = re.compile(r'members\[\s*value\s+eq\s+"([^"]*)"\s*\]', re.IGNORECASE)


# A member list: user SCIM id -> the "display" the IdP sent (or None), in order.
Members = dict[str, str | None]


@dataclass
class GroupInput:
    display_name: str
    external_id: str | None
    members: Members
    # Attribute names the client sent that groups do not have (ignored, noted).
    ignored_attributes: list[str] = field(default_factory=list)


def parse_group(body: Any, *, replacing: bool = False) -> GroupInput:
    """Validate a POST (``replacing=False``) or PUT body.

    The group's own attributes are validated by scim2-models against the
    Group schema, as a user's are (gateway/scim/schema.py), with the same
    policy (unknown attributes ignored). Its members are read by ``_members``:
    a list of ids, in time linear in its length, where validating tens of
    thousands of member objects as models would hold the event loop for a
    good part of a second.
    """
    if not isinstance(body, dict):
        raise errors.InvalidSyntax("A group must be a JSON object (RFC 7643 §4.2).")
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or GROUP_URN.lower() not in {str(s).lower() for s in schemas}:
        raise errors.InvalidValue(f"'schemas' must list {GROUP_URN!r}.")
    members = next((value for key, value in body.items() if key.lower() == "members"), None)
    own = {key: value for key, value in body.items() if key.lower() not in _NOT_VALIDATED}
    group = validate(ScimGroup, own, replacing=replacing)
    return GroupInput(
        display_name=_display_name(group.display_name),
        external_id=_external_id(group.external_id),
        members=_members(members) if members is not None else {},
        ignored_attributes=sorted(group.unknown_attributes),
    )


# Read-only on input (ignored, RFC 7644 §3.3), and members (read by _members).
_NOT_VALIDATED = frozenset({"id", "meta", "members"})


@dataclass
class GroupPatch:
    """A group's PATCH, read: operations on its own attributes (applied by
    the shared engine, gateway/scim/patch.py), then its membership as net
    changes."""

    attributes: PatchOp[ScimGroup] | None = None
    # Set when the whole member list is replaced (or removed): the new list.
    replaced_members: Members | None = None
    # scim id -> True (add) / False (remove), the last operation winning.
    membership: dict[str, bool] = field(default_factory=dict)
    displays: dict[str, str | None] = field(default_factory=dict)

    def added(self) -> Members:
        return {m: self.displays.get(m) for m, present in self.membership.items() if present}

    def removed(self) -> list[str]:
        return [member for member, present in self.membership.items() if not present]

    def final_members(self) -> Members:
        """With ``replaced_members``: the complete new list."""
        final = dict(self.replaced_members or {})
        final.update(self.added())
        for member in self.removed():
            final.pop(member, None)
        return final


def parse_group_patch(body: Any) -> GroupPatch:
    """A group's PATCH body: the shared reading (patch.read_operations), with
    ``members`` taken out as membership changes and the rest validated
    against the Group schema (patch.validate_operations)."""
    patch = GroupPatch()
    own: list[dict[str, Any]] = []
    for number, operation in enumerate(read_operations(body), start=1):
        op, path = operation["op"], operation["path"]
        if path is None:
            value = dict(operation["value"])
            key = next((key for key in value if key.lower() == "members"), None)
            if key is not None:
                _change_members(patch, op, value.pop(key))
            if value:
                own.append({**operation, "value": value})
            continue
        attribute = path.strip()
        if attribute.lower().startswith(GROUP_URN.lower() + ":"):
            attribute = attribute[len(GROUP_URN) + 1 :]
        one_member = _MEMBER_PATH.fullmatch(attribute)
        if one_member is not None:
            if op != "remove":
                raise errors.InvalidPath(
                    f"Operation {number}: {path!r} can only be removed; " + _ADD_MEMBERS
                )
            patch.membership[one_member.group(1)] = False
        elif attribute.lower() == "members":
            _change_members(patch, op, operation.get("value"))
        elif attribute.lower().startswith(("members.", "members[")):
            raise errors.InvalidPath(
                f"Operation {number}: members cannot be changed through {path!r}; " + _ADD_MEMBERS
            )
        else:
            own.append(operation)
    if own:
        patch.attributes = validate_operations(GROUP, own, frozenset())
    return patch


_ADD_MEMBERS = (
    'add or remove members with path "members" and a list of {"value": "<user id>"}, '
    "or remove one with path 'members[value eq \"<user id>\"]'."
)


def _change_members(patch: GroupPatch, op: str, value: Any) -> None:
    if op == "remove" and value is None:
        patch.replaced_members, patch.membership = {}, {}
    elif op == "replace":
        patch.replaced_members, patch.membership = _members(value), {}
    else:
        for member, display in _members(value).items():
            patch.membership[member] = op == "add"
            patch.displays[member] = display


def apply_group_patch(
    display_name: str, external_id: str | None, patch: GroupPatch
) -> tuple[dict[str, Any], list[str]]:
    """The group's own attribute values after ``patch`` (display_name,
    external_id), and the attributes it named that groups do not have."""
    if patch.attributes is None:
        return {}, []
    group = ScimGroup.model_validate(
        {"schemas": [GROUP_URN], "displayName": display_name, "externalId": external_id},
        scim_ctx=Context.DEFAULT,
    )
    ignored = apply_operations(GROUP, group, patch.attributes)
    values = {
        "display_name": _display_name(group.display_name),
        "external_id": _external_id(group.external_id),
    }
    return values, ignored


def _display_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise errors.InvalidValue("'displayName' is required and must be a non-empty string.")
    if len(value) > MAX_NAME_LENGTH:
        raise errors.InvalidValue(f"'displayName' is longer than {MAX_NAME_LENGTH} characters.")
    # Stored in NFC, as users' text is (gateway/scim/schema.py).
    return unicodedata.normalize("NFC", value.strip())


def _external_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.InvalidValue("'externalId' must be a string.")
    if len(value) > MAX_NAME_LENGTH:
        raise errors.InvalidValue(f"'externalId' is longer than {MAX_NAME_LENGTH} characters.")
    return unicodedata.normalize("NFC", value)


def _members(value: Any) -> Members:
    items = value if isinstance(value, list) else [value]
    members: Members = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            raise errors.InvalidValue(
                'Each member must be an object with the user\'s id as "value", '
                'e.g. {"value": "2819c223-7f76-453a-919d-413861904646"}.'
            )
        kind = item.get("type")
        if kind is not None and str(kind).lower() != "user":
            raise errors.InvalidValue(
                f"Member {item['value']!r} is of type {kind!r}: SimpleAMS groups hold users "
                "only (no nested groups)."
            )
        display = item.get("display")
        members[item["value"]] = display[:256] if isinstance(display, str) else None
    return members
