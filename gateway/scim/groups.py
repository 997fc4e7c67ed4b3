"""/Groups endpoints (RFC 7644 §3, RFC 7643 §4.2): orchestrate only.

auth (middleware) -> group_requests (validate) -> one transaction in
group_store -> render. Membership PATCHes answer 204 without the member list
(RFC 7644 §3.5.2 allows it; Okta and Entra expect it), so their cost is the
number of changes, not the size of the group; ask for the group back with
``?attributes=…`` or ``?excludedAttributes=…``.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.db import reading, writing
from gateway.scim import errors, group_store, listing, store
from gateway.scim.context import actor, base_url, engine, principal
from gateway.scim.group_requests import Members, parse_group, parse_group_patch
from gateway.scim.http import check_if_match, read_json, scim_json
from gateway.scim.listing import Query
from gateway.scim.render import Projection, etag, render_group
from gateway.scim.resources import GROUP, parse_id
from models.outbox import EventKind

ALWAYS_RETURNED = frozenset({"id", "schemas"})


async def _single(
    conn: AsyncConnection, row: Any, request: Request, projection: Projection, status: int = 200
) -> Response:
    url = base_url(request)
    members = (
        (await group_store.members_json(conn, [row.id], url))[row.id]
        if projection.wants("members")
        else None
    )
    resource = render_group(row, members, url)
    headers = {"ETag": etag(row.version)}
    if status == 201:
        headers["Location"] = resource["meta"]["location"]
    return scim_json(projection.apply(resource), status, headers)


def _projection_of(request: Request) -> Projection:
    params = request.query_params
    return Projection(GROUP, params.get("attributes"), params.get("excludedAttributes"))


async def list_groups(request: Request) -> Response:
    return await listing.respond(request, group_store.GROUPS, Query.of_list(request), render_page)


async def search_groups(request: Request) -> Response:
    """POST /Groups/.search (RFC 7644 §3.4.3)."""
    query = Query.of_search(await read_json(request, search=True))
    return await listing.respond(request, group_store.GROUPS, query, render_page)


async def render_page(
    conn: AsyncConnection, rows: list[Any], projection: Projection, url: str
) -> list[dict[str, Any]]:
    """A page of groups, with their members (one query for the page) when wanted."""
    members = (
        await group_store.members_json(conn, [row.id for row in rows], url)
        if projection.wants("members")
        else {}
    )
    return [
        projection.apply(render_group(row, members.get(row.id) if members else None, url))
        for row in rows
    ]


async def _resolve_new_members(
    conn: AsyncConnection, tenant_id: uuid.UUID, members: Members
) -> dict[uuid.UUID, str | None]:
    """Staff row id -> display of each new member; 400 if any is not a live user here."""
    found = await group_store.resolve_users(conn, tenant_id, members, joining=True)
    missing = [value for value in members if value not in found]
    if missing:
        shown = ", ".join(repr(value) for value in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise errors.InvalidValue(
            f"No user with id {shown}{more} in this workspace: members must be users "
            "provisioned to this workspace (and not deleted). Nothing was changed."
        )
    return {found[value]: display for value, display in members.items()}


async def create_group(request: Request) -> Response:
    projection = _projection_of(request)
    data = parse_group(await read_json(request))
    who = actor(request)
    async with writing(engine(request)) as conn:
        members = await _resolve_new_members(conn, who.tenant_id, data.members)
        row = await group_store.create(conn, who.tenant_id, data.display_name, data.external_id)
        joined = await group_store.add_members(conn, row.id, members)
        await group_store.record_event(
            conn,
            who,
            row.id,
            EventKind.group_created,
            {
                **_attribute_changes(None, row),
                **group_store.membership_changes(joined, set()),
            },
        )
        await store.recompute_roles(conn, who, joined)
        return await _single(conn, row, request, projection, status=201)


async def get_group(request: Request) -> Response:
    projection = _projection_of(request)
    group_id = parse_id(request.path_params["group_id"])
    async with reading(engine(request)) as conn:
        row = await group_store.get(conn, principal(request).tenant_id, group_id)
        return await _single(conn, row, request, projection)


async def replace_group(request: Request) -> Response:
    projection = _projection_of(request)
    data = parse_group(await read_json(request), replacing=True)
    group_id = parse_id(request.path_params["group_id"])
    who = actor(request)
    async with writing(engine(request)) as conn:
        current = await group_store.get(conn, who.tenant_id, group_id, for_update=True)
        check_if_match(request, current.version)
        members = await _resolve_new_members(conn, who.tenant_id, data.members)
        joined, left = await group_store.set_members(conn, current.id, members)
        values = {"display_name": data.display_name, "external_id": data.external_id}
        row = await _new_version(conn, current, values, joined | left)
        await _record_update(conn, who, current, row, joined, left)
        touched = joined | left | (set(members) if _renamed(current, row) else set())
        await store.recompute_roles(conn, who, touched)
        return await _single(conn, row, request, projection)


async def patch_group(request: Request) -> Response:
    projection = _projection_of(request)
    changes = parse_group_patch(await read_json(request))
    group_id = parse_id(request.path_params["group_id"])
    who = actor(request)
    async with writing(engine(request)) as conn:
        current = await group_store.get(conn, who.tenant_id, group_id, for_update=True)
        check_if_match(request, current.version)
        if changes.replaced_members is not None:
            members = await _resolve_new_members(conn, who.tenant_id, changes.final_members())
            joined, left = await group_store.set_members(conn, current.id, members)
        else:
            added = await _resolve_new_members(conn, who.tenant_id, changes.added())
            # Removing someone who is not a member (or not a user) changes nothing:
            # an IdP retrying a remove must not get an error.
            removed = await group_store.resolve_users(conn, who.tenant_id, changes.removed())
            joined = await group_store.add_members(conn, current.id, added)
            left = await group_store.remove_members(conn, current.id, set(removed.values()))
        row = await _new_version(conn, current, changes.values, joined | left)
        await _record_update(conn, who, current, row, joined, left)
        touched = joined | left
        if _renamed(current, row):
            # The group may now map to another role (or none): every member.
            touched |= await group_store.member_user_ids(conn, row.id)
        await store.recompute_roles(conn, who, touched)
        if not projection.given:
            return Response(status_code=204, headers={"ETag": etag(row.version)})
        return await _single(conn, row, request, projection)


async def _new_version(
    conn: AsyncConnection, current: Any, values: dict[str, Any], moved: set[uuid.UUID]
) -> Any:
    """The group after a write: a new version if anything changed, else as it was
    (as for users, a write that changes nothing keeps the version and ETag)."""
    different = {name: value for name, value in values.items() if getattr(current, name) != value}
    if not different and not moved:
        return current
    return await group_store.update_group(conn, current.id, different)


def _attribute_changes(before: Any, after: Any) -> dict[str, list[Any]]:
    """displayName and externalId, before -> after, where they differ."""
    changes = {}
    for wire, name in (("displayName", "display_name"), ("externalId", "external_id")):
        old = getattr(before, name) if before is not None else None
        new = getattr(after, name)
        if old != new:
            changes[wire] = [old, new]
    return changes


async def _record_update(
    conn: AsyncConnection,
    who: Any,
    before: Any,
    after: Any,
    joined: set[uuid.UUID],
    left: set[uuid.UUID],
) -> None:
    changes = {
        **_attribute_changes(before, after),
        **group_store.membership_changes(joined, left),
    }
    if changes:  # a write that changes nothing records nothing, as for users
        await group_store.record_event(conn, who, after.id, EventKind.group_updated, changes)


def _renamed(before: Any, after: Any) -> bool:
    # Role mappings match names case-insensitively (models/roles.py).
    return bool(before.display_name_key != after.display_name_key)


async def delete_group(request: Request) -> Response:
    group_id = parse_id(request.path_params["group_id"])
    who = actor(request)
    async with writing(engine(request)) as conn:
        current = await group_store.get(conn, who.tenant_id, group_id, for_update=True)
        check_if_match(request, current.version)
        members = await group_store.member_user_ids(conn, current.id)
        await group_store.delete_group(conn, current.id)
        await group_store.record_event(
            conn,
            who,
            current.id,
            EventKind.group_deleted,
            {
                "displayName": [current.display_name, None],
                **group_store.membership_changes(set(), members),
            },
        )
        await store.recompute_roles(conn, who, members)
    return Response(status_code=204)


routes = [
    Route("/Groups", list_groups, methods=["GET"]),
    Route("/Groups", create_group, methods=["POST"]),
    Route("/Groups/.search", search_groups, methods=["POST"]),
    Route("/Groups/{group_id}", get_group, methods=["GET"]),
    Route("/Groups/{group_id}", replace_group, methods=["PUT"]),
    Route("/Groups/{group_id}", patch_group, methods=["PATCH"]),
    Route("/Groups/{group_id}", delete_group, methods=["DELETE"]),
]
