"""Stored resources -> SCIM JSON: meta, ETag, projections, list responses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from scim2_models import Context, ResponseParameters, SCIMException

from gateway.scim import errors
from gateway.scim.resources import GROUP, USER, ResourceType
from gateway.scim.schema import POLICY

LIST_RESPONSE_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def etag(version: int) -> str:
    # RFC 7644 §3.14: weak, since two writes that change nothing visible
    # still bump the version.
    return f'W/"{version}"'


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def meta(resource: ResourceType, row: Any, scim_id: str, base_url: str) -> dict[str, str]:
    """RFC 7643 §3.1 ``meta`` of a stored resource (a row with created_at,
    updated_at and version); the version is also the response's ETag."""
    return {
        "resourceType": resource.name,
        "created": _timestamp(row.created_at),
        "lastModified": _timestamp(row.updated_at),
        "location": location(resource, scim_id, base_url),
        "version": etag(row.version),
    }


def location(resource: ResourceType, scim_id: str, base_url: str) -> str:
    """Where a resource lives (``meta.location``, a create's ``Location``)."""
    return f"{base_url}{resource.endpoint}/{scim_id}"


def render_user(row: Any, base_url: str) -> dict[str, Any]:
    """One user as RFC 7643 JSON; ``row`` has the users-table columns."""
    scim_id = str(row.scim_id)
    # schemas and id first: JSONB does not keep key order, people read these.
    resource = {"schemas": row.attributes.get("schemas"), "id": scim_id, **row.attributes}
    groups = getattr(row, "groups", None)  # absent from a create's row: no groups yet
    if groups:
        resource["groups"] = [
            {**group, "type": "direct", "$ref": f"{base_url}/Groups/{group['value']}"}
            for group in groups
        ]
    resource["meta"] = meta(USER, row, scim_id, base_url)
    return resource


def render_group(row: Any, members: orjson.Fragment | None, url: str) -> dict[str, Any]:
    """A group as SCIM JSON; ``members`` comes rendered (group_store.members_json)."""
    resource: dict[str, Any] = {"schemas": [GROUP.schema], "id": str(row.id)}
    if row.external_id is not None:
        resource["externalId"] = row.external_id
    resource["displayName"] = row.display_name
    if members is not None:
        resource["members"] = members
    resource["meta"] = meta(GROUP, row, str(row.id), url)
    return resource


class Projection:
    """RFC 7644 §3.9 ``attributes`` / ``excludedAttributes``, for any resource type.

    scim2-models reads the parameters against the type's schema and applies
    them, ``returned`` rules included (``id`` and ``schemas`` always; ``meta``
    only by default). A value rendered as an ``orjson.Fragment`` (a group's
    ``members``, built by PostgreSQL) is never parsed back: it is set aside,
    and put back when its attribute is wanted (its sub-attributes are not
    projected); ``wants`` tells an endpoint whether to load it at all.
    """

    def __init__(self, resource: ResourceType, attributes: Any, excluded: Any) -> None:
        self.resource = resource
        self.parameters: ResponseParameters[Any] | None = None
        if attributes or excluded:
            self.parameters = _parameters(resource, attributes, excluded)

    @property
    def given(self) -> bool:
        """Whether the request asked for a projection at all."""
        return self.parameters is not None

    def wants(self, attribute: str) -> bool:
        """Whether the response shows ``attribute`` (a top-level name)."""
        if self.parameters is None:
            return True
        name = attribute.lower()
        if self.parameters.attributes:
            return name in self._heads(self.parameters.attributes)
        return name not in self._heads(self.parameters.excluded_attributes or [])

    def apply(self, rendered: dict[str, Any]) -> dict[str, Any]:
        """Apply the projection; the common case (none) costs nothing."""
        if self.parameters is None:
            return rendered
        fragments = {k: v for k, v in rendered.items() if isinstance(v, orjson.Fragment)}
        plain = {k: v for k, v in rendered.items() if k not in fragments}
        with POLICY:
            model = self.resource.model.model_validate(plain, scim_ctx=Context.DEFAULT)
            projected: dict[str, Any] = model.model_dump(
                scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=self.parameters
            )
        for key, fragment in fragments.items():
            if self.wants(key):
                projected[key] = fragment
        return projected

    def _heads(self, paths: Any) -> set[str]:
        prefix = self.resource.prefix.lower()
        heads = set()
        for path in paths:
            name = str(path).lower()
            if name.startswith(prefix):
                name = name[len(prefix) :]
            heads.add(name.split(".")[0])
        return heads


def _parameters(resource: ResourceType, attributes: Any, excluded: Any) -> ResponseParameters[Any]:
    try:
        with POLICY:
            return ResponseParameters[resource.model].model_validate(  # type: ignore[name-defined]
                {"attributes": attributes or None, "excludedAttributes": excluded or None}
            )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise errors.InvalidValue(
            f"Invalid 'attributes' or 'excludedAttributes': {first.get('msg')}"
        ) from None
    except SCIMException as exc:
        raise errors.InvalidValue(
            f"Invalid 'attributes' or 'excludedAttributes': {exc.detail}"
        ) from None


def list_response(resources: list[dict[str, Any]], total: int, start_index: int) -> dict[str, Any]:
    return {
        "schemas": [LIST_RESPONSE_URN],
        "totalResults": total,
        "itemsPerPage": len(resources),
        "startIndex": start_index,
        "Resources": resources,
    }


def cursor_list_response(
    resources: list[dict[str, Any]], next_cursor: str | None, previous_cursor: str | None
) -> dict[str, Any]:
    """RFC 9865 §2: no startIndex, and totalResults is left out (counting every
    match would cost what cursors exist to avoid)."""
    body: dict[str, Any] = {
        "schemas": [LIST_RESPONSE_URN],
        "itemsPerPage": len(resources),
        "Resources": resources,
    }
    if next_cursor:
        body["nextCursor"] = next_cursor
    if previous_cursor:
        body["previousCursor"] = previous_cursor
    return body
