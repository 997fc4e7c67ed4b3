from __future__ import annotations

import pytest
from starlette.requests import Request

from gateway.scim import errors
from gateway.scim.context import idp_of
from gateway.scim.http import check_if_match, int_param


def request_with(if_match: str | None) -> Request:
    headers = [(b"if-match", if_match.encode())] if if_match is not None else []
    return Request({"type": "http", "method": "PUT", "headers": headers, "path": "/"})


@pytest.mark.parametrize("tag", [None, 'W/"3"', '"3"', "*", 'W/"1", W/"3"'])
def test_if_match_accepts_the_current_version(tag: str | None) -> None:
    check_if_match(request_with(tag), 3)


@pytest.mark.parametrize("tag", ['W/"2"', '"4"', "garbage"])
def test_if_match_refuses_other_versions(tag: str) -> None:
    with pytest.raises(errors.PreconditionFailed):
        check_if_match(request_with(tag), 3)


@pytest.mark.parametrize(
    ("agent", "idp"),
    [
        ("Okta SCIM Client 1.0.0", "okta"),
        ("Microsoft.Identity.AAD.Provisioning", "entra"),
        ("curl/8.0", "scim"),
        (None, "scim"),
    ],
)
def test_idp_is_named_from_the_user_agent(agent: str | None, idp: str) -> None:
    assert idp_of(agent) == idp


def test_int_params() -> None:
    assert int_param(None, "count", 100) == 100
    assert int_param("7", "count", 100) == 7
    with pytest.raises(errors.InvalidValue):
        int_param("seven", "count", 100)
    with pytest.raises(errors.InvalidValue):
        int_param(True, "count", 100)
