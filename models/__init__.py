"""SimpleAMS provisioning data model. Depends on SQLAlchemy only."""

from models.admins import Admin, AdminSession
from models.audit import AuditEntry
from models.base import Base
from models.checkouts import Asset, Checkout
from models.groups import Group, GroupMember
from models.notifications import DigestItem, Notification, NotificationKind
from models.outbox import (
    EVENT_INSERT,
    Actor,
    Effect,
    EventKind,
    ProvisioningEvent,
    RunStatus,
    SideEffectRun,
    event_insert,
    event_parameters,
)
from models.roles import RoleMapping
from models.tenants import Plan, ScimCredential, Tenant
from models.users import LiveUserCount, Role, Source, User

__all__ = [
    "EVENT_INSERT",
    "Actor",
    "Admin",
    "AdminSession",
    "Asset",
    "AuditEntry",
    "Base",
    "Checkout",
    "DigestItem",
    "Effect",
    "EventKind",
    "Group",
    "GroupMember",
    "LiveUserCount",
    "Notification",
    "NotificationKind",
    "Plan",
    "ProvisioningEvent",
    "Role",
    "RoleMapping",
    "RunStatus",
    "ScimCredential",
    "SideEffectRun",
    "Source",
    "Tenant",
    "User",
    "event_insert",
    "event_parameters",
]
