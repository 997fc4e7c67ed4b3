"""Property test: the PATCH engine against a small reference model (RFC 7644 §3.5.2).

Random sequences of add / replace / remove on single-valued attributes and
sub-attributes, with and without ``path`` and with Entra's capitalised ops,
must give the same user as a plain-dict implementation of the RFC rules.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.scim.patch import apply_patch, parse_patch
from gateway.scim.schema import parse_user

SIMPLE = ["title", "displayName", "nickName", "userType", "locale"]
NAME_PARTS = ["givenName", "familyName", "middleName"]
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12
).filter(lambda s: s.strip() != "")


@st.composite
def operation(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(["add", "replace", "remove", "Add", "Replace", "Remove"]))
    target = draw(st.sampled_from(SIMPLE + [f"name.{p}" for p in NAME_PARTS] + ["active"]))
    if op.lower() == "remove":
        return {"op": op, "path": target}
    value: Any = draw(st.booleans()) if target == "active" else draw(TEXT)
    if draw(st.booleans()):
        return {"op": op, "path": target, "value": value}
    # No path: the value names the attribute (dotted keys, as Entra sends them).
    return {"op": op, "value": {target: value}}


def reference(document: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    result = {**document, "name": dict(document.get("name") or {})}
    for operation in operations:
        if "path" in operation:
            changes = {operation["path"]: operation.get("value")}
        else:
            changes = dict(operation["value"])
        for path, value in changes.items():
            head, _, sub = path.partition(".")
            container = result["name"] if sub else result
            key = sub or head
            if operation["op"].lower() == "remove":
                container.pop(key, None)
            else:  # add and replace set a single-valued attribute (RFC 7644 §3.5.2.1/3)
                container[key] = value
    if not result["name"]:
        result.pop("name")
    return result


def comparable(document: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in document.items() if k not in ("schemas",) and v not in (None, {})}
    if "name" in kept:
        kept["name"] = {k: v for k, v in kept["name"].items() if v is not None}
        if not kept["name"]:
            kept.pop("name")
    return kept


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(operation(), min_size=1, max_size=6))
def test_patch_matches_the_reference_model(operations: list[dict[str, Any]]) -> None:
    start = parse_user({"userName": "ref@example.com", "title": "Start", "active": True}).document
    patched = apply_patch(start, parse_patch({"Operations": operations})).document
    assert comparable(patched) == comparable(reference(start, operations))
