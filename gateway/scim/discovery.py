"""Discovery (RFC 7644 §4): what we advertise is exactly what works.

Two resource types, User and Group. Password changes are never supported
(SimpleAMS users sign in through SSO), so they are advertised as unsupported.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from scim2_models import Context, Group, ResourceType, ServiceProviderConfig
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.scim import errors
from gateway.scim.bulk import MAX_OPERATIONS
from gateway.scim.group_requests import GROUP_URN
from gateway.scim.http import base_url, scim_json
from gateway.scim.limits import MAX_PATCH_OPERATIONS, MAX_PATCH_VALUES, MAX_VALUES
from gateway.scim.render import list_response
from gateway.scim.schema import CORE_USER_URN, ENTERPRISE_URN, EnterpriseUser, ScimUser
from gateway.scim.users import DEFAULT_COUNT, MAX_RESULTS

DOCUMENTATION = "https://simpleams.co.uk/help/scim"


@cache
def _service_provider_config(max_payload_size: int) -> dict[str, Any]:
    config = ServiceProviderConfig.model_validate(
        {
            "documentationUri": DOCUMENTATION,
            "patch": {"supported": True},
            "bulk": {
                "supported": True,
                "maxOperations": MAX_OPERATIONS,
                "maxPayloadSize": max_payload_size,
            },
            "filter": {"supported": True, "maxResults": MAX_RESULTS},
            "changePassword": {"supported": False},
            "sort": {"supported": True},
            # RFC 9865 §4: both methods; startIndex stays the default for Okta and Entra.
            "pagination": {
                "cursor": True,
                "index": True,
                "defaultPaginationMethod": "index",
                "defaultPageSize": DEFAULT_COUNT,
                "maxPageSize": MAX_RESULTS,
            },
            "etag": {"supported": True},
            "authenticationSchemes": [
                {
                    "type": "oauthbearertoken",
                    "name": "OAuth Bearer Token",
                    "description": (
                        "The bearer token generated in SimpleAMS Settings → Integrations → "
                        "SCIM 2.0."
                    ),
                    "specUri": "https://www.rfc-editor.org/rfc/rfc6750",
                    "documentationUri": DOCUMENTATION,
                    "primary": True,
                }
            ],
        }
    )
    return config.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)


@cache
def _schemas() -> dict[str, dict[str, Any]]:
    schemas = {}
    for model in (ScimUser, EnterpriseUser, Group):
        schema = model.to_schema().model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
        if model is not Group:  # group members are not bounded (gateway/scim/limits.py)
            _advertise_value_limit(schema)
        schemas[schema["id"]] = schema
    return schemas


def _advertise_value_limit(schema: dict[str, Any]) -> None:
    """Say in each multi-valued attribute's description how many values it takes:
    RFC 7643 §7 has no field for it, and the description is what an admin reads."""
    for attribute in schema.get("attributes", []):
        if attribute.get("multiValued") and attribute.get("mutability") != "readOnly":
            limit = f"At most {MAX_VALUES} values."
            described = (attribute.get("description") or "").rstrip()
            attribute["description"] = f"{described} {limit}".strip()


def _user_resource_type() -> dict[str, Any]:
    resource_type = ResourceType.model_validate(
        {
            "id": "User",
            "name": "User",
            "description": (
                f"SimpleAMS staff member. A PATCH holds at most {MAX_PATCH_OPERATIONS} "
                f"operations carrying at most {MAX_PATCH_VALUES} values of multi-valued "
                "attributes."
            ),
            "endpoint": "/Users",
            "schema": CORE_USER_URN,
            "schemaExtensions": [{"schema": ENTERPRISE_URN, "required": False}],
        }
    )
    return resource_type.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)


def _group_resource_type() -> dict[str, Any]:
    resource_type = ResourceType.model_validate(
        {
            "id": "Group",
            "name": "Group",
            "description": "An identity provider group (Okta Push Groups, Entra groups)",
            "endpoint": "/Groups",
            "schema": GROUP_URN,
        }
    )
    return resource_type.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)


RESOURCE_TYPES = {"User": _user_resource_type, "Group": _group_resource_type}


def _with_meta(resource: dict[str, Any], resource_type: str, location: str) -> dict[str, Any]:
    return {**resource, "meta": {"resourceType": resource_type, "location": location}}


async def service_provider_config(request: Request) -> Response:
    url = f"{base_url(request)}/ServiceProviderConfig"
    config = _service_provider_config(request.app.state.settings.max_body_bytes)
    return scim_json(_with_meta(config, "ServiceProviderConfig", url))


async def resource_types(request: Request) -> Response:
    resources = [_resource_type(request, name) for name in RESOURCE_TYPES]
    return scim_json(list_response(resources, len(resources), 1))


async def resource_type(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in RESOURCE_TYPES:
        raise errors.NotFound(f"No resource type {name!r}; this service serves 'User' and 'Group'.")
    return scim_json(_resource_type(request, name))


def _resource_type(request: Request, name: str) -> dict[str, Any]:
    return _with_meta(
        RESOURCE_TYPES[name](), "ResourceType", f"{base_url(request)}/ResourceTypes/{name}"
    )


async def schemas(request: Request) -> Response:
    url = base_url(request)
    resources = [_with_meta(s, "Schema", f"{url}/Schemas/{urn}") for urn, s in _schemas().items()]
    return scim_json(list_response(resources, len(resources), 1))


async def schema(request: Request) -> Response:
    urn = request.path_params["urn"]
    found = _schemas().get(urn)
    if found is None:
        raise errors.NotFound(f"No schema {urn!r}; see /Schemas for the ones this service uses.")
    return scim_json(_with_meta(found, "Schema", f"{base_url(request)}/Schemas/{urn}"))


routes = [
    Route("/ServiceProviderConfig", service_provider_config, methods=["GET"]),
    Route("/ResourceTypes", resource_types, methods=["GET"]),
    Route("/ResourceTypes/{name}", resource_type, methods=["GET"]),
    Route("/Schemas", schemas, methods=["GET"]),
    Route("/Schemas/{urn}", schema, methods=["GET"]),
]
