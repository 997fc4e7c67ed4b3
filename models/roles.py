"""Roles from IdP groups: a tenant maps group names to SimpleAMS roles.

``simpleams roles map acme "SimpleAMS Admins" admin``: members of the IdP
group named so (case-insensitively) are admins; everyone else is ``staff``.
A mapping is by name, so it can be made before the IdP pushes the group, and
survives the group being deleted and pushed again.

A user's role is *derived*: ``role_statements`` recompute it for the users a
change touched (the members who joined or left a group, every member of a
renamed or deleted group, every member of a group whose mapping changed), so
its cost follows the change. Each role that changes is recorded as a
``user.updated`` event (``{"role": [before, after]}``): audited, and the
admins are told when someone becomes an admin (workers/notify.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ForeignKey,
    Select,
    String,
    Text,
    Update,
    and_,
    case,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at
from models.groups import Group, GroupMember
from models.outbox import Actor, EventKind, event_parameters
from models.users import Role, User

# When a user is in groups mapped to different roles, the highest wins.
ROLE_ORDER = (Role.admin, Role.staff)


class RoleMapping(Base):
    __tablename__ = "role_mappings"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    # The folded group name (models/text.py): how groups are matched, by their
    # display_name_key (display names are unique case-insensitively, models/groups.py).
    group_key: Mapped[str] = mapped_column(Text, primary_key=True)
    group_name: Mapped[str] = mapped_column(String(256))  # as the admin typed it
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[created_at]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


def _mapped_to(role: Role) -> Any:
    """The current user is in a group mapped to ``role``."""
    return (
        select(literal(1))
        .select_from(GroupMember)
        .join(Group, Group.id == GroupMember.group_id)
        .join(
            RoleMapping,
            and_(
                RoleMapping.tenant_id == Group.tenant_id,
                RoleMapping.group_key == Group.display_name_key,
            ),
        )
        .where(GroupMember.user_id == User.id, RoleMapping.role == role.value)
        .exists()
    )


def role_statements(
    tenant_id: uuid.UUID, user_ids: Collection[uuid.UUID]
) -> tuple[Select[Any], Update]:
    """Two statements to run in order in the changing transaction: lock the
    users, then set each one's role from their groups now.

    The lock comes first, in a statement of its own: two transactions that
    change the groups of one user then compute their roles one after the
    other, the second seeing the first's committed memberships (READ
    COMMITTED takes a new snapshot per statement). The update returns
    ``(id, before, after)`` for the users whose role changed.
    """
    ids = sorted(set(user_ids))
    lock = (
        select(User.id)
        .where(User.tenant_id == tenant_id, User.id.in_(ids))
        .order_by(User.id)
        .with_for_update(key_share=True)
    )
    derived = case(
        *((_mapped_to(role), role.value) for role in ROLE_ORDER if role is not Role.staff),
        else_=Role.staff.value,
    )
    derived_roles = (
        select(User.id, User.role.label("before"), derived.label("after"))
        .where(User.tenant_id == tenant_id, User.id.in_(ids))
        .subquery("now")
    )
    change = (
        update(User)
        .where(User.id == derived_roles.c.id, User.role != derived_roles.c.after)
        .values(role=derived_roles.c.after)
        .returning(User.id, derived_roles.c.before, derived_roles.c.after)
    )
    return lock, change


def role_change_events(actor: Actor, changed: Collection[Any]) -> list[dict[str, Any]]:
    """The ``user.updated`` events of role changes (rows of role_statements'
    change: id, before, after), for ``models.outbox.EVENT_INSERT``."""
    return [
        event_parameters(
            actor, EventKind.user_updated, {"role": [row.before, row.after]}, user_id=row.id
        )
        for row in changed
    ]
