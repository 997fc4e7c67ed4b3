"""Input validation and the IdP quirks normalised at the edge (gateway/scim/schema.py)."""

from __future__ import annotations

import pytest

from gateway.scim import errors
from gateway.scim.attributes import indexed_columns
from gateway.scim.schema import ENTERPRISE_URN, parse_user
from gateway.scim.store import diff
from models.users import primary_email


def test_entra_string_booleans_and_plain_string_manager_are_accepted() -> None:
    # Entra may send "active" as the string "False" and manager as a bare id.
    data = parse_user(
        {
            "userName": "a@corp.local",
            "active": "False",
            ENTERPRISE_URN: {"manager": "m-1", "department": "Ops"},
        }
    )
    assert data.document["active"] is False
    assert data.document[ENTERPRISE_URN]["manager"] == {"value": "m-1"}


def test_unknown_attributes_are_dropped_and_reported() -> None:
    data = parse_user(
        {"userName": "a@b.co", "mailNickname": "a", "name": {"givenName": "A", "pronoun": "x"}}
    )
    assert data.ignored_attributes == ["mailNickname", "name.pronoun"]
    assert "mailNickname" not in data.document


def test_passwords_are_never_kept() -> None:
    data = parse_user({"userName": "a@b.co", "password": "hunter2"})
    assert "password" not in data.document
    assert "password" in data.ignored_attributes


def test_special_use_email_domains_are_accepted() -> None:
    # AD-backed directories use .local; a 400 would stop the whole sync.
    data = parse_user({"userName": "x", "emails": [{"value": "x@corp.local"}]})
    assert indexed_columns(data.document)["email"] == "x@corp.local"


@pytest.mark.parametrize(
    "body",
    [
        {"userName": ""},
        {"userName": "x", "active": "sometimes"},
        {"userName": "x", "emails": [{"value": "no address"}]},
        {"displayName": "no userName"},
    ],
)
def test_invalid_values_are_invalid_value(body: dict[str, object]) -> None:
    with pytest.raises(errors.InvalidValue):
        parse_user(body)


def test_non_object_bodies_are_invalid_syntax() -> None:
    with pytest.raises(errors.InvalidSyntax):
        parse_user([{"userName": "x"}])


def test_primary_email_prefers_primary_then_work_then_first() -> None:
    home = {"value": "h@x.co", "type": "home"}
    work = {"value": "w@x.co", "type": "work"}
    assert primary_email([home, work]) == "w@x.co"
    assert (
        primary_email([home, {**work, "primary": False}, {"value": "p@x.co", "primary": True}])
        == "p@x.co"
    )
    assert primary_email([home]) == "h@x.co"
    assert primary_email(None) is None
    assert primary_email("not a list") is None


def test_diff_names_each_changed_part() -> None:
    before = {"userName": "a", "name": {"givenName": "A"}, ENTERPRISE_URN: {"department": "X"}}
    after = {"userName": "a", "name": {"givenName": "B"}, ENTERPRISE_URN: {}, "title": "T"}
    assert diff(before, after) == {
        "name.givenName": ["A", "B"],
        f"{ENTERPRISE_URN}:department": ["X", None],
        "title": [None, "T"],
    }
