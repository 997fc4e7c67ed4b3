"""SCIM errors: one hierarchy, rendered once as RFC 7644 §3.12 bodies.

    ScimError                 (400 unless overridden)
    ├── InvalidFilter         400 invalidFilter
    ├── TooMany               400 tooMany
    ├── Uniqueness            409 uniqueness
    ├── Mutability            400 mutability
    ├── InvalidSyntax         400 invalidSyntax
    ├── InvalidPath           400 invalidPath
    ├── NoTarget              400 noTarget
    ├── InvalidValue          400 invalidValue
    ├── InvalidVersion        400 invalidVersion
    ├── Unauthorized          401
    ├── Forbidden             403
    ├── NotFound              404
    ├── MethodNotAllowed      405
    ├── RequestTimeout        408
    ├── PreconditionFailed    412
    ├── PayloadTooLarge       413
    ├── UnsupportedMediaType  415
    ├── TooManyRequests       429
    └── ServiceUnavailable    503

Raise them anywhere in the gateway; the handlers of ``gateway/failures.py``,
registered by the SCIM app (``gateway/scim/api.py``), turn them into
responses. Details are sentences an IdP admin can act on and never contain a
token.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from starlette.responses import Response

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
SCIM_MEDIA_TYPE = "application/scim+json"


class ScimError(Exception):
    status: ClassVar[int] = 400
    scim_type: ClassVar[str | None] = None
    default_detail: ClassVar[str] = "The request could not be processed."

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None):
        self.detail = detail or self.default_detail
        self.headers = headers or {}
        super().__init__(self.detail)

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(self.status)}
        if self.scim_type:
            body["scimType"] = self.scim_type
        body["detail"] = self.detail
        return body

    def to_response(self) -> Response:
        return error_response(self.to_body(), self.status, self.headers)


def error_response(
    body: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type=SCIM_MEDIA_TYPE
    )


class InvalidFilter(ScimError):
    scim_type = "invalidFilter"
    default_detail = "The filter is malformed or not supported."


class TooMany(ScimError):
    scim_type = "tooMany"


class Uniqueness(ScimError):
    status = 409
    scim_type = "uniqueness"


class Mutability(ScimError):
    scim_type = "mutability"


class InvalidSyntax(ScimError):
    scim_type = "invalidSyntax"
    default_detail = "The request body is not valid SCIM JSON."


class InvalidPath(ScimError):
    scim_type = "invalidPath"


class NoTarget(ScimError):
    scim_type = "noTarget"


class InvalidValue(ScimError):
    scim_type = "invalidValue"


class UnresolvedBulkId(ScimError):
    """A bulk operation refers to a bulkId no earlier operation created (RFC 7644 §3.7)."""

    status = 409
    scim_type = "invalidValue"


class RequestTimeout(ScimError):
    """The client did not send its whole body in time (RFC 9110 §15.5.9)."""

    status = 408


class InvalidVersion(ScimError):
    scim_type = "invalidVers"


class Unauthorized(ScimError):
    status = 401
    default_detail = (
        "Authentication failed: send the SCIM bearer token from SimpleAMS Settings → "
        "Integrations → SCIM 2.0 as 'Authorization: Bearer <token>'."
    )

    def __init__(self, detail: str | None = None):
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="SimpleAMS SCIM"'})


class Forbidden(ScimError):
    status = 403


class NotFound(ScimError):
    status = 404
    default_detail = "No such resource."


class MethodNotAllowed(ScimError):
    status = 405
    default_detail = "This method is not supported on this endpoint."


class PreconditionFailed(ScimError):
    status = 412
    default_detail = (
        "The resource changed since you read it (If-Match did not match its current ETag); "
        "read it again and retry."
    )


class PayloadTooLarge(ScimError):
    status = 413


class UnsupportedMediaType(ScimError):
    status = 415
    default_detail = "Send the body as application/scim+json or application/json."


class TooManyRequests(ScimError):
    status = 429


class ServiceUnavailable(ScimError):
    status = 503
    default_detail = "SimpleAMS is temporarily unable to reach its database; retry shortly."
