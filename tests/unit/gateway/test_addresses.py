"""What an email address and a userName may hold (gateway/addresses.py, gateway/scim/schema.py).

Security review item 11: ``^[^@\\s]+@[^@\\s]+$`` let ESC through (a stored
``esc\\x1b[8m@ex.com`` drove the terminal of whoever ran ``simpleams audit``)
and, because ``$`` also matches before a final newline, ``other@ex.com\\n``, an
address that two live users could then share. Control characters (C0, DEL,
C1), invisible format characters (zero-width spaces, bidi overrides), line and
paragraph separators and surrounding whitespace are refused in emails and in
userName alike, on POST, PUT and PATCH.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.addresses import is_email_address
from gateway.scim import errors
from gateway.scim.patch import apply_patch, parse_patch
from gateway.scim.schema import load_stored, parse_user

# (value, what it is): every one of these must be refused, as an email and as a userName.
HOSTILE_EMAILS = [
    ("esc\x1b[8m@ex.com", "ESC: a terminal escape sequence"),
    ("other@ex.com\n", "a trailing newline ($ matches before it)"),
    ("other@ex.com\r\n", "a trailing CRLF"),
    ("\nother@ex.com", "a leading newline"),
    (" other@ex.com", "a leading space"),
    ("other@ex.com ", "a trailing space"),
    ("other@ex.com\t", "a trailing tab"),
    ("oth\ter@ex.com", "a tab inside"),
    ("other@ex.com\u2028", "U+2028 LINE SEPARATOR"),
    ("oth\u2029er@ex.com", "U+2029 PARAGRAPH SEPARATOR"),
    ("oth\x00er@ex.com", "NUL"),
    ("oth\x07er@ex.com", "BEL"),
    ("oth\x7fer@ex.com", "DEL"),
    ("oth\x9b8mer@ex.com", "C1 CSI, the one-byte escape sequence introducer"),
    ("oth\x85er@ex.com", "C1 NEL"),
    ("oth\u200ber@ex.com", "U+200B ZERO WIDTH SPACE: a look-alike of other@ex.com"),
    ("oth\u202eer@ex.com", "U+202E RIGHT-TO-LEFT OVERRIDE"),
    ("\ufeffother@ex.com", "U+FEFF byte order mark"),
    ("other@ex.com\U000e0001", "U+E0001 LANGUAGE TAG, a format character outside the BMP"),
]

GOOD_EMAILS = [
    "x@corp.local",
    "jean.dupont+sso@acme.test",
    "zoë@exämple.de",
    "用户@例子.广告",
    "o'brien@acme.test",
]


@pytest.mark.parametrize(("value", "what"), HOSTILE_EMAILS)
def test_an_address_with_a_control_character_or_surrounding_space_is_not_an_address(
    value: str, what: str
) -> None:
    assert not is_email_address(value), what


@pytest.mark.parametrize("value", GOOD_EMAILS)
def test_ordinary_and_international_addresses_still_are(value: str) -> None:
    assert is_email_address(value)


def _refused(call: Any) -> errors.ScimError:
    with pytest.raises(errors.InvalidValue) as raised:
        call()
    assert raised.value.scim_type == "invalidValue"
    assert raised.value.status == 400
    return raised.value


def _has_no_raw_control_characters(text: str) -> bool:
    return all(char.isprintable() for char in text)


@pytest.mark.parametrize(("value", "what"), HOSTILE_EMAILS)
@pytest.mark.parametrize("replacing", [False, True], ids=["POST", "PUT"])
def test_post_and_put_refuse_such_an_email_naming_the_attribute(
    value: str, what: str, replacing: bool
) -> None:
    body = {"userName": "bob", "emails": [{"value": "bob@ex.com"}, {"value": value}]}
    error = _refused(lambda: parse_user(body, replacing=replacing))
    assert "emails[1].value" in error.detail, (what, error.detail)
    assert _has_no_raw_control_characters(error.detail), error.detail


# userName: the same characters, without the @ shape (a userName need not be an address).
HOSTILE_USER_NAMES = [
    ("bob\x1b[8m", "ESC"),
    ("bob\n", "a trailing newline"),
    ("\nbob", "a leading newline"),
    (" bob", "a leading space"),
    ("bob ", "a trailing space"),
    ("bob\t", "a trailing tab"),
    ("b\tob", "a tab inside"),
    ("bob\u2028", "U+2028 LINE SEPARATOR"),
    ("b\u2029ob", "U+2029 PARAGRAPH SEPARATOR"),
    ("b\x7fob", "DEL"),
    ("b\x9bob", "C1 CSI"),
    ("b\u200bob", "U+200B ZERO WIDTH SPACE"),
    ("b\u202eob", "U+202E RIGHT-TO-LEFT OVERRIDE"),
    ("bob@ex.com\r", "a trailing CR"),
]

GOOD_USER_NAMES = ["bob", "Bob Smith", "ACME\\bob", "zoë@corp.local", "用户"]


@pytest.mark.parametrize(("value", "what"), HOSTILE_USER_NAMES)
@pytest.mark.parametrize("replacing", [False, True], ids=["POST", "PUT"])
def test_post_and_put_refuse_such_a_user_name_saying_what_is_wrong(
    value: str, what: str, replacing: bool
) -> None:
    error = _refused(lambda: parse_user({"userName": value}, replacing=replacing))
    assert "'userName'" in error.detail, (what, error.detail)
    assert _has_no_raw_control_characters(error.detail), error.detail
    if value.strip() == value:
        code = next(f"U+{ord(c):04X}" for c in value if not c.isprintable())
        assert code in error.detail, error.detail
    else:
        assert "whitespace" in error.detail, error.detail


@pytest.mark.parametrize("value", GOOD_USER_NAMES)
def test_ordinary_user_names_are_accepted(value: str) -> None:
    assert parse_user({"userName": value}).document["userName"] == value


STORED: dict[str, Any] = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "userName": "bob",
    "emails": [{"value": "bob@ex.com", "type": "work", "primary": True}],
    "active": True,
}


def _patch(document: dict[str, Any], *operations: dict[str, Any]) -> dict[str, Any]:
    return apply_patch(document, parse_patch({"Operations": list(operations)})).document


@pytest.mark.parametrize(("value", "what"), HOSTILE_USER_NAMES)
def test_patch_refuses_such_a_user_name(value: str, what: str) -> None:
    error = _refused(lambda: _patch(STORED, {"op": "replace", "path": "userName", "value": value}))
    assert "'userName'" in error.detail, (what, error.detail)


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "replace", "path": 'emails[type eq "work"].value', "value": "other@ex.com\n"},
        {"op": "replace", "path": "emails", "value": [{"value": "other@ex.com\n"}]},
        {"op": "add", "path": "emails", "value": [{"value": "esc\x1b[8m@ex.com"}]},
        {"op": "replace", "value": {"emails": [{"value": "other@ex.com\u2028"}]}},
        {"op": "Replace", "value": {'emails[type eq "work"].value': " other@ex.com"}},
    ],
    ids=["filtered-path", "path", "add", "path-less", "entra-filtered-key"],
)
def test_patch_refuses_such_an_email_however_it_is_written(operation: dict[str, Any]) -> None:
    error = _refused(lambda: _patch(STORED, operation))
    assert "emails[" in error.detail and "].value" in error.detail, error.detail
    assert _has_no_raw_control_characters(error.detail), error.detail


def test_a_user_stored_before_the_rule_can_still_be_read_and_deactivated() -> None:
    """Values stored before this rule existed are not new input: rendering
    such a user, or a PATCH that leaves them alone (a leaver's deactivation),
    must keep working; only a value a request sets is checked."""
    legacy = {
        **STORED,
        "userName": "bob\x1b[8m",
        "emails": [{"value": "esc\x1b[8m@ex.com", "type": "work", "primary": True}],
    }
    assert load_stored(legacy).user_name == "bob\x1b[8m"
    deactivated = _patch(legacy, {"op": "replace", "value": {"active": False}})
    assert deactivated["active"] is False
    assert deactivated["userName"] == "bob\x1b[8m"
    added = _patch(legacy, {"op": "add", "path": "emails", "value": [{"value": "new@ex.com"}]})
    assert [e["value"] for e in added["emails"]] == ["esc\x1b[8m@ex.com", "new@ex.com"]
    # A hostile value the request itself brings is still refused on such a user.
    _refused(lambda: _patch(legacy, {"op": "replace", "path": "userName", "value": "bob\n"}))
