"""The SCIM resource types, each described once: where every attribute lives.

A :class:`ResourceType` holds what the shared parts of the SCIM API need to
know of Users or Groups: the scim2-models class (validation, /Schemas and
attribute binding in filters), the table and its SCIM id column, the columns
an attribute is read from, with their folded keys for caseExact=false text
(models/text.py), the folded JSON document for everything else (users only),
and the multi-valued attributes stored as rows of another table (a group's
members, a user's groups). The filter compiler and sortBy (filters.py) take
a descriptor and have no user copy or group copy.

Where a filter reads an attribute, in this order:

1. ``meta.resourceType``: the type's name, a constant;
2. ``columns``: indexed columns; caseExact=false text through ``keys``;
3. ``relations``: a multi-valued attribute kept in another table, each
   sub-attribute a column of the related row;
4. ``document``: the folded copy of the stored SCIM document (``users.folded``),
   multi-valued attributes element by element.

An attribute found in none of them (``members.display``) cannot be filtered
on; the 400 lists those that can (:meth:`ResourceType.filter_attributes`).

Adding an attribute: docs/architecture.md, "Adding an attribute".
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, cast

from scim2_models import Attribute, CaseExact, Resource
from scim2_models import Group as ScimGroup
from scim2_models.path import AttributeBinding
from sqlalchemy import ColumnElement, Table, literal, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError

from gateway.scim import errors
from gateway.scim.schema import CORE_USER_URN, EnterpriseUser, ScimUser
from models.groups import Group, GroupMember
from models.text import Path
from models.users import User

GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
# JSONB constants bound as JSON values (a cast of a Python string would bind a JSON string).
EMPTY_ARRAY = literal([], JSONB)

# RFC 7643 §3.1: the common attributes every resource type can be filtered on.
COMMON_FILTER_ATTRIBUTES = (
    "id",
    "externalId",
    "meta.created",
    "meta.lastModified",
    "meta.resourceType",
)


def parse_id(value: Any) -> uuid.UUID | None:
    """The SCIM id a client names, or None when it is not one we issued.

    RFC 7643 §3.1: an id is caseExact, and ours are UUIDs in their canonical
    lowercase form; another spelling of the same UUID (upper case, no dashes,
    ``urn:uuid:…``) is not our id. Every endpoint, member list and filter
    reads ids through here, for every resource type.
    """
    if not isinstance(value, str):
        return None
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return None
    return parsed if str(parsed) == value else None


@dataclass(frozen=True)
class Relation:
    """A multi-valued attribute stored as rows of another table.

    :param columns: sub-attribute (lowercase) -> the related row's column a
        filter compares, already folded where the sub-attribute is caseExact=false.
    :param exists: "some related row satisfies this condition", correlated
        with the resource's own row.
    """

    columns: Mapping[str, ColumnElement[Any]]
    exists: Callable[[ColumnElement[bool]], ColumnElement[bool]]


@dataclass(frozen=True, eq=False)  # one instance per type: hashed by identity
class ResourceType:
    """One SCIM resource type (RFC 7643 §6) and where its attributes live.

    :param columns: lowercase dotted name -> column, as stored.
    :param keys: lowercase dotted name -> the folded key of a caseExact=false
        text column (what comparisons and uniqueness use).
    :param document: the folded JSON document, or None when every filterable
        attribute is a column or a relation.
    :param array_keys: lowercase dotted name -> an indexed array of folded
        values, for ``eq`` on one sub-attribute of a multi-valued attribute.
    """

    name: str
    endpoint: str
    schema: str
    model: type[Resource[Any]]
    extensions: tuple[type[Any], ...]
    table: Table
    id_column: ColumnElement[Any]
    columns: Mapping[str, ColumnElement[Any]]
    keys: Mapping[str, ColumnElement[Any]]
    document: ColumnElement[Any] | None = None
    relations: Mapping[str, Relation] = field(default_factory=dict)
    array_keys: Mapping[str, ColumnElement[Any]] = field(default_factory=dict)
    # Unique index -> the 409 detail when a write breaks it (uniqueness_error).
    unique: Mapping[str, str] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return self.schema + ":"

    def dotted(self, binding: AttributeBinding) -> str:
        """The attribute's name, lowercase: ``name.givenname`` for the core
        schema, the full URN path for an extension's."""
        urn = binding.urn
        if urn.lower().startswith(self.prefix.lower()):
            return urn[len(self.prefix) :].lower()
        return urn.lower()

    def head(self, binding: AttributeBinding) -> str:
        """The dotted name without its sub-attribute."""
        dotted = self.dotted(binding)
        return dotted.rsplit(".", 1)[0] if binding.sub_field_name else dotted

    def json_keys(self, binding: AttributeBinding) -> list[str]:
        """JSON keys from the document root to the head attribute (no sub-attribute)."""
        urn = binding.urn
        if urn.lower().startswith(self.prefix.lower()):
            return [urn[len(self.prefix) :].split(".", 1)[0]]
        schema, _, attr = urn.rpartition(":")
        return [schema, attr.split(".", 1)[0]]

    def json_at(self, keys: list[str]) -> Any:
        if self.document is None:
            raise LookupError("no document")
        expression: Any = self.document
        for key in keys:
            expression = expression[key]
        return expression

    def is_stored(self, dotted: str) -> bool:
        """Whether a filter can read the attribute (see the module docstring)."""
        if dotted == "meta.resourcetype" or dotted in self.columns:
            return True
        head, _, sub = dotted.partition(".")
        if head in self.relations:
            return not sub or sub in self.relations[head].columns
        if dotted.startswith("meta."):
            return False  # meta.location, meta.version: not stored as such
        return self.document is not None

    @cached_property
    def schema_attributes(self) -> tuple[str, ...]:
        """Every attribute and sub-attribute path of the type's schemas, extension
        ones fully qualified."""
        paths: list[str] = []
        for model in (self.model, *self.extensions):
            prefix = "" if model is self.model else f"{model.__schema__}:"
            for attribute in model.to_schema().attributes or []:
                paths.append(f"{prefix}{attribute.name}")
                for sub in attribute.sub_attributes or []:
                    paths.append(f"{prefix}{attribute.name}.{sub.name}")
        return tuple(paths)

    @cached_property
    def filter_attributes(self) -> tuple[str, ...]:
        """Every attribute path a filter on this type accepts."""
        paths = [*COMMON_FILTER_ATTRIBUTES, *self.schema_attributes]
        return tuple(path for path in paths if self.is_stored(path.lower()))

    @cached_property
    def case_exact(self) -> frozenset[Path]:
        """The caseExact=true string paths of a stored document (models/text.fold_document)."""
        found: set[Path] = {("schemas",), ("externalid",)}
        for model in (self.model, *self.extensions):
            base: Path = () if model is self.model else (str(model.__schema__).lower(),)
            for attribute in model.to_schema().attributes or []:
                name = (*base, str(attribute.name).lower())
                if _exact_text(attribute):
                    found.add(name)
                for sub in attribute.sub_attributes or []:
                    if _exact_text(sub):
                        found.add((*name, str(sub.name).lower()))
        return frozenset(found)


