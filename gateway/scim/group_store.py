"""Groups in PostgreSQL: every statement a /Groups request runs, scoped to its
tenant, and ``GROUP_STORAGE``, what the shared endpoints (endpoints.py) call.

Membership changes are set operations on ``group_members`` keyed by the
changed users only (``INSERT … ON CONFLICT DO NOTHING``, ``DELETE … = ANY``),
so their cost follows the number of changes, not the size of the group.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from typing import Any

import orjson
from sqlalchemy import Text, cast, delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.scim import errors
from gateway.scim.group_requests import (
    GroupInput,
    GroupPatch,
    Members,
    apply_group_patch,
    parse_group,
    parse_group_patch,
)
from gateway.scim.listing import Source
from gateway.scim.render import Projection, render_group
from gateway.scim.resources import GROUP, parse_id, uniqueness_error
from gateway.scim.storage import Storage
from gateway.scim.store import note_unchanged, recompute_roles
from models.groups import Group, GroupMember
from models.outbox import EVENT_INSERT, Actor, EventKind, event_parameters
from models.text import fold
from models.users import User

GroupRow = Any  # a Row of the groups table

# What /Groups lists read (gateway/scim/listing.py): every group of the tenant.
GROUPS = Source(GROUP, tuple(Group.__table__.c))


async def resolve_users(
    conn: AsyncConnection, tenant_id: uuid.UUID, scim_ids: Iterable[str], *, joining: bool = False
) -> dict[str, uuid.UUID]:
    """Map SCIM user ids to staff row ids; only the tenant's live users are found.

    ``joining``: the users are about to become members. Their rows are then
    locked FOR NO KEY UPDATE until the transaction ends, so a concurrent
    DELETE of one of them (which updates the row, then removes its
    memberships) waits for this transaction, or this one waits for it and no
    longer finds the user: PostgreSQL re-checks ``deleted_at`` on the row the
    DELETE committed. No membership can point at a deleted user, whatever the
    timing. A foreign key's lock (FOR KEY SHARE) would not do: it does not
    conflict with the DELETE's update. Nor would FOR SHARE: two transactions
    adding one user to two admin groups would each hold it and then both wait
    to update the user's role, a deadlock. FOR NO KEY UPDATE is what the role
    update takes anyway, so the second waits for the first from the start.
    """
    wanted: dict[uuid.UUID, str] = {}
    for value in scim_ids:
        scim_id = parse_id(value)
        if scim_id is not None:  # else not an id we ever issued: not found
            wanted[scim_id] = value
    if not wanted:
        return {}
    query = select(User.scim_id, User.id).where(
        User.tenant_id == tenant_id,
        User.scim_id.in_(list(wanted)),
        User.deleted_at.is_(None),
    )
    if joining:  # in one order, so that two such transactions cannot deadlock
        query = query.order_by(User.id).with_for_update(key_share=True)
    rows = await conn.execute(query)
    return {wanted[row.scim_id]: row.id for row in rows}


async def insert_group(
    conn: AsyncConnection, tenant_id: uuid.UUID, display_name: str, external_id: str | None
) -> GroupRow:
    return await _write(
        conn,
        pg_insert(Group)
        .values(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            **_columns({"display_name": display_name, "external_id": external_id}),
        )
        .returning(*Group.__table__.c),
    )


def _columns(values: dict[str, Any]) -> dict[str, Any]:
    """The columns a group's values set: with display_name, its folded key
    (models/text.py), the one place a group's key is derived."""
    if "display_name" not in values:
        return values
    return {**values, "display_name_key": fold(values["display_name"])}


async def update_group(
    conn: AsyncConnection, group_id: uuid.UUID, values: dict[str, Any]
) -> GroupRow:
    """Set ``values`` (display_name, external_id) and bump the version."""
    return await _write(
        conn,
        update(Group)
        .where(Group.id == group_id)
        .values(**_columns(values), version=Group.version + 1, updated_at=func.now())
        .returning(*Group.__table__.c),
    )


async def add_members(
    conn: AsyncConnection, group_id: uuid.UUID, members: dict[uuid.UUID, str | None]
) -> set[uuid.UUID]:
    """Add users (staff row id -> the IdP's display); returns those who were not members.

    Members already there stay as they are.
    """
    if not members:
        return set()
    result = await conn.execute(
        pg_insert(GroupMember)
        .values(
            [
                {"group_id": group_id, "user_id": user_id, "display": members[user_id]}
                for user_id in sorted(members)
            ]
        )
        .on_conflict_do_nothing()
        .returning(GroupMember.user_id)
    )
    return set(result.scalars())


async def remove_members(
    conn: AsyncConnection, group_id: uuid.UUID, user_ids: Collection[uuid.UUID]
) -> set[uuid.UUID]:
    """Returns the users who were members."""
    if not user_ids:
        return set()
    result = await conn.execute(
        delete(GroupMember)
        .where(GroupMember.group_id == group_id, GroupMember.user_id.in_(list(user_ids)))
        .returning(GroupMember.user_id)
    )
    return set(result.scalars())


