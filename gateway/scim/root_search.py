"""POST /.search at the service root (RFC 7644 §3.4.3): every resource type.

Users first, then groups, each in creation order; ``startIndex``/``count``
page over that concatenation. A filter naming an attribute one type does not
have matches nothing of that type (``userName eq "…"`` finds no group);
only a filter neither type understands is an error. A search with
``cursor`` or ``sortBy`` pages and sorts users only, exactly as
``/Users/.search`` (cursors are keyset positions in one table, and the sort
attributes are the users'); groups have ``/Groups/.search`` for those.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, false
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.db import reading
from gateway.scim import errors, group_store, listing, store
from gateway.scim.context import base_url, engine, principal
from gateway.scim.filters import compile_filter
from gateway.scim.http import read_json, scim_json
from gateway.scim.listing import Query
from gateway.scim.render import Projection, list_response, render_group, render_user
from gateway.scim.resources import GROUP, USER


def _conditions(
    filter_text: str | None,
) -> tuple[ColumnElement[bool] | None, ColumnElement[bool] | None]:
    if not filter_text:
        return None, None
    compiled: list[ColumnElement[bool] | None] = []
    failures: list[errors.ScimError] = []
    for resource in (USER, GROUP):
        try:
            compiled.append(compile_filter(resource, filter_text))
        except errors.InvalidFilter as exc:
            compiled.append(false())
            failures.append(exc)
    if len(failures) == 2:
        raise failures[0]
    return compiled[0], compiled[1]


async def search_everything(request: Request) -> Response:
    body = await read_json(request, search=True)
    if not isinstance(body, dict):
        raise errors.InvalidSyntax("A search request must be a JSON object (RFC 7644 §3.4.3).")
    if body.get("cursor") is not None or body.get("sortBy"):
        return await listing.respond(
            request, store.USERS, Query.of_search(body), store.USER_STORAGE.render
        )
    query = Query.of_search(body)
    filter_text, first, limit = query.filter_text, query.first, query.limit
    attributes, excluded = query.attributes, query.excluded
    group_projection = Projection(GROUP, attributes, excluded)
    user_projection = _user_projection(attributes, excluded)
    user_condition, group_condition = _conditions(filter_text)
    tenant_id = principal(request).tenant_id
    url = base_url(request)
    async with reading(engine(request)) as conn:
        user_total, user_rows = await listing.search(
            conn, store.USERS, tenant_id, user_condition, [], first - 1, limit
        )
        group_offset = max(0, first - 1 - user_total)
        group_total, group_rows = await listing.search(
            conn,
            group_store.GROUPS,
            tenant_id,
            group_condition,
            [],
            group_offset,
            limit - len(user_rows),
        )
        members = (
            await group_store.members_json(conn, [row.id for row in group_rows], url)
            if group_projection.wants("members")
            else {}
        )
    resources: list[dict[str, Any]] = [
        user_projection.apply(render_user(row, url)) for row in user_rows
    ]
    resources += [
        group_projection.apply(render_group(row, members.get(row.id) if members else None, url))
        for row in group_rows
    ]
    return scim_json(list_response(resources, user_total + group_total, first))


def _user_projection(attributes: Any, excluded: Any) -> Projection:
    """The users' projection; attributes only groups have are left out of it."""
    user_names = {"members"}
    keep = _without(attributes, user_names)
    drop = _without(excluded, user_names)
    if attributes and not keep:
        keep = ["id"]  # only group attributes were asked for: users show their id
    return Projection(USER, keep, drop)


def _without(raw: Any, names: set[str]) -> list[str] | None:
    if not raw:
        return None
    items = raw if isinstance(raw, list) else str(raw).split(",")
    kept = [item for item in items if str(item).strip().lower() not in names]
    return kept or None


routes = [Route("/.search", search_everything, methods=["POST"])]
