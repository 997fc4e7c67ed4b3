"""Users-table reads and writes for the SCIM endpoints (SQLAlchemy Core).

Every function takes the request's connection and never commits: the
endpoint owns the transaction, so the user row and its provisioning event
always commit together.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Sequence
from typing import Any, TypeAlias, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Row,
    String,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.concurrency import run_in_threadpool

from gateway.scim import errors
from gateway.scim.attributes import indexed_columns
from gateway.scim.context import idp_of
from gateway.scim.filters import user_name_equals
from gateway.scim.listing import Lookup, Source
from gateway.scim.patch import apply_patch, parse_patch
from gateway.scim.render import Projection, render_user
from gateway.scim.resources import USER, uniqueness_error
from gateway.scim.schema import UserInput, parse_user
from gateway.scim.storage import Storage
from models.groups import Group, GroupMember
from models.outbox import EVENT_INSERT, Actor, EventKind, event_insert, event_parameters
from models.roles import role_change_events, role_statements
from models.users import LiveUserCount, Role, User

log = logging.getLogger("simpleams.gateway.store")

users = cast("Table", User.__table__)
c = users.c

# A users-table row as the SCIM endpoints read it (the _COLUMNS below).
UserRow: TypeAlias = Row[*tuple[Any, ...]]

_BASE_COLUMNS = (
    c.id,
    c.scim_id,
    c.attributes,
    c.version,
    c.created_at,
    c.updated_at,
    c.active,
    c.deleted_at,
    c.user_name,
    c.user_name_key,
    c.email,
    c.email_key,
    c.role,
)
_COLUMNS = (
    *_BASE_COLUMNS,
    # The read-only groups attribute (RFC 7643 §4.1.2), derived per row: an
    # index probe on group_members(user_id), in the same statement.
    select(
        func.coalesce(
            func.jsonb_agg(
                aggregate_order_by(
                    func.jsonb_build_object(
                        "value", func.cast(Group.id, String), "display", Group.display_name
                    ),
                    Group.display_name_key,
                )
            ),
            text("'[]'::jsonb"),
        )
    )
    .select_from(GroupMember)
    .join(Group, Group.id == GroupMember.group_id)
    .where(GroupMember.user_id == c.id)
    .correlate(users)
    .scalar_subquery()
    .label("groups"),
)


_LIVE_BY_USER_NAME = select(*_COLUMNS).where(
    c.tenant_id == bindparam("tenant_id"),
    c.user_name_key == bindparam("user_name_key", type_=String),
    c.deleted_at.is_(None),
)


async def find_by_user_name(
    conn: AsyncConnection, tenant_id: uuid.UUID, user_name_key: str
) -> list[UserRow]:
    """The live user whose folded userName is ``user_name_key`` (models/text.py),
    if any: at most one, by the unique index. The IdPs' per-user lookup
    (filters.user_name_equals)."""
    parameters = {"tenant_id": tenant_id, "user_name_key": user_name_key}
    return list((await conn.execute(_LIVE_BY_USER_NAME, parameters)).all())


_LIVE_USERS = select(func.coalesce(func.sum(LiveUserCount.live), 0)).where(
    LiveUserCount.tenant_id == bindparam("tenant_id")
)


# What /Users lists read (gateway/scim/listing.py): live users, each with its
# groups; an unfiltered total from the counter rows, not a count.
USERS = Source(
    USER,
    _COLUMNS,
    (c.deleted_at.is_(None),),
    _LIVE_USERS,
    lookup=Lookup(user_name_equals, find_by_user_name),
)


def _person_keys(*, by_email: bool) -> list[ColumnElement[bool]]:
    """The folded userName (and email) equal to the ``user_name_key``
    (``email_key``) parameter, exactly as the unique indexes have it."""
    keys = [c.user_name_key == bindparam("user_name_key", type_=String)]
    if by_email:
        keys.append(c.email_key == bindparam("email_key", type_=String))
    return keys


def _same_person(*, by_email: bool) -> Any:
    """The live and deleted users a create collides with or restores.

    The folded keys, exactly as the unique indexes have them. One
    lookup per key and state, each an equality on exactly one index: live
    users' unique ones, deleted users' lookup ones. An OR of the keys (or of
    the states) lets the planner read the tenant's rows through another
    index instead when its statistics lag behind a growing directory
    (tests/integration/test_plans_stay_right.py). A person found by both
    keys comes back twice, which changes nothing in create().
    """
    keys = _person_keys(by_email=by_email)
    lookups = [
        select(*_COLUMNS)
        .where(c.tenant_id == bindparam("tenant_id"), key, state)
        .with_for_update(key_share=True)
        .cte()
        for key in keys
        for state in (c.deleted_at.is_(None), c.deleted_at.is_not(None))
    ]
    return union_all(*(select(one) for one in lookups))


def _bound(*names: str) -> dict[str, Any]:
    """VALUES / SET for these columns, each from a ``user_<name>`` parameter."""
    return {name: bindparam(f"user_{name}", type_=c[name].type) for name in names}


def _user_parameters(values: dict[str, Any]) -> dict[str, Any]:
    return {f"user_{name}": value for name, value in values.items()}


# The columns derived from a SCIM document (attributes.indexed_columns).
_INDEXED = tuple(indexed_columns({"userName": ""}))

# The statements every created or changed user needs are built once.
# Building a SQLAlchemy statement and its cache key costs more CPU than
# PostgreSQL spends running it (docs/performance.md, "Statements built once"); the
# gateway's throughput is bound by that CPU. Each write carries its
# provisioning event as a CTE: one statement, one round trip.
_SAME_PERSON_BY_NAME = _same_person(by_email=False)
_SAME_PERSON_BY_NAME_OR_EMAIL = _same_person(by_email=True)
_CREATE_USER = (
    insert(users)
    .values(_bound(*_INDEXED, "id", "tenant_id", "scim_id", "attributes", "source"))
    # A new user is in no group yet (and an INSERT's RETURNING cannot
    # correlate the groups subquery with the row it inserts).
    .returning(*_BASE_COLUMNS)
    .add_cte(event_insert())
)


def _create_if_new(*, by_email: bool) -> Any:
    """The common create as one statement: insert the user and its event
    unless anyone, live or deleted, has this userName (or email).

    Run in autocommit it is its own transaction: one round trip where
    BEGIN, the candidate lookup, the insert and COMMIT took four, which
    the gateway's CPU per create follows (docs/performance.md, "One
    statement per create"). When it inserts nothing, create() takes the
    careful path.
    Each probe is an equality on exactly one index, as in _same_person.
    """
    keys = _person_keys(by_email=by_email)
    nobody = and_(
        *(
            ~exists().where(c.tenant_id == bindparam("user_tenant_id"), key, state)
            for key in keys
            for state in (c.deleted_at.is_(None), c.deleted_at.is_not(None))
        )
    )
    names = (*_INDEXED, "id", "tenant_id", "scim_id", "attributes", "source")
    # The psycopg dialect casts each typed parameter (``%(user_id)s::UUID``),
    # so PostgreSQL knows their types in a SELECT list too.
    values = select(*_bound(*names).values())
    new_user = (
        insert(users)
        .from_select(names, values.where(nobody))
        .returning(*_BASE_COLUMNS)
        .cte("new_user")
    )
    return select(new_user).add_cte(event_insert(after=new_user))


_CREATE_IF_NEW_BY_NAME = _create_if_new(by_email=False)
_CREATE_IF_NEW_BY_NAME_OR_EMAIL = _create_if_new(by_email=True)
_NEW_VERSION = {"version": c.version + 1, "updated_at": func.now()}
_REPLACE_USER = (
    update(users)
    .where(c.id == bindparam("row_id"))
    .values({**_bound(*_INDEXED, "attributes"), **_NEW_VERSION})
    .returning(*_COLUMNS)
    .add_cte(event_insert())
)
# A re-hire: the deleted staff record comes back under a new SCIM id.
_RESTORE_USER = (
    update(users)
    .where(c.id == bindparam("row_id"))
    .values(
        {
            **_bound(*_INDEXED, "attributes", "scim_id"),
            "deleted_at": None,
            # A re-hire is staff until the IdP pushes their groups again.
            "role": Role.staff.value,
            **_NEW_VERSION,
        }
    )
    .returning(*_COLUMNS)
    .add_cte(event_insert())
)
_MARK_DELETED = (
    update(users)
    .where(c.id == bindparam("row_id"))
    .values({"deleted_at": func.now(), "active": False, **_NEW_VERSION})
    .add_cte(event_insert())
)


async def create_if_new(
    conn: AsyncConnection, actor: Actor, data: UserInput, source: str
) -> UserRow | None:
    """Create a user no one in the workspace, live or deleted, shares a key
    with, in one statement; None when someone does (then ``create()`` decides
    between 409 and a re-hire). ``conn`` is in autocommit: the statement is
    the transaction, and the user and its event commit together."""
    columns = _new_user_columns(data)
    statement = _CREATE_IF_NEW_BY_NAME_OR_EMAIL if columns["email"] else _CREATE_IF_NEW_BY_NAME
    parameters = {
        **_new_user_parameters(actor, data, columns, source),
        "user_name_key": columns["user_name_key"],
        "email_key": columns["email_key"],
    }
    return (await _execute_write(conn, statement, parameters)).first()


async def create(conn: AsyncConnection, actor: Actor, data: UserInput, source: str) -> UserRow:
    """Create a user, or restore one the IdP deleted earlier (a re-hire).

    A create that collides with a live user is 409 ``uniqueness``, even when
    the body is identical: Okta's SPEC test requires it ("recreating user with
    same values"). A create retried after a lost answer therefore gets 409
    too; that cannot loop, because both IdPs then look the user up (filter on
    userName / externalId), and every live user, deactivated ones included,
    answers that lookup (docs/scim.md, "Users": creating a user who already exists).
    """
    columns = _new_user_columns(data)
    lookup = _SAME_PERSON_BY_NAME_OR_EMAIL if columns["email"] else _SAME_PERSON_BY_NAME
    candidates = (
        await conn.execute(
            lookup,
            {
                "tenant_id": actor.tenant_id,
                "user_name_key": columns["user_name_key"],
                "email_key": columns["email_key"],
            },
        )
    ).all()
    live = [row for row in candidates if row.deleted_at is None]
    if live:
        raise errors.Uniqueness(_conflict_detail(live[0], columns))
    rehired = _rehired(candidates, columns)
    if rehired is not None:
        return await _restore(conn, actor, rehired, data, columns)
    return await _write(conn, _CREATE_USER, _new_user_parameters(actor, data, columns, source))


def _new_user_columns(data: UserInput) -> dict[str, Any]:
    if data.document.get("active") is None:
        data.document["active"] = True  # RFC 7643 §4.1.1: new users are active unless told
    return indexed_columns(data.document)


def _new_user_parameters(
    actor: Actor, data: UserInput, columns: dict[str, Any], source: str
) -> dict[str, Any]:
    """The user row and ``user.created`` event of a new user (both create statements)."""
    user_id = uuid.uuid4()
    values = {
        **columns,
        "tenant_id": actor.tenant_id,
        "scim_id": uuid.uuid4(),
        "id": user_id,
        "attributes": data.document,
        "source": source,
    }
    event = _event(actor, user_id, EventKind.user_created, diff({}, data.document), data)
    return {**_user_parameters(values), **event}


def _rehired(deleted: Sequence[UserRow], columns: dict[str, Any]) -> UserRow | None:
    """The deleted staff record a create restores (a re-hire), if any.

    Email is SimpleAMS's primary key: only a record with the same email is the
    same person (the most recently deleted one, if several). The same userName
    with another email, or with no email, is someone else: they get a new
    record, and the deleted one keeps its history and checkouts
    (docs/scim.md, "Users": re-hires).
    """
    email = columns["email_key"]
    same = [row for row in deleted if email and row.email_key == email]
    return max(same, key=lambda row: row.deleted_at) if same else None


async def _restore(
    conn: AsyncConnection,
    actor: Actor,
    previous: UserRow,
    data: UserInput,
    columns: dict[str, Any],
) -> UserRow:
    # Re-hire: same staff record (history and audit trail kept), new SCIM
    # resource id, so the old id keeps answering 404 (RFC 7644 §3.6).
    values = {**columns, "scim_id": uuid.uuid4(), "attributes": data.document}
    changes = diff(previous.attributes, data.document)
    # Always recorded: a deleted record had no access, and whether the re-hire
    # gets it back decides whether the mass-deprovision guard counts it as a
    # leaver (models/guard.py).
    changes["active"] = [False, bool(columns["active"])]
    if previous.role != Role.staff.value:
        changes["role"] = [previous.role, Role.staff.value]
    event = _event(actor, previous.id, EventKind.user_restored, changes, data)
    parameters = {**_user_parameters(values), "row_id": previous.id, **event}
    return await _write(conn, _RESTORE_USER, parameters)


async def replace(
    conn: AsyncConnection, actor: Actor, current: UserRow, data: UserInput
) -> UserRow:
    """Store a new version of a user (PUT, or PATCH after applying it)."""
    columns = indexed_columns(data.document)
    if data.document.get("active") is None:
        # Only an explicit active=true restores access. A PUT without
        # "active", or a PATCH removing it (RFC 7644 §3.5.2.2: the attribute
        # is gone from the resource), leaves access as it was.
        data.document.pop("active", None)
        columns["active"] = current.active
    changes = diff(current.attributes, data.document)
    if not changes:
        # Okta re-sends unchanged users; a no-op must not bump the version or
        # fan out side effects.
        note_unchanged(actor, data.ignored_attributes)
        return current
    kind = EventKind.user_updated
    if current.active and not columns["active"]:
        kind = EventKind.user_deactivated
    elif not current.active and columns["active"]:
        kind = EventKind.user_reactivated
    values = {**columns, "attributes": data.document}
    event = _event(actor, current.id, kind, changes, data)
    parameters = {**_user_parameters(values), "row_id": current.id, **event}
    row = await _write(conn, _REPLACE_USER, parameters)
    if kind is EventKind.user_deactivated:
        # A leaver's role follows their groups, whatever else set it (security review).
        await recompute_roles(conn, actor, [current.id])
    return row


def note_unchanged(actor: Actor, ignored_attributes: list[str]) -> None:
    """A write that changed nothing records no event; the attributes it
    carried that the type does not model are logged instead (names only)."""
    if ignored_attributes:
        log.info(
            "write changed nothing; ignored attributes request_id=%s names=%s",
            actor.request_id,
            ",".join(ignored_attributes),
        )


_LEAVE_GROUPS = delete(GroupMember).where(GroupMember.user_id == bindparam("row_id"))


async def mark_deleted(conn: AsyncConnection, actor: Actor, current: UserRow) -> None:
    """A DELETE from the IdP: deactivate and hide from SCIM; never remove the row."""
    changes = {"active": [current.active, False]} if current.active else {}
    event = _event(actor, current.id, EventKind.user_deleted, changes, None)
    await conn.execute(_MARK_DELETED, {"row_id": current.id, **event})
    # The IdP can no longer see this user, so no group may list them; a
    # re-hire (a new SCIM id) is added back to groups by the IdP. Without
    # groups, their role falls back to staff (an admin who is deleted is no
    # longer one).
    await conn.execute(_LEAVE_GROUPS, {"row_id": current.id})
    await recompute_roles(conn, actor, [current.id])


async def recompute_roles(
    conn: AsyncConnection, actor: Actor, user_ids: Collection[uuid.UUID]
) -> int:
    """Derive the roles of these users from their groups now (models/roles.py),
    recording a ``user.updated`` event for each role that changed."""
    if not user_ids:
        return 0
    lock, change = role_statements(actor.tenant_id, user_ids)
    await conn.execute(lock)
    changed = (await conn.execute(change)).all()
    if changed:
        await conn.execute(EVENT_INSERT, role_change_events(actor, changed))
    return len(changed)


async def _write(
    conn: AsyncConnection, statement: Any, parameters: dict[str, Any] | None = None
) -> UserRow:
    return (await _execute_write(conn, statement, parameters)).one()


async def _execute_write(
    conn: AsyncConnection, statement: Any, parameters: dict[str, Any] | None
) -> CursorResult[Any]:
    # A concurrent create of the same person passes the candidate lookup in
    # both transactions; the unique index stops the second. Translate it here,
    # at the boundary, into the 409 the IdP understands (the request's
    # transaction then rolls back as the error propagates).
    try:
        result: CursorResult[Any] = await conn.execute(statement, parameters)
        return result
    except IntegrityError as exc:
        refused = uniqueness_error(exc)
        if refused is None:
            raise
        raise refused from None


def _conflict_detail(existing: UserRow, columns: dict[str, Any]) -> str:
    if existing.user_name_key == columns["user_name_key"]:
        return (
            f"A user with userName {columns['user_name']!r} already exists in this workspace "
            f"(id {existing.scim_id}; userName is unique, case-insensitively). Look it up with "
            f'filter=userName eq "{columns["user_name"]}" and update it instead of creating it.'
        )
    return (
        f"Another user (id {existing.scim_id}, userName {existing.user_name!r}) already has the "
        f"email {columns['email']!r}; email is SimpleAMS's primary key and must be unique in "
        "the workspace. Give this user a different email or update the existing user."
    )


def _event(
    actor: Actor,
    user_id: uuid.UUID,
    kind: EventKind,
    changes: dict[str, Any],
    data: UserInput | None,
) -> dict[str, Any]:
    """The provisioning event a write carries (models.outbox.event_insert)."""
    return event_parameters(
        actor,
        kind,
        changes,
        user_id=user_id,
        ignored_attributes=data.ignored_attributes if data else None,
    )


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """What changed, attribute by attribute: ``{"name.givenName": [old, new]}``.

    Complex attributes (name, the enterprise extension) are compared one level
    down so the audit log says which part changed; lists compare whole.
    """
    changes: dict[str, list[Any]] = {}
    for key in sorted(set(before) | set(after)):
        if key == "schemas":
            continue
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) or isinstance(new, dict):
            old_dict, new_dict = old or {}, new or {}
            separator = ":" if key.startswith("urn:") else "."
            for sub in sorted(set(old_dict) | set(new_dict)):
                if old_dict.get(sub) != new_dict.get(sub):
                    changes[f"{key}{separator}{sub}"] = [old_dict.get(sub), new_dict.get(sub)]
        elif old != new:
            changes[key] = [old, new]
    return changes


class UserStorage(Storage):
    """Users, as the endpoints of every type see them (gateway/scim/endpoints.py)."""

    source = USERS
    patch_answers_resource = True

    def parse(self, body: Any, *, current: UserRow | None) -> UserInput:
        if current is None:
            return parse_user(body)
        return parse_user(body, replacing=True, stored=current.attributes)

    def parse_patch(self, body: Any) -> Any:
        return parse_patch(body)

    async def create_if_new(
        self, conn: AsyncConnection, who: Actor, data: UserInput
    ) -> UserRow | None:
        return await create_if_new(conn, who, data, idp_of(who.user_agent))

    async def create(self, conn: AsyncConnection, who: Actor, data: UserInput) -> UserRow:
        return await create(conn, who, data, idp_of(who.user_agent))

    async def replace(
        self, conn: AsyncConnection, who: Actor, current: UserRow, data: UserInput
    ) -> UserRow:
        return await replace(conn, who, current, data)

    async def patch(
        self, conn: AsyncConnection, who: Actor, current: UserRow, patch: Any
    ) -> UserRow:
        # CPU that grows with the PATCH (gateway/scim/limits.py): off the event loop.
        data = await run_in_threadpool(apply_patch, current.attributes, patch)
        return await replace(conn, who, current, data)

    async def delete(self, conn: AsyncConnection, who: Actor, current: UserRow) -> None:
        await mark_deleted(conn, who, current)

    async def render(
        self, conn: AsyncConnection, rows: list[UserRow], projection: Projection, url: str
    ) -> list[dict[str, Any]]:
        return [projection.apply(render_user(row, url)) for row in rows]


USER_STORAGE = UserStorage()
