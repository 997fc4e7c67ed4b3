"""Where each SCIM attribute of a User lives in PostgreSQL.

The ``attributes`` JSONB document is the source of truth; a few scalar
columns are derived from it on every write (``indexed_columns``) so the
lookups IdPs make on every user, and the staff list, are index scans. The
filter compiler and ``sortBy`` use the mapping below to read an attribute
from the right place.
"""

from __future__ import annotations

from typing import Any

from scim2_models.path import AttributeBinding
from sqlalchemy import String, cast, literal
from sqlalchemy.dialects.postgresql import JSONB

from gateway.scim import errors
from gateway.scim.schema import CORE_USER_URN, ENTERPRISE_URN
from models.users import User

users = User.__table__.c

CORE_PREFIX = CORE_USER_URN + ":"
# JSONB constants bound as JSON values (a cast of a Python string would bind a JSON string).
EMPTY_ARRAY = literal([], JSONB)


def primary_email(document: dict[str, Any]) -> str | None:
    """The email that is SimpleAMS's primary key: the primary one, else work, else the first."""
    emails = [e for e in document.get("emails") or [] if isinstance(e, dict) and e.get("value")]
    for chosen in (
        next((e for e in emails if e.get("primary")), None),
        next((e for e in emails if str(e.get("type", "")).lower() == "work"), None),
        emails[0] if emails else None,
    ):
        if chosen is not None:
            return str(chosen["value"])
    return None


def indexed_columns(document: dict[str, Any]) -> dict[str, Any]:
    """The users-table columns derived from a SCIM document (see models/users.py)."""
    name = document.get("name") or {}
    enterprise = document.get(ENTERPRISE_URN) or {}
    emails = [str(e["value"]).lower() for e in document.get("emails") or [] if e.get("value")]
    return {
        "user_name": document["userName"],
        "external_id": document.get("externalId"),
        "email": primary_email(document),
        "email_values": sorted(set(emails)),
        "display_name": document.get("displayName"),
        "given_name": name.get("givenName"),
        "family_name": name.get("familyName"),
        "department": enterprise.get("department"),
        "title": document.get("title"),
        "active": bool(document.get("active", True)),
    }


def json_keys(binding: AttributeBinding) -> list[str]:
    """JSON keys from the document root to the head attribute (no sub-attribute)."""
    urn = binding.urn
    if urn.lower().startswith(CORE_PREFIX.lower()):
        head = urn[len(CORE_PREFIX) :].split(".", 1)[0]
        return [head]
    schema, _, attr = urn.rpartition(":")
    return [schema, attr.split(".", 1)[0]]


def wire_name(binding: AttributeBinding, *, sub: bool = False) -> str:
    """The wire name of the sub-attribute (``sub=True``) or the head attribute."""
    dotted = binding.urn.rpartition(":")[2]
    head, _, tail = dotted.partition(".")
    return tail if sub else head


def json_at(keys: list[str]) -> Any:
    expression: Any = users.attributes
    for key in keys:
        expression = expression[key]
    return expression


def column_for(binding: AttributeBinding) -> Any:
    if not binding.urn.lower().startswith(CORE_PREFIX.lower()):
        return None
    dotted = binding.urn[len(CORE_PREFIX) :].lower()
    return {
        "id": cast(users.scim_id, String),
        "username": users.user_name,
        "externalid": users.external_id,
        "active": users.active,
        "meta.created": users.created_at,
        "meta.lastmodified": users.updated_at,
        "meta.resourcetype": literal("User"),
    }.get(dotted)


def scalar_sql(binding: AttributeBinding) -> Any:
    column_ = column_for(binding)
    if column_ is not None:
        return column_
    if binding.urn.lower().startswith((CORE_PREFIX + "meta").lower()):
        raise errors.InvalidFilter(f"'{binding.urn}' cannot be used in a filter.")
    keys = json_keys(binding)
    if binding.sub_field_name:
        keys = [*keys, wire_name(binding, sub=True)]
    return typed(json_at(keys[:-1])[keys[-1]], binding)


def element_sql(element: Any, binding: AttributeBinding) -> Any:
    return typed(element[wire_name(binding, sub=True) or "value"], binding)


def typed(json_value: Any, binding: AttributeBinding) -> Any:
    """A JSONB value as a comparable SQL value: booleans as jsonb, the rest as text."""
    if binding.target_type is bool:
        return json_value
    return json_value.astext


def is_string(binding: AttributeBinding) -> bool:
    return binding.target_type is str or (
        isinstance(binding.target_type, type) and issubclass(binding.target_type, str)
    )
