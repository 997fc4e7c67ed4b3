"""PATCH (gateway/scim/patch.py): IdP shapes, unknown attributes, malformed bodies."""

from __future__ import annotations

import pytest

from gateway.scim import errors
from gateway.scim.patch import apply_patch, parse_patch
from gateway.scim.schema import ENTERPRISE_URN, parse_user


def test_entra_patch_shapes_apply() -> None:
    # Entra: capitalised ops, extra "name" keys, dotted and URN-prefixed keys
    # in a path-less Replace, a work email that does not exist yet.
    user = parse_user({"userName": "a@b.co"}).document
    patch = parse_patch(
        {
            "Operations": [
                {
                    "op": "Replace",
                    "name": "x",
                    "value": {"name.givenName": "Ann", "active": "False"},
                },
                {"op": "Add", "path": f"{ENTERPRISE_URN}:manager", "value": "boss"},
                {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "ann@b.co"},
                {"op": "Add", "path": f"{ENTERPRISE_URN}:department", "value": "Sales"},
            ]
        }
    )
    result = apply_patch(user, patch).document
    assert result["name"]["givenName"] == "Ann"
    assert result["active"] is False
    assert result[ENTERPRISE_URN] == {"manager": {"value": "boss"}, "department": "Sales"}
    assert result["emails"] == [{"value": "ann@b.co", "type": "work"}]


def test_patches_of_unknown_attributes_are_ignored_and_reported() -> None:
    user = parse_user({"userName": "a@b.co"}).document
    patch = parse_patch(
        {
            "Operations": [
                {"op": "replace", "path": "mailNickname", "value": "a"},
                {"op": "replace", "value": {"extensionAttribute1": "z", "title": "CTO"}},
            ]
        }
    )
    result = apply_patch(user, patch)
    assert result.document["title"] == "CTO"
    assert result.ignored_attributes == ["extensionAttribute1", "mailNickname"]


@pytest.mark.parametrize(
    "body",
    [{}, {"Operations": []}, {"Operations": "replace"}, [], {"Operations": [1]}],
)
def test_malformed_patch_bodies_are_invalid_syntax(body: object) -> None:
    with pytest.raises(errors.InvalidSyntax):
        parse_patch(body)