async def set_members(
    conn: AsyncConnection, group_id: uuid.UUID, members: dict[uuid.UUID, str | None]
) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """Make ``members`` the whole member list; returns (who joined, who left).

    Members who stay keep their row (and the display they were added with).
    """
    leaving = delete(GroupMember).where(GroupMember.group_id == group_id)
    if members:
        leaving = leaving.where(GroupMember.user_id.not_in(list(members)))
    left = set((await conn.execute(leaving.returning(GroupMember.user_id))).scalars())
    return await add_members(conn, group_id, members), left


async def member_user_ids(conn: AsyncConnection, group_id: uuid.UUID) -> set[uuid.UUID]:
    """Staff row ids of every member (a rename or delete may change all their roles)."""
    result = await conn.execute(select(GroupMember.user_id).where(GroupMember.group_id == group_id))
    return set(result.scalars())


async def record_event(
    conn: AsyncConnection,
    actor: Actor,
    group_id: uuid.UUID,
    kind: EventKind,
    changes: dict[str, Any],
    ignored_attributes: list[str] | None = None,
) -> None:
    """A group's provisioning event (audited); member ids are staff ids (users.id)."""
    parameters = event_parameters(
        actor, kind, changes, group_id=group_id, ignored_attributes=ignored_attributes or None
    )
    await conn.execute(EVENT_INSERT, parameters)


def membership_changes(joined: set[uuid.UUID], left: set[uuid.UUID]) -> dict[str, Any]:
    """``{"members": {"added": [...], "removed": [...]}}``, or {} when nobody moved."""
    moved = {
        name: sorted(str(user_id) for user_id in ids)
        for name, ids in (("added", joined), ("removed", left))
        if ids
    }
    return {"members": moved} if moved else {}


async def delete_group(conn: AsyncConnection, group_id: uuid.UUID) -> None:
    await conn.execute(delete(Group).where(Group.id == group_id))


async def members_json(
    conn: AsyncConnection, group_ids: Collection[uuid.UUID], url: str
) -> dict[uuid.UUID, orjson.Fragment]:
    """Each group's live members, in the order they joined, as the JSON of its
    SCIM ``members`` attribute (value, display, type, $ref).

    PostgreSQL builds the JSON: a page of large groups is tens of thousands of
    members, and turning that many rows into Python objects took most of a
    second of the event loop's time (20 groups of 3,000 members: 0.85 s). Here
    the gateway receives one text per group and splices it into the response
    unparsed.
    """
    found = {group_id: orjson.Fragment(b"[]") for group_id in group_ids}
    if not group_ids:
        return found
    display = func.coalesce(GroupMember.display, User.display_name, User.user_name)
    member = func.json_build_object(
        "value",
        cast(User.scim_id, Text),
        "display",
        display,
        "type",
        "User",
        "$ref",
        literal(f"{url}/Users/") + cast(User.scim_id, Text),
    )
    rows = await conn.execute(
        select(
            GroupMember.group_id,
            cast(
                func.json_agg(aggregate_order_by(member, GroupMember.added_at, User.scim_id)), Text
            ),
        )
        .join(User, User.id == GroupMember.user_id)
        .where(GroupMember.group_id.in_(list(group_ids)), User.deleted_at.is_(None))
        .group_by(GroupMember.group_id)
    )
    for group_id, members in rows:
        found[group_id] = orjson.Fragment(members)
    return found


async def groups_of_users(
    conn: AsyncConnection, user_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, list[Any]]:
    """Each user's groups (id, display_name): the users' read-only ``groups`` attribute."""
    found: dict[uuid.UUID, list[Any]] = {user_id: [] for user_id in user_ids}
    if not user_ids:
        return found
    rows = await conn.execute(
        select(GroupMember.user_id, Group.id, Group.display_name)
        .join(Group, Group.id == GroupMember.group_id)
        .where(GroupMember.user_id.in_(list(user_ids)))
        .order_by(GroupMember.user_id, Group.display_name_key)
    )
    for row in rows:
        found[row.user_id].append(row)
    return found


async def _write(conn: AsyncConnection, statement: Any) -> GroupRow:
    try:
        return (await conn.execute(statement)).one()
    except IntegrityError as exc:
        refused = uniqueness_error(exc)
        if refused is None:
            raise
        raise refused from None


