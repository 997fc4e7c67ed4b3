"""What a SCIM attribute is: its type's filter operators, and the columns a
User's document derives.

The ``attributes`` JSONB document is the source of truth; a few scalar
columns, the folded keys and the folded document are derived from it on every
write (``indexed_columns``) so the lookups IdPs make on every user, and the
staff list, are index scans. Where a filter reads each attribute is the
ResourceType's to say (gateway/scim/resources.py); the operator rule here
(check_operator) refuses an operator an attribute's type does not take, for
every resource type.
"""

from __future__ import annotations

from typing import Any

from scim2_models import Attribute, Mutability
from scim2_models.path import AttributeBinding

from gateway.scim import errors
from gateway.scim.resources import USER
from gateway.scim.schema import ENTERPRISE_URN
from models.text import fold, fold_document, fold_or_none
from models.users import primary_email

# RFC 7644 §3.4.2.2: the filter operators that apply to an attribute, by its
# type (RFC 7643 §2.3). co/sw/ew match strings; gt/ge/lt/le order strings,
# numbers and dates, and "Boolean and Binary attributes SHALL cause a failed
# response (HTTP status code 400) with a 'scimType' of 'invalidFilter'"; a
# complex attribute can only be tested for presence (a comparison names one
# of its sub-attributes). pr applies to every attribute. The filter compiler
# (filters.py) applies it to every resource type, through check_operator.
FILTER_OPERATORS = ("eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr")
_ORDERED = ("eq", "ne", "gt", "ge", "lt", "le", "pr")
OPERATORS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "string": FILTER_OPERATORS,
    "reference": FILTER_OPERATORS,
    "dateTime": _ORDERED,
    "integer": _ORDERED,
    "decimal": _ORDERED,
    "boolean": ("eq", "ne", "pr"),
    "binary": ("eq", "ne", "pr"),
    "complex": ("pr",),
}
# RFC 7643 §4.1.1: a write-only attribute (password) is only compared for equality.
WRITE_ONLY_OPERATORS = ("eq", "ne", "pr")


def scim_type(binding: AttributeBinding) -> str:
    """The RFC 7643 §2.3 type of the attribute a binding compares."""
    target = binding.target_type
    if not isinstance(target, type):
        return "string"  # Any: what scim2-models' schemas say of it too
    if issubclass(target, bytes):
        return "binary"  # Base64Bytes, unwrapped
    return str(Attribute.Type.from_python(target).value)


def is_write_only(binding: AttributeBinding) -> bool:
    head = binding.model.get_field_annotation(binding.field_name, Mutability)
    return Mutability.write_only in (head, binding.get_annotation(Mutability))


def operators_for(binding: AttributeBinding) -> tuple[str, ...]:
    """The filter operators that apply to the attribute a binding names."""
    if is_write_only(binding):
        return WRITE_ONLY_OPERATORS
    return OPERATORS_BY_TYPE[scim_type(binding)]


def check_operator(attribute: str, binding: AttributeBinding, op: str) -> None:
    """Refuse, as 400 invalidFilter, an operator that does not apply to an attribute.

    :param attribute: the attribute as the filter names it, for the message.
    :param op: the operator, lowercase (``CompareOperator.value``, or ``"pr"``).
    """
    allowed = operators_for(binding)
    if op in allowed:
        return
    kind = scim_type(binding)
    hint = "; compare one of its sub-attributes instead" if kind == "complex" else ""
    if is_write_only(binding):
        kind = f"{kind}, write-only"
    takes = ", ".join(allowed[:-1]) + f" and {allowed[-1]}" if len(allowed) > 1 else allowed[0]
    raise errors.InvalidFilter(
        f"'{op}' does not apply to '{attribute}' (type {kind}), which takes {takes} "
        f"only{hint} (RFC 7644 §3.4.2.2)."
    )


def indexed_columns(document: dict[str, Any]) -> dict[str, Any]:
    """The users-table columns derived from a SCIM document (see models/users.py),
    with the folded keys and document that comparisons read (models/text.py)."""
    name = document.get("name") or {}
    enterprise = document.get(ENTERPRISE_URN) or {}
    emails = [fold(str(e["value"])) for e in document.get("emails") or [] if e.get("value")]
    email = primary_email(document.get("emails"))
    return {
        "user_name": document["userName"],
        "user_name_key": fold(document["userName"]),
        "external_id": document.get("externalId"),
        "email": email,
        "email_key": fold_or_none(email),
        "email_values": sorted(set(emails)),
        "folded": fold_document(document, USER.case_exact),
        "display_name": document.get("displayName"),
        "given_name": name.get("givenName"),
        "family_name": name.get("familyName"),
        "department": enterprise.get("department"),
        "title": document.get("title"),
        "active": bool(document.get("active", True)),
    }


def wire_name(binding: AttributeBinding, *, sub: bool = False) -> str:
    """The wire name of the sub-attribute (``sub=True``) or the head attribute."""
    dotted = binding.urn.rpartition(":")[2]
    head, _, tail = dotted.partition(".")
    return tail if sub else head


def typed(json_value: Any, binding: AttributeBinding) -> Any:
    """A JSONB value as a comparable SQL value: booleans as jsonb, the rest as text."""
    if binding.target_type is bool:
        return json_value
    return json_value.astext


def is_string(binding: AttributeBinding) -> bool:
    return binding.target_type is str or (
        isinstance(binding.target_type, type) and issubclass(binding.target_type, str)
    )
