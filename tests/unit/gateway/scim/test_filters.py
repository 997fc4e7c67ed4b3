"""The filter compiler's SQL shape; semantics are checked against PostgreSQL in
tests/integration/test_filters.py."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql

from gateway.scim import errors
from gateway.scim.filters import MAX_FILTER_LENGTH, compile_filter
from gateway.scim.resources import USER


def sql(text: str) -> str:
    return str(
        compile_filter(USER, text).compile(
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
    )


def test_username_eq_compares_the_folded_key_of_the_unique_index() -> None:
    assert sql('userName eq "Bob"') == "users.user_name_key = 'bob'"
    # Full folding (models/text.py), not lower(): ß is ss, a final sigma is a medial one.
    assert sql('userName eq "STRAẞE ΟΔΟΣ"') == "users.user_name_key = 'strasse οδοσ'"


def test_emails_eq_uses_the_gin_array() -> None:
    assert "users.email_values @>" in sql('emails eq "Bob@Example.com"')
    assert "bob@example.com" in sql('emails.value eq "Bob@Example.com"')


def test_like_metacharacters_are_escaped() -> None:
    compiled = compile_filter(USER, 'title co "50%_off\\\\"').compile(dialect=postgresql.dialect())
    assert "ESCAPE" in str(compiled)
    assert "%50\\%\\_off\\\\%" in compiled.params.values()


def test_an_id_that_is_not_ours_matches_nothing_without_a_cast() -> None:
    assert sql('id eq "nope"') == "false"


@pytest.mark.parametrize(
    "text",
    ["userName eq", "nosuch eq 1", "active gt true", "((userName pr)", "userName zz 1"],
)
def test_bad_filters_are_invalid_filter(text: str) -> None:
    with pytest.raises(errors.InvalidFilter):
        compile_filter(USER, text)


def test_overlong_filters_are_refused_before_parsing() -> None:
    with pytest.raises(errors.InvalidFilter, match="longer than"):
        compile_filter(USER, 'userName eq "' + "x" * MAX_FILTER_LENGTH + '"')
