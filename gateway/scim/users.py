"""/Users endpoints (RFC 7644 §3): orchestrate only.

auth (middleware) -> schema (validate) -> one transaction in store -> render.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.db import reading, writing
from gateway.scim import listing, store
from gateway.scim.context import actor, base_url, engine, idp_of, principal
from gateway.scim.filters import user_name_equals
from gateway.scim.http import check_if_match, read_json, scim_json
from gateway.scim.listing import Query
from gateway.scim.patch import apply_patch, parse_patch
from gateway.scim.render import (
    Projection,
    etag,
    list_response,
    render_user,
)
from gateway.scim.resources import USER, parse_id
from gateway.scim.schema import parse_user

SEARCH_REQUEST_URN = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


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
    return await _query(request, Query.of_list(request))


async def search_users(request: Request) -> Response:
    """POST /Users/.search (RFC 7644 §3.4.3)."""
    return await search_users_with(request, await read_json(request, search=True))


async def search_users_with(request: Request, body: Any) -> Response:
    """A search request already read (POST /.search hands some on)."""
    return await _query(request, Query.of_search(body))


async def _query(request: Request, query: Query) -> Response:
    user_name = user_name_equals(query.filter_text) if query.filter_text else None
    plain = query.first == 1 and query.limit > 0 and query.cursor is None and not query.sort_by
    if user_name is not None and plain:
        return await _lookup_by_user_name(request, user_name, query)
    return await listing.respond(request, store.USERS, query, _render)


async def _render(
    conn: AsyncConnection, rows: list[Any], projection: Projection, url: str
) -> list[dict[str, Any]]:
    return [projection.apply(render_user(row, url)) for row in rows]


async def _lookup_by_user_name(request: Request, user_name: str, query: Query) -> Response:
    """The answer to a plain ``userName eq "…"`` filter: zero or one user."""
    projection = Projection(USER, query.attributes, query.excluded)
    async with reading(engine(request)) as conn:
        rows = await store.find_by_user_name(conn, principal(request).tenant_id, user_name)
    url = base_url(request)
    resources = [projection.apply(render_user(row, url)) for row in rows]
    return scim_json(list_response(resources, len(rows), 1))


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
    scim_id = parse_id(request.path_params["user_id"])
    async with reading(engine(request)) as conn:
        row = await store.get_live(conn, principal(request).tenant_id, scim_id)
    return _single(row, request, projection)


async def replace_user(request: Request) -> Response:
    projection = _projection(request)
    body = await read_json(request)
    scim_id = parse_id(request.path_params["user_id"])
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
    scim_id = parse_id(request.path_params["user_id"])
    who = actor(request)
    async with writing(engine(request)) as conn:
        current = await store.get_live(conn, who.tenant_id, scim_id, for_update=True)
        check_if_match(request, current.version)
        data = await run_in_threadpool(apply_patch, current.attributes, patch)
        row = await store.replace(conn, who, current, data)
    # RFC 7644 §3.5.2 allows 204, but Okta, Entra and checkers handle 200 with the resource best.
    return _single(row, request, projection)


async def delete_user(request: Request) -> Response:
    scim_id = parse_id(request.path_params["user_id"])
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
