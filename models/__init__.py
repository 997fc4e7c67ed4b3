"""SimpleAMS provisioning data model. Depends on SQLAlchemy only."""

from models.base import Base
from models.outbox import EventKind, ProvisioningEvent, emit
from models.tenants import Plan, ScimCredential, Tenant
from models.users import Role, Source, User

__all__ = [
    "Base",
    "EventKind",
    "Plan",
    "ProvisioningEvent",
    "Role",
    "ScimCredential",
    "Source",
    "Tenant",
    "User",
    "emit",
]
