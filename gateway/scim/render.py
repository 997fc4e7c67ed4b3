"""Stored users -> SCIM JSON: meta, ETag, projections, list responses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from scim2_models import Context, ResponseParameters, SCIMException

from gateway.scim import errors
from gateway.scim.schema import POLICY, ScimUser, load_stored

LIST_RESPONSE_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def etag(version: int) -> str:
    # RFC 7644 §3.14: weak, since two writes that change nothing visible
    # still bump the version.
    return f'W/"{version}"'


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


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
    resource["meta"] = {
        "resourceType": "User",
        "created": _timestamp(row.created_at),
        "lastModified": _timestamp(row.updated_at),
        "location": f"{base_url}/Users/{scim_id}",
        "version": etag(row.version),
    }
    return resource


def parse_projection(
    attributes: str | list[str] | None, excluded: str | list[str] | None
) -> ResponseParameters[ScimUser] | None:
    """RFC 7644 §3.9 ``attributes`` / ``excludedAttributes``; None when neither is given."""
    if not attributes and not excluded:
        return None
    try:
        with POLICY:
            return ResponseParameters[ScimUser].model_validate(
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


def project(
    resource: dict[str, Any], projection: ResponseParameters[ScimUser] | None
) -> dict[str, Any]:
    """Apply a projection; the common case (none) costs nothing."""
    if projection is None:
        return resource
    with POLICY:
        user = load_stored(resource)
        return user.model_dump(
            scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=projection
        )


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
