"""Role mappings, the operator's side: ``simpleams roles map|unmap|list``.

Synchronous (the CLI). Mapping or unmapping a group name recomputes the
roles of that group's members at once, in the same transaction, and records
each change as an event (models/roles.py), so the audit log says who became
an admin and when.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from gateway.tenancy import OperatorError, tenant_id_for
from models.groups import Group, GroupMember
from models.outbox import EVENT_INSERT, Actor
from models.roles import RoleMapping, role_change_events, role_statements
from models.text import fold
from models.users import Role

CLI = "simpleams roles"


def map_group(conn: Connection, slug: str, group_name: str, role: str, via: str = CLI) -> int:
    """Map an IdP group name to a role; returns how many users' roles changed."""
    if role not in {r.value for r in Role}:
        raise OperatorError(
            f"{role!r} is not a role: use one of {', '.join(r.value for r in Role)}."
        )
    name = group_name.strip()
    if not name:
        raise OperatorError("The group name is empty.")
    tenant_id = tenant_id_for(conn, slug)
    statement = pg_insert(RoleMapping).values(
        tenant_id=tenant_id, group_key=fold(name), group_name=name, role=role
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[RoleMapping.tenant_id, RoleMapping.group_key],
            set_={"group_name": name, "role": role, "updated_at": func.now()},
        )
    )
    return _recompute_group(conn, tenant_id, fold(name), via)


def unmap_group(conn: Connection, slug: str, group_name: str, via: str = CLI) -> int:
    """Remove a mapping; its members fall back to their other groups' role, or staff."""
    tenant_id = tenant_id_for(conn, slug)
    key = fold(group_name.strip())
    removed = conn.execute(
        delete(RoleMapping)
        .where(RoleMapping.tenant_id == tenant_id, RoleMapping.group_key == key)
        .returning(RoleMapping.group_key)
    ).first()
    if removed is None:
        raise OperatorError(f"No role mapping for a group named {group_name!r} in {slug!r}.")
    return _recompute_group(conn, tenant_id, key, via)


def list_mappings(conn: Connection, slug: str) -> list[Any]:
    """(group name, role, members now) for each mapping, by group name."""
    tenant_id = tenant_id_for(conn, slug)
    members = (
        select(func.count())
        .select_from(GroupMember)
        .join(Group, Group.id == GroupMember.group_id)
        .where(Group.tenant_id == tenant_id, Group.display_name_key == RoleMapping.group_key)
        .scalar_subquery()
    )
    return list(
        conn.execute(
            select(RoleMapping.group_name, RoleMapping.role, members.label("members"))
            .where(RoleMapping.tenant_id == tenant_id)
            .order_by(RoleMapping.group_key)
        )
    )


def _recompute_group(conn: Connection, tenant_id: uuid.UUID, key: str, via: str) -> int:
    user_ids = (
        conn.execute(
            select(GroupMember.user_id)
            .join(Group, Group.id == GroupMember.group_id)
            .where(Group.tenant_id == tenant_id, Group.display_name_key == key)
        )
        .scalars()
        .all()
    )
    if not user_ids:
        return 0
    lock, change = role_statements(tenant_id, user_ids)
    conn.execute(lock)
    changed = conn.execute(change).all()
    if changed:
        conn.execute(EVENT_INSERT, role_change_events(Actor.operator(tenant_id, via), changed))
    return len(changed)
