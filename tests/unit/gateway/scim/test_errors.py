from __future__ import annotations

import orjson

from gateway.scim import errors


def test_error_bodies_follow_rfc7644_3_12() -> None:
    response = errors.Uniqueness("userName taken").to_response()
    assert response.status_code == 409
    assert response.media_type == "application/scim+json"
    assert orjson.loads(response.body) == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": "409",
        "scimType": "uniqueness",
        "detail": "userName taken",
    }


def test_unauthorized_carries_www_authenticate_and_no_scim_type() -> None:
    error = errors.Unauthorized()
    assert "scimType" not in error.to_body()
    assert error.to_response().headers["www-authenticate"].startswith("Bearer")
