"""The filter compiler's SQL shape; semantics are checked against PostgreSQL in
tests/integration/test_filters.py."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql

from gateway.scim import errors
from gateway.scim.filters import MAX_FILTER_LENGTH, compile_filter


def sql(text: str) -> str:
    return str(
        compile_filter(text).compile(
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
    )


def test_username_eq_compares_lowercased_for_the_expression_index() -> None:
    assert "lower(users.user_name) = lower('Bob')" in sql('userName eq "Bob"')


def test_emails_eq_uses_the_gin_array() -> None:
    assert "users.email_values @>" in sql('emails eq "Bob@Example.com"')
    assert "bob@example.com" in sql('emails.value eq "Bob@Example.com"')


def test_like_metacharacters_are_escaped() -> None:
    compiled = compile_filter('title co "50%_off\\\\"').compile(dialect=postgresql.dialect())
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
        compile_filter(text)


def test_overlong_filters_are_refused_before_parsing() -> None:
    with pytest.raises(errors.InvalidFilter, match="longer than"):
        compile_filter('userName eq "' + "x" * MAX_FILTER_LENGTH + '"')
