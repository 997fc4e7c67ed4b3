"""/Bulk (RFC 7644 §3.7): many operations in one request, each as if sent alone.

Every operation is dispatched to the /Users or /Groups endpoints in turn,
with the caller's authentication, so it gets exactly the validation,
semantics and transaction it would get on its own: one committed write (and
its provisioning event) per successful operation, nothing for a failed one. The
request as a whole answers 200 with each operation's status; it is not
atomic (RFC 7644 §3.7 does not ask it to be).

- ``bulkId``: a POST names the user or group it creates; a later operation may
  refer to it as ``bulkId:NAME`` in its path or anywhere in its data (a
  group's ``members``, as in RFC 7644 §3.7.2, or a user's ``manager``). A reference to a
  bulkId that has not been created (yet, or because its POST failed) fails
  that operation with 409 ``invalidValue``.
- ``failOnErrors``: processing stops after that many failed operations; the
  answer lists the operations processed.
- ``maxOperations`` (advertised in ServiceProviderConfig) and the body size
  limit (``maxPayloadSize``) are enforced with 413.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router
from starlette.types import Message

from gateway.db import classify
from gateway.scim import errors
from gateway.scim.context import base_url
from gateway.scim.endpoints import RESOURCE_ENDPOINTS
from gateway.scim.http import read_json, scim_json
from gateway.scim.paths import ResourceNames
from gateway.scim.resources import RESOURCE_TYPES

BULK_REQUEST_URN = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE_URN = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
MAX_OPERATIONS = 1000
METHODS = ("POST", "PUT", "PATCH", "DELETE")
_BULK_ID = "bulkId:"

# The endpoints a bulk operation can reach (a search is a read, not an operation).
_targets = Router(
    routes=[
        route
        for endpoints in RESOURCE_ENDPOINTS
        for route in endpoints.routes()
        if not route.path.endswith("/.search")
    ],
    redirect_slashes=False,
)
_NAMES = ResourceNames(_targets.routes)  # /users is /Users, as outside a bulk request
_ENDPOINTS = "|".join(re.escape(resource.endpoint) for resource in RESOURCE_TYPES)
_PATH = re.compile(f"^(?:{_ENDPOINTS})(?:/(?P<id>[^/?#]+))?$")


async def bulk(request: Request) -> Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise errors.InvalidSyntax("A bulk request must be a JSON object (RFC 7644 §3.7).")
    operations = body.get("Operations")
    if not isinstance(operations, list):
        raise errors.InvalidSyntax("A bulk request needs an 'Operations' list (RFC 7644 §3.7).")
    if len(operations) > MAX_OPERATIONS:
        raise errors.PayloadTooLarge(
            f"A bulk request may hold at most {MAX_OPERATIONS} operations "
            f"(maxOperations); this one has {len(operations)}. Split it."
        )
    fail_on_errors = body.get("failOnErrors")
    if fail_on_errors is not None and (
        isinstance(fail_on_errors, bool)
        or not isinstance(fail_on_errors, int)
        or fail_on_errors < 1
    ):
        raise errors.InvalidValue("'failOnErrors' must be a positive integer.")
    created: dict[str, str] = {}  # bulkId -> the SCIM id it created
    seen: set[str] = set()  # every bulkId named so far, created or not
    results: list[dict[str, Any]] = []
    failures = 0
    for operation in operations:
        result = await _run(request, operation, created, seen)
        results.append(result)
        if result["status"] == "503":
            break  # the database is away: the rest would fail the same way
        if int(result["status"]) >= 400:
            failures += 1
            if fail_on_errors is not None and failures >= fail_on_errors:
                break
    return scim_json({"schemas": [BULK_RESPONSE_URN], "Operations": results})


async def _run(
    request: Request, operation: Any, created: dict[str, str], seen: set[str]
) -> dict[str, Any]:
    method = operation.get("method") if isinstance(operation, dict) else None
    bulk_id = operation.get("bulkId") if isinstance(operation, dict) else None
    result: dict[str, Any] = {"method": method if isinstance(method, str) else None}
    if isinstance(bulk_id, str):
        result["bulkId"] = bulk_id
    try:
        method, path, data, version = _parse(operation, created, seen)
        status, headers, payload = await _dispatch(request, method, path, data, version)
    except errors.ScimError as exc:
        result.update(status=str(exc.status), response=exc.to_body())
        return result
    result["method"] = method
    result["status"] = str(status)
    if status >= 400:
        result["response"] = orjson.loads(payload) if payload else None
        return result
    resource = orjson.loads(payload) if payload else {}
    result["location"] = headers.get("location") or (
        resource.get("meta", {}).get("location") or base_url(request) + path
    )
    if "etag" in headers:
        result["version"] = headers["etag"]
    if method == "POST" and isinstance(bulk_id, str):
        created[bulk_id] = resource["id"]
    return result


def _parse(
    operation: Any, created: dict[str, str], seen: set[str]
) -> tuple[str, str, Any, str | None]:
    if not isinstance(operation, dict):
        raise errors.InvalidSyntax("Each bulk operation must be a JSON object.")
    method = operation.get("method")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise errors.InvalidValue(f"'method' must be one of {', '.join(METHODS)}.")
    method = method.upper()
    bulk_id = operation.get("bulkId")
    if method == "POST":
        if not isinstance(bulk_id, str) or not bulk_id:
            raise errors.InvalidValue("A POST in a bulk request needs a 'bulkId' (RFC 7644 §3.7).")
        if bulk_id in seen:
            raise errors.InvalidValue(f"bulkId {bulk_id!r} is used twice in this request.")
        seen.add(bulk_id)
    raw_path = operation.get("path")
    path = _NAMES.canonical(_resolve(raw_path, created)) if isinstance(raw_path, str) else None
    target = _PATH.match(path) if path else None
    if target is None or target["id"] == ".search" or (method == "POST") != (target["id"] is None):
        raise errors.InvalidValue(
            "'path' must be /Users or /Groups for a POST, and /Users/{id} or /Groups/{id} "
            "(or /Users/bulkId:NAME, /Groups/bulkId:NAME) for PUT, PATCH and DELETE; "
            "searches are not bulk operations."
        )
    version = operation.get("version")
    if version is not None and not isinstance(version, str):
        raise errors.InvalidValue("'version' must be an ETag string.")
    data = _resolve(operation.get("data"), created)
    if method in ("POST", "PUT", "PATCH") and not isinstance(data, dict):
        raise errors.InvalidSyntax(f"A {method} operation needs 'data', a JSON object.")
    return method, str(path), data, version


def _resolve(value: Any, created: dict[str, str]) -> Any:
    """Replace every ``bulkId:NAME`` (a whole string, or a path segment) with its id."""
    if isinstance(value, str):
        if _BULK_ID not in value:
            return value
        parts = value.split("/")
        for i, part in enumerate(parts):
            if part.startswith(_BULK_ID):
                name = part[len(_BULK_ID) :]
                if name not in created:
                    raise errors.UnresolvedBulkId(
                        f"bulkId {name!r} does not name a resource created earlier in this request "
                        "(a later operation, or one that failed)."
                    )
                parts[i] = created[name]
        return "/".join(parts)
    if isinstance(value, dict):
        return {key: _resolve(item, created) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, created) for item in value]
    return value


async def _dispatch(
    request: Request, method: str, path: str, data: Any, version: str | None
) -> tuple[int, dict[str, str], bytes]:
    """Run one operation through the /Users or /Groups routes; its status, headers and body."""
    body = orjson.dumps(data) if data is not None else b""
    headers = [
        (name, value)
        for name, value in request.scope["headers"]
        if name not in (b"content-type", b"content-length", b"if-match", b"if-none-match")
    ]
    headers += [(b"content-type", b"application/scim+json"), (b"content-length", b"%d" % len(body))]
    if version:
        headers.append((b"if-match", version.encode("latin-1", "replace")))
    path_only, _, query = path.partition("?")
    scope = {
        **request.scope,
        "method": method,
        "path": path_only,
        "raw_path": path_only.encode(),
        "query_string": query.encode(),
        "headers": headers,
        "state": dict(request.scope.get("state", {})),
    }
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    answer: dict[str, Any] = {"status": 500, "headers": {}, "body": b""}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = {
                name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in message.get("headers", [])
            }
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    try:
        await _targets(scope, receive, send)
    except errors.ScimError as exc:
        return exc.status, {}, orjson.dumps(exc.to_body())
    except (DBAPIError, PoolTimeoutError) as exc:
        return _database_failure(exc)
    except HTTPException as exc:
        failure = (
            errors.NotFound(f"There is no resource at {path}.")
            if exc.status_code == 404
            else errors.MethodNotAllowed(f"{method} is not supported on {path}.")
        )
        return failure.status, {}, orjson.dumps(failure.to_body())
    return int(answer["status"]), answer["headers"], bytes(answer["body"])


def _database_failure(exc: Exception) -> tuple[int, dict[str, str], bytes]:
    """Classified as the gateway classifies it alone (gateway/db.py): a value
    PostgreSQL refuses is that operation's 400; anything else is a 503 to retry
    (the database is away, or rolled this write back as a deadlock's victim)."""
    failure: errors.ScimError
    if classify(exc) == "refused":
        failure = errors.InvalidValue(
            "A value in this operation cannot be stored by SimpleAMS (too long, or containing "
            "characters it cannot store); shorten or correct it."
        )
    else:
        failure = errors.ServiceUnavailable(headers={"Retry-After": "5"})
    return failure.status, {}, orjson.dumps(failure.to_body())


routes = [Route("/Bulk", bulk, methods=["POST"])]
