"""HTTP plumbing shared by the SCIM endpoints: bodies in, SCIM JSON out,
parameters and preconditions. Who is asking is gateway/scim/context.py's."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message, Receive

from gateway.scim import errors
from gateway.scim.errors import SCIM_MEDIA_TYPE
from gateway.scim.render import etag
from gateway.settings import Settings

_JSON_MEDIA_TYPES = {"application/scim+json", "application/json"}


async def read_body(receive: Receive, limit: int, declared: bytes | None) -> bytes:
    """The whole request body, read before the request takes a fairness place.

    gateway/auth.py calls this once a request is authenticated; the endpoint
    then gets the body from ``replay``. How long the client may take to send
    it is bounded in gateway/app.py (``BodyDeadlineMiddleware``).

    :param declared: the Content-Length header, if any.
    :raises errors.PayloadTooLarge: past ``limit`` bytes, declared or sent.
    :raises ClientDisconnect: when the client leaves before the end of its body.
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        body += message.get("body", b"")
        if len(body) > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            return bytes(body)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over ``body`` (already read), then listens to the client."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def read_json(request: Request, *, search: bool = False) -> Any:
    """The request body as JSON, with the SCIM errors a client can act on.

    :param search: the body is a SearchRequest (RFC 7644 §3.4.3), whose
        ``filter`` is a filter: a NUL in it is left to the filter compiler
        (gateway/scim/filters.py), which refuses it as it refuses one in a
        GET's ``?filter=`` (400 invalidFilter).
    """
    settings: Settings = request.app.state.settings
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in _JSON_MEDIA_TYPES:
        raise errors.UnsupportedMediaType(
            f"Send the body as application/scim+json (got {media_type or 'no Content-Type'})."
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
        raise _too_large(settings.max_body_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > settings.max_body_bytes:
            raise _too_large(settings.max_body_bytes)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidSyntax(f"The request body is not valid JSON: {exc}.") from None
    problem = _shape_problem(data, search=search)
    if problem:
        raise problem
    return data


# SCIM documents nest a few levels (a PATCH value holding a complex
# attribute); anything deeper is not SCIM, and walking it recursively would
# exhaust Python's stack (a 500) before any validation could refuse it.
MAX_NESTING = 32


def _shape_problem(data: Any, *, search: bool = False) -> errors.ScimError | None:
    """A NUL character or absurd nesting anywhere in the body, found without recursion."""
    stack: list[tuple[Any, int, Any]] = [(data, 1, None)]
    while stack:
        value, depth, under = stack.pop()  # under: the top-level member it is in
        if isinstance(value, str):
            if "\x00" in value and not (search and under == "filter"):
                # JSON allows \u0000; PostgreSQL text and jsonb cannot store it.
                return errors.InvalidValue(
                    "A value in the request body contains a NUL character (\\u0000)."
                )
        elif isinstance(value, dict | list):
            if depth > MAX_NESTING:
                return errors.InvalidSyntax(
                    f"The request body nests objects or arrays more than {MAX_NESTING} levels "
                    "deep; a SCIM document never does."
                )
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and "\x00" in key:
                    return errors.InvalidValue(
                        "A name in the request body contains a NUL character (\\u0000)."
                    )
                stack.append((item, depth + 1, key if depth == 1 else under))
    return None


def _too_large(limit: int) -> errors.PayloadTooLarge:
    return errors.PayloadTooLarge(f"The request body is larger than {limit} bytes.")


def scim_json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data), status_code=status, headers=headers, media_type=SCIM_MEDIA_TYPE
    )


def check_if_match(request: Request, version: int) -> None:
    """RFC 7644 §3.14: honour If-Match on PUT, PATCH and DELETE."""
    wanted = request.headers.get("if-match")
    if wanted is None:
        return
    current = etag(version)
    candidates = [tag.strip() for tag in wanted.split(",")]
    # Weak comparison (RFC 9110 §8.8.3.2): W/"3" matches "3" and W/"3".
    normalised = {tag.removeprefix("W/") for tag in candidates}
    if "*" in candidates or current.removeprefix("W/") in normalised:
        return
    raise errors.PreconditionFailed()


def int_param(raw: Any, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool | float):
        raise errors.InvalidValue(f"'{name}' must be an integer, got {raw!r}.")
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise errors.InvalidValue(f"'{name}' must be an integer, got {raw!r}.") from None
