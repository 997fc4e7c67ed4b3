"""/Users endpoints (RFC 7644 §3): orchestrate only.

auth (middleware) -> schema (validate) -> one transaction in store -> render.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.db import reading, writing
from gateway.scim import errors, store
from gateway.scim.context import actor, base_url, engine, idp_of, principal
from gateway.scim.filters import compile_filter, sort_expression, user_name_equals
from gateway.scim.http import check_if_match, int_param, read_json, scim_json
from gateway.scim.paging import Cursor, IndexPositions, fingerprint
from gateway.scim.patch import apply_patch, parse_patch
from gateway.scim.render import (
    Projection,
    cursor_list_response,
    etag,
    list_response,
    render_user,
)
from gateway.scim.resources import USER
from gateway.scim.schema import parse_user

# RFC 7644 §3.4.2.4: the server may cap count; advertised as filter.maxResults.
MAX_RESULTS = 1000
DEFAULT_COUNT = 100
# Far beyond any directory; keeps OFFSET and the echoed startIndex in range.
MAX_START_INDEX = 2**31 - 1
SEARCH_REQUEST_URN = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
# Per process: where the next startIndex page of a sequential read begins.
_index_positions = IndexPositions()


def _projection(request: Request) -> Projection:
    # Parsed before any write: a bad parameter must not fail a committed write.
    return Projection(
        USER, request.query_params.get("attributes"), request.query_params.get("excludedAttributes")
    )


def _single(
    row: Any,
    request: Request,
    projection: Projection,
    status: int = 200,
    location: bool = False,
) -> Response:
    resource = render_user(row, base_url(request))
    headers = {"ETag": etag(row.version)}
    if location:
        headers["Location"] = resource["meta"]["location"]
    return scim_json(projection.apply(resource), status, headers)


async def list_users(request: Request) -> Response:
    params = request.query_params
    return await _query(
        request,
        filter_text=params.get("filter"),
        start_index=params.get("startIndex"),
        cursor=params.get("cursor"),
        count=params.get("count"),
        sort_by=params.get("sortBy"),
        sort_order=params.get("sortOrder"),
        attributes=params.get("attributes"),
        excluded=params.get("excludedAttributes"),
    )


async def search_users(request: Request) -> Response:
    """POST /Users/.search (RFC 7644 §3.4.3)."""
    return await search_users_with(request, await read_json(request))


async def search_users_with(request: Request, body: Any) -> Response:
    """A search request already read (POST /.search hands some on)."""
    if not isinstance(body, dict):
        raise errors.InvalidSyntax("A search request must be a JSON object (RFC 7644 §3.4.3).")
    filter_text = body.get("filter")
    if filter_text is not None and not isinstance(filter_text, str):
        raise errors.InvalidFilter("'filter' must be a string.")
    return await _query(
        request,
        filter_text=filter_text,
        start_index=body.get("startIndex"),
        cursor=body.get("cursor"),
        count=body.get("count"),
        sort_by=body.get("sortBy"),
        sort_order=body.get("sortOrder"),
        attributes=body.get("attributes"),
        excluded=body.get("excludedAttributes"),
    )


async def _query(
    request: Request,
    *,
    filter_text: str | None,
    start_index: Any,
    cursor: Any,
    count: Any,
    sort_by: Any,
    sort_order: Any,
    attributes: Any,
    excluded: Any,
) -> Response:
    # RFC 7644 §3.4.2.4: startIndex < 1 is read as 1, a negative count as 0.
    first = min(max(1, int_param(start_index, "startIndex", 1)), MAX_START_INDEX)
    limit = min(max(0, int_param(count, "count", DEFAULT_COUNT)), MAX_RESULTS)
    user_name = user_name_equals(filter_text) if filter_text else None
    if user_name is not None and first == 1 and limit > 0 and cursor is None and not sort_by:
        return await _lookup_by_user_name(request, user_name, attributes, excluded)
    condition: ColumnElement[bool] | None = (
        compile_filter(USER, filter_text) if filter_text else None
    )
    order_by: list[ColumnElement[Any]] = []
    if sort_by:
        if not isinstance(sort_by, str):
            raise errors.InvalidValue("'sortBy' must be an attribute name.")
        expression = sort_expression(USER, sort_by)
        descending = str(sort_order or "ascending").lower() == "descending"
        if str(sort_order or "ascending").lower() not in ("ascending", "descending"):
            raise errors.InvalidValue("'sortOrder' must be 'ascending' or 'descending'.")
        order_by.append(
            expression.desc().nulls_last() if descending else expression.asc().nulls_last()
        )
    projection = Projection(USER, attributes, excluded)
    tenant_id = principal(request).tenant_id
    query = fingerprint(tenant_id, filter_text)
    url = base_url(request)
    if cursor is not None:
        if start_index not in (None, ""):
            raise errors.InvalidValue(
                "Page with either 'cursor' (RFC 9865) or 'startIndex', not both."
            )
        if order_by:
            raise errors.InvalidValue(
                "Cursor paging is in creation order; drop 'sortBy', or page with 'startIndex'."
            )
        if not isinstance(cursor, str):
            raise errors.InvalidValue("'cursor' must be a string (empty for the first page).")
        return await _cursor_page(request, condition, query, cursor, limit, projection, url)
    # A sequential read (Okta's import) continues where the last page ended.
    position = _index_positions.get(query, first) if not order_by and first > 1 else None
    async with reading(engine(request)) as conn:
        total, rows = await store.search(
            conn, tenant_id, condition, order_by, first - 1, limit, after=position
        )
    if rows and not order_by:
        _index_positions.remember(query, first + len(rows), (rows[-1].created_at, rows[-1].id))
    resources = [projection.apply(render_user(row, url)) for row in rows]
    return scim_json(list_response(resources, total, first))


async def _lookup_by_user_name(
    request: Request, user_name: str, attributes: Any, excluded: Any
) -> Response:
    """The answer to a plain ``userName eq "…"`` filter: zero or one user."""
    projection = Projection(USER, attributes, excluded)
    async with reading(engine(request)) as conn:
        rows = await store.find_by_user_name(conn, principal(request).tenant_id, user_name)
    url = base_url(request)
    resources = [projection.apply(render_user(row, url)) for row in rows]
    return scim_json(list_response(resources, len(rows), 1))


async def _cursor_page(
    request: Request,
    condition: ColumnElement[bool] | None,
    query: str,
    cursor: str,
    limit: int,
    projection: Projection,
    url: str,
) -> Response:
    """RFC 9865: cursor= is the first page; then nextCursor / previousCursor."""
    at = Cursor.decode(cursor, query) if cursor else None
    backwards = at is not None and at.direction == "previous"
    async with reading(engine(request)) as conn:
        rows = await store.page_by_cursor(
            conn,
            principal(request).tenant_id,
            condition,
            at.position if at else None,
            backwards,
            limit,
        )
    more = len(rows) > limit
    rows = rows[len(rows) - limit :] if backwards and more else rows[:limit]
    has_next = more if not backwards else True
    has_previous = at is not None and (more if backwards else True)
    next_cursor = previous_cursor = None
    if rows and has_next:
        next_cursor = Cursor("next", (rows[-1].created_at, rows[-1].id), query).encode()
    if rows and has_previous:
        previous_cursor = Cursor("previous", (rows[0].created_at, rows[0].id), query).encode()
    resources = [projection.apply(render_user(row, url)) for row in rows]
    return scim_json(cursor_list_response(resources, next_cursor, previous_cursor))


async def create_user(request: Request) -> Response:
    projection = _projection(request)
    data = parse_user(await read_json(request))
    who = actor(request)
    source = idp_of(who.user_agent)
    # Almost every create is of someone new: one autocommitted statement.
    async with reading(engine(request)) as conn:
        row = await store.create_if_new(conn, who, data, source)
    if row is None:  # a userName or email is taken, live (409) or deleted (a re-hire)
        async with writing(engine(request)) as conn:
            row = await store.create(conn, who, data, source)
    return _single(row, request, projection, status=201, location=True)


async def get_user(request: Request) -> Response:
    projection = _projection(request)
    scim_id = store.parse_scim_id(request.path_params["user_id"])
    async with reading(engine(request)) as conn:
        row = await store.get_live(conn, principal(request).tenant_id, scim_id)
    return _single(row, request, projection)


async def replace_user(request: Request) -> Response:
    projection = _projection(request)
    body = await read_json(request)
    scim_id = store.parse_scim_id(request.path_params["user_id"])
    who = actor(request)
    async with writing(engine(request)) as conn:
        current = await store.get_live(conn, who.tenant_id, scim_id, for_update=True)
        check_if_match(request, current.version)
        # Validated against the version it replaces: values stored before a
        # rule tightened may stay (a leaver's deactivation must apply).
        data = parse_user(body, replacing=True, stored=current.attributes)
        row = await store.replace(conn, who, current, data)
    return _single(row, request, projection)


async def patch_user(request: Request) -> Response:
    projection = _projection(request)
    # Parsing and applying a PATCH is CPU work that grows with its size (bounded in
    # gateway/scim/limits.py): in a worker thread, so that the event loop keeps
    # serving every other tenant meanwhile.
    patch = await run_in_threadpool(parse_patch, await read_json(request))
    scim_id = store.parse_scim_id(request.path_params["user_id"])
    who = actor(request)
    async with writing(engine(request)) as conn:
        current = await store.get_live(conn, who.tenant_id, scim_id, for_update=True)
        check_if_match(request, current.version)
        data = await run_in_threadpool(apply_patch, current.attributes, patch)
        row = await store.replace(conn, who, current, data)
    # RFC 7644 §3.5.2 allows 204, but Okta, Entra and checkers handle 200 with the resource best.
    return _single(row, request, projection)


async def delete_user(request: Request) -> Response:
    scim_id = store.parse_scim_id(request.path_params["user_id"])
    who = actor(request)
    async with writing(engine(request)) as conn:
        current = await store.get_live(conn, who.tenant_id, scim_id, for_update=True)
        check_if_match(request, current.version)
        await store.mark_deleted(conn, who, current)
    return Response(status_code=204)


routes = [
    Route("/Users", list_users, methods=["GET"]),
    Route("/Users", create_user, methods=["POST"]),
    Route("/Users/.search", search_users, methods=["POST"]),
    Route("/Users/{user_id}", get_user, methods=["GET"]),
    Route("/Users/{user_id}", replace_user, methods=["PUT"]),
    Route("/Users/{user_id}", patch_user, methods=["PATCH"]),
    Route("/Users/{user_id}", delete_user, methods=["DELETE"]),
]