def _exact_text(attribute: Attribute) -> bool:
    return attribute.case_exact == CaseExact.true and attribute.type in (
        Attribute.Type.string,
        Attribute.Type.reference,
        Attribute.Type.binary,
    )


users = cast("Table", User.__table__)
groups = cast("Table", Group.__table__)
members = cast("Table", GroupMember.__table__)


def _user_is_member(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """Some live member of the group satisfies ``condition`` (on ``users``)."""
    return (
        select(literal(1))
        .select_from(members)
        .join(users, users.c.id == members.c.user_id)
        .where(members.c.group_id == groups.c.id, users.c.deleted_at.is_(None), condition)
        .correlate(groups)
        .exists()
    )


def _group_of_user(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """Some group the user is a member of satisfies ``condition`` (on ``groups``)."""
    return (
        select(literal(1))
        .select_from(members)
        .join(groups, groups.c.id == members.c.group_id)
        .where(members.c.user_id == users.c.id, condition)
        .correlate(users)
        .exists()
    )


USER = ResourceType(
    name="User",
    endpoint="/Users",
    schema=CORE_USER_URN,
    model=ScimUser,
    extensions=(EnterpriseUser,),
    table=users,
    id_column=users.c.scim_id,
    columns={
        "id": users.c.scim_id,
        "username": users.c.user_name,
        "externalid": users.c.external_id,
        "active": users.c.active,
        "meta.created": users.c.created_at,
        "meta.lastmodified": users.c.updated_at,
    },
    keys={"username": users.c.user_name_key},
    document=users.c.folded,
    unique={
        "uq_users_tenant_username": "Another user in this workspace already has this userName "
        "(userNames are unique, case-insensitively).",
        "uq_users_tenant_email": "Another user in this workspace already has this email address "
        "(emails are unique, case-insensitively).",
    },
    # Entra's `emails eq "x"`: the GIN-indexed array of folded addresses.
    array_keys={"emails.value": users.c.email_values},
    relations={
        # The read-only groups attribute (RFC 7643 §4.1.2) is derived from the
        # membership table, not stored in the document.
        "groups": Relation(
            columns={"value": groups.c.id, "display": groups.c.display_name_key},
            exists=_group_of_user,
        )
    },
)

GROUP = ResourceType(
    name="Group",
    endpoint="/Groups",
    schema=GROUP_URN,
    model=ScimGroup,
    extensions=(),
    table=groups,
    id_column=groups.c.id,
    columns={
        "id": groups.c.id,
        "displayname": groups.c.display_name,
        "externalid": groups.c.external_id,
        "meta.created": groups.c.created_at,
        "meta.lastmodified": groups.c.updated_at,
    },
    keys={"displayname": groups.c.display_name_key},
    unique={
        "uq_groups_tenant_display_name": "Another group in this workspace already has this "
        "displayName (group names are unique, case-insensitively). Look it up with "
        'filter=displayName eq "…" and update it instead.',
    },
    relations={"members": Relation(columns={"value": users.c.scim_id}, exists=_user_is_member)},
)

# Every resource type the API serves, in the order discovery lists them.
RESOURCE_TYPES: tuple[ResourceType, ...] = (USER, GROUP)


def uniqueness_error(exc: IntegrityError) -> errors.Uniqueness | None:
    """The 409 for a write a unique index refused, or None for any other
    integrity error. A concurrent create of the same name passes every lookup
    in both transactions; the index stops the second, and this is the one
    place that says so to the IdP, for every resource type."""
    constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None) or ""
    for resource in RESOURCE_TYPES:
        if constraint in resource.unique:
            return errors.Uniqueness(resource.unique[constraint])
    return None
