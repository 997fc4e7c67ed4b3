"""Group request bodies (POST/PUT) and PATCH operations -> what to change.

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

from scim2_models import Group as ScimGroup

from gateway.scim import errors
from gateway.scim.schema import PATCH_OP_URN, validate

GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
MAX_NAME_LENGTH = 256
_MEMBER_PATH = re.compile(r'members\[\s*value\s+eq\s+"([^"]*)"\s*\]', re.IGNORECASE)


# A member list: user SCIM id -> the "display" the IdP sent (or None), in order.
Members = dict[str, str | None]


@dataclass
class GroupInput:
    display_name: str
    external_id: str | None
    members: Members


@dataclass
class GroupChanges:
    """The net effect of a PATCH: attribute values, then membership."""

    values: dict[str, Any] = field(default_factory=dict)
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
    )


# Read-only on input (ignored, RFC 7644 §3.3), and members (read by _members).
_NOT_VALIDATED = frozenset({"id", "meta", "members"})


def parse_group_patch(body: Any) -> GroupChanges:
    if not isinstance(body, dict):
        raise errors.InvalidSyntax("A PATCH body must be a JSON object (RFC 7644 §3.5.2).")
    schemas = body.get("schemas")
    if schemas is not None and (not isinstance(schemas, list) or PATCH_OP_URN not in schemas):
        raise errors.InvalidValue(f"'schemas' must be [{PATCH_OP_URN!r}].")
    operations = body.get("Operations", body.get("operations"))
    if not isinstance(operations, list) or not operations:
        raise errors.InvalidSyntax("'Operations' must be a non-empty list (RFC 7644 §3.5.2).")
    changes = GroupChanges()
    for number, operation in enumerate(operations, start=1):
        if not isinstance(operation, dict):
            raise errors.InvalidSyntax(f"Operation {number} must be a JSON object.")
        _apply_operation(changes, operation, number)
    return changes


def _apply_operation(changes: GroupChanges, operation: dict[str, Any], number: int) -> None:
    op = str(operation.get("op", "")).lower()
    if op not in ("add", "remove", "replace"):
        raise errors.InvalidSyntax(
            f"Operation {number}: 'op' must be add, remove or replace, got {operation.get('op')!r}."
        )
    path = operation.get("path")
    value = operation.get("value")
    if path is None or path == "":
        if op == "remove":
            raise errors.NoTarget(
                f"Operation {number}: a remove needs a 'path' (RFC 7644 §3.5.2.2)."
            )
        if not isinstance(value, dict):
            raise errors.InvalidValue(
                f"Operation {number}: without a 'path', 'value' must be an object of attributes."
            )
        for key, item in value.items():
            _set_attribute(changes, op, key, item, number, whole_value=True)
        return
    if not isinstance(path, str):
        raise errors.InvalidPath(f"Operation {number}: 'path' must be a string.")
    attribute = path.strip()
    if attribute.lower().startswith(GROUP_URN.lower() + ":"):
        attribute = attribute[len(GROUP_URN) + 1 :]
    one_member = _MEMBER_PATH.fullmatch(attribute)
    if one_member is not None:
        if op != "remove":
            raise errors.InvalidPath(
                f"Operation {number}: '{path}' can only be removed; add members with "
                "path 'members' and a list of {{\"value\": id}}."
            )
        changes.membership[one_member.group(1)] = False
        return
    _set_attribute(changes, op, attribute, value, number, whole_value=False)


def _set_attribute(
    changes: GroupChanges, op: str, name: str, value: Any, number: int, *, whole_value: bool
) -> None:
    key = name.lower()
    if key in ("id", "schemas", "meta"):
        return  # Okta sends the id along with a rename; read-only, ignored
    if key == "displayname":
        if op == "remove":
            raise errors.Mutability(
                f"Operation {number}: displayName is required and cannot be removed."
            )
        changes.values["display_name"] = _display_name(value)
    elif key == "externalid":
        changes.values["external_id"] = None if op == "remove" else _external_id(value)
    elif key == "members":
        if op == "remove" and value is None:
            changes.replaced_members, changes.membership = {}, {}
        elif op == "replace":
            changes.replaced_members, changes.membership = _members(value), {}
        else:
            for member, display in _members(value).items():
                changes.membership[member] = op == "add"
                changes.displays[member] = display
    elif not whole_value:
        raise errors.InvalidPath(
            f"Operation {number}: groups can be patched on displayName, externalId and "
            f"members, not {name!r}."
        )
    # An unknown attribute inside a whole-resource value is ignored, as for users.


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
