"""How much work one SCIM request may ask of a user, beyond the body size limit.

Applying a PATCH costs CPU in proportion to its operations times the size of
the attribute each one touches (scim2-models checks an added value against
every value already there, and settles ``primary`` across them). Bounding
both bounds the cost of any PATCH: with at most ``MAX_PATCH_OPERATIONS``
operations and ``MAX_VALUES`` values per attribute, each operation costs at
most a constant, so a PATCH costs time linear in its operations. The endpoint
still runs it in a worker thread: even bounded, it is CPU work the event loop
must not wait for. The checks
run on the raw body, before scim2-models sees it, so an oversized request
costs a count, not a validation.

The bounds are far above what Okta and Entra send (one operation per changed
attribute, a handful of emails or phone numbers) and are advertised in the
User schema's attribute descriptions and the User resource type. Only the
multi-valued attributes of the schema count: a list under an admin's custom
mapping is ignored on input, as every unmodelled attribute is.
Group membership is stored and patched separately (O(changes)) and is not
bounded here.
"""

from __future__ import annotations

from typing import Any

from gateway.scim import errors

MAX_PATCH_OPERATIONS = 100
# Values of one multi-valued attribute (emails, phoneNumbers, roles, ...). A
# path filter (`emails[value eq "x"].type`) costs about 0.15 ms per value it
# scans here: 100 such operations on a 20-value attribute take about 0.3 s of
# CPU, the most any PATCH costs.
MAX_VALUES = 20
# Values of multi-valued attributes one PATCH carries in all, so that its adds
# cannot grow an attribute far past MAX_VALUES before the result is checked.
MAX_PATCH_VALUES = 50


def check_patch_size(operations: list[Any], multi_valued: frozenset[str]) -> None:
    """A PATCH's operations, and the values of multi-valued attributes they
    carry in all, are bounded (400 tooMany). ``multi_valued``: the resource's
    multi-valued attribute names, lowercased; lists under other names (an
    admin's custom mapping, ignored on input) do not count."""
    if len(operations) > MAX_PATCH_OPERATIONS:
        raise errors.TooMany(
            f"A PATCH may hold at most {MAX_PATCH_OPERATIONS} operations; this one has "
            f"{len(operations)}. Send the changes in several requests."
        )
    carried = sum(
        _values_in(op.get("path"), op.get("value"), multi_valued)
        for op in operations
        if isinstance(op, dict)
    )
    if carried > MAX_PATCH_VALUES:
        raise errors.TooMany(
            f"A PATCH may carry at most {MAX_PATCH_VALUES} values of multi-valued attributes "
            f"in all; this one carries {carried}. Send the changes in several requests."
        )


def check_multi_valued(
    document: dict[str, Any],
    multi_valued: frozenset[str],
    stored: dict[str, Any] | None = None,
) -> None:
    """No multi-valued attribute holds more than MAX_VALUES values (400 invalidValue).

    Looks at the top level and one level into extensions, where SCIM's
    multi-valued attributes live, case-insensitively. ``stored``: the version
    a PUT or PATCH replaces. An attribute it already held with more values
    (stored before this limit existed) may keep that many, so that such a
    user can still be updated and deactivated; it may not grow.
    """
    before = dict(_lists(stored, multi_valued)) if stored is not None else {}
    for name, value in _lists(document, multi_valued):
        if len(value) > max(MAX_VALUES, len(before.get(name, ()))):
            raise errors.InvalidValue(
                f"'{name}' may hold at most {MAX_VALUES} values; this request gives it "
                f"{len(value)}."
            )


def _lists(document: dict[str, Any], multi_valued: frozenset[str]) -> list[tuple[str, list[Any]]]:
    found = []
    for key, value in document.items():
        if isinstance(value, list) and key.lower() in multi_valued:
            found.append((key, value))
        elif isinstance(value, dict):
            found += [
                (name, item)
                for name, item in value.items()
                if isinstance(item, list) and name.lower() in multi_valued
            ]
    return found


def _values_in(path: Any, value: Any, multi_valued: frozenset[str]) -> int:
    """How many values of multi-valued attributes an operation's value carries."""
    if isinstance(value, list):
        head = path.split("[", 1)[0].rsplit(":", 1)[-1].lower() if isinstance(path, str) else ""
        return len(value) if head in multi_valued else 0
    if isinstance(value, dict):
        return sum(len(item) for _, item in _lists(value, multi_valued))
    return 0