class GroupStorage(Storage):
    """Groups, as the endpoints of every type see them (gateway/scim/endpoints.py).

    Membership changes are applied as changes (who joined, who left), never
    by loading the member list; each member's role follows from their groups
    (models/roles.py) and is recomputed for those who moved, or for every
    member when a rename may map the group to another role.
    """

    source = GROUPS
    patch_answers_resource = False  # 204 unless a projection asks (endpoints.py)
    # No create_if_new: a create resolves and locks its members first, in one transaction.

    def parse(self, body: Any, *, current: GroupRow | None) -> GroupInput:
        return parse_group(body, replacing=current is not None)

    def parse_patch(self, body: Any) -> GroupPatch:
        return parse_group_patch(body)

    async def create(self, conn: AsyncConnection, who: Actor, data: GroupInput) -> GroupRow:
        members = await _resolve_new_members(conn, who.tenant_id, data.members)
        row = await insert_group(conn, who.tenant_id, data.display_name, data.external_id)
        joined = await add_members(conn, row.id, members)
        changes = {**_attribute_changes(None, row), **membership_changes(joined, set())}
        await record_event(
            conn, who, row.id, EventKind.group_created, changes, data.ignored_attributes
        )
        await recompute_roles(conn, who, joined)
        return row

    async def replace(
        self, conn: AsyncConnection, who: Actor, current: GroupRow, data: GroupInput
    ) -> GroupRow:
        members = await _resolve_new_members(conn, who.tenant_id, data.members)
        joined, left = await set_members(conn, current.id, members)
        values = {"display_name": data.display_name, "external_id": data.external_id}
        row = await _new_version(conn, current, values, joined | left)
        await _record_update(conn, who, current, row, joined, left, data.ignored_attributes)
        touched = joined | left | (set(members) if _renamed(current, row) else set())
        await recompute_roles(conn, who, touched)
        return row

    async def patch(
        self, conn: AsyncConnection, who: Actor, current: GroupRow, patch: GroupPatch
    ) -> GroupRow:
        values, ignored = apply_group_patch(current.display_name, current.external_id, patch)
        if patch.replaced_members is not None:
            members = await _resolve_new_members(conn, who.tenant_id, patch.final_members())
            joined, left = await set_members(conn, current.id, members)
        else:
            added = await _resolve_new_members(conn, who.tenant_id, patch.added())
            # Removing someone who is not a member (or not a user) changes nothing:
            # an IdP retrying a remove must not get an error.
            removed = await resolve_users(conn, who.tenant_id, patch.removed())
            joined = await add_members(conn, current.id, added)
            left = await remove_members(conn, current.id, set(removed.values()))
        row = await _new_version(conn, current, values, joined | left)
        await _record_update(conn, who, current, row, joined, left, ignored)
        touched = joined | left
        if _renamed(current, row):
            # The group may now map to another role (or none): every member.
            touched |= await member_user_ids(conn, row.id)
        await recompute_roles(conn, who, touched)
        return row

    async def delete(self, conn: AsyncConnection, who: Actor, current: GroupRow) -> None:
        members = await member_user_ids(conn, current.id)
        await delete_group(conn, current.id)
        changes = {
            "displayName": [current.display_name, None],
            **membership_changes(set(), members),
        }
        await record_event(conn, who, current.id, EventKind.group_deleted, changes)
        await recompute_roles(conn, who, members)

    async def render(
        self, conn: AsyncConnection, rows: list[GroupRow], projection: Projection, url: str
    ) -> list[dict[str, Any]]:
        """Groups, with their members (one query for the page) when wanted."""
        members = (
            await members_json(conn, [row.id for row in rows], url)
            if projection.wants("members")
            else {}
        )
        return [
            projection.apply(render_group(row, members.get(row.id) if members else None, url))
            for row in rows
        ]


GROUP_STORAGE = GroupStorage()


async def _resolve_new_members(
    conn: AsyncConnection, tenant_id: uuid.UUID, members: Members
) -> dict[uuid.UUID, str | None]:
    """Staff row id -> display of each new member; 400 if any is not a live user here."""
    found = await resolve_users(conn, tenant_id, members, joining=True)
    missing = [value for value in members if value not in found]
    if missing:
        shown = ", ".join(repr(value) for value in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise errors.InvalidValue(
            f"No user with id {shown}{more} in this workspace: members must be users "
            "provisioned to this workspace (and not deleted). Nothing was changed."
        )
    return {found[value]: display for value, display in members.items()}


async def _new_version(
    conn: AsyncConnection, current: GroupRow, values: dict[str, Any], moved: set[uuid.UUID]
) -> GroupRow:
    """The group after a write: a new version if anything changed, else as it was
    (as for users, a write that changes nothing keeps the version and ETag)."""
    different = {name: value for name, value in values.items() if getattr(current, name) != value}
    if not different and not moved:
        return current
    return await update_group(conn, current.id, different)


def _attribute_changes(before: GroupRow | None, after: GroupRow) -> dict[str, list[Any]]:
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
    who: Actor,
    before: GroupRow,
    after: GroupRow,
    joined: set[uuid.UUID],
    left: set[uuid.UUID],
    ignored_attributes: list[str],
) -> None:
    changes = {**_attribute_changes(before, after), **membership_changes(joined, left)}
    if not changes:  # a write that changes nothing records nothing, as for users
        note_unchanged(who, ignored_attributes)
        return
    await record_event(conn, who, after.id, EventKind.group_updated, changes, ignored_attributes)


def _renamed(before: GroupRow, after: GroupRow) -> bool:
    # Role mappings match names case-insensitively (models/roles.py).
    return bool(before.display_name_key != after.display_name_key)
