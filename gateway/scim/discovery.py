"""Discovery (RFC 7644 §4): what we advertise is exactly what works.

/ResourceTypes and /Schemas are derived from the resource type descriptors
(gateway/scim/resources.py), as the OpenAPI description is
(gateway/scim/openapi.py): one document per descriptor in ``RESOURCE_TYPES``,
its schemas those of its scim2-models class and extensions. Password changes
are never supported (SimpleAMS users sign in through SSO), so they are
advertised as unsupported.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from scim2_models import Context, ServiceProviderConfig
from scim2_models import ResourceType as ScimResourceType
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.scim import errors
from gateway.scim.bulk import MAX_OPERATIONS
from gateway.scim.context import base_url
from gateway.scim.http import scim_json
from gateway.scim.limits import MAX_PATCH_OPERATIONS, MAX_PATCH_VALUES, MAX_VALUES
from gateway.scim.listing import DEFAULT_COUNT, MAX_RESULTS
from gateway.scim.render import list_response
from gateway.scim.resources import GROUP, RESOURCE_TYPES, USER, ResourceType

# The resource types served, in the order /ResourceTypes and the OpenAPI paths list them.
_BY_NAME = {resource.name: resource for resource in RESOURCE_TYPES}

# What /ResourceTypes/{name} says a resource type is, for an admin reading it.
_DESCRIPTIONS = {
    USER: "SimpleAMS staff member.",
    GROUP: "An identity provider group (Okta Push Groups, Entra groups)",
}
# The types whose PATCHes and multi-valued attributes gateway/scim/limits.py
# bounds; the bounds are advertised in their resource type and schemas. Group
# membership is stored and patched separately and is not bounded.
_BOUNDED = frozenset({USER})

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
    for resource in RESOURCE_TYPES:
        for model in (resource.model, *resource.extensions):
            schema = model.to_schema().model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
            if resource in _BOUNDED:
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


@cache
def _resource_type_document(resource: ResourceType) -> dict[str, Any]:
    """The RFC 7643 §6 document of one resource type, without its meta."""
    description = _DESCRIPTIONS[resource]
    if resource in _BOUNDED:
        description += (
            f" A PATCH holds at most {MAX_PATCH_OPERATIONS} operations carrying at most "
            f"{MAX_PATCH_VALUES} values of multi-valued attributes."
        )
    document = ScimResourceType.model_validate(
        {
            "id": resource.name,
            "name": resource.name,
            "description": description,
            "endpoint": resource.endpoint,
            "schema": resource.schema,
            "schemaExtensions": [
                {"schema": str(extension.__schema__), "required": False}
                for extension in resource.extensions
            ],
        }
    )
    return document.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)


def _with_meta(resource: dict[str, Any], resource_type: str, location: str) -> dict[str, Any]:
    return {**resource, "meta": {"resourceType": resource_type, "location": location}}


async def service_provider_config(request: Request) -> Response:
    url = f"{base_url(request)}/ServiceProviderConfig"
    config = _service_provider_config(request.app.state.settings.max_body_bytes)
    return scim_json(_with_meta(config, "ServiceProviderConfig", url))


async def resource_types(request: Request) -> Response:
    resources = [_resource_type(request, resource) for resource in RESOURCE_TYPES]
    return scim_json(list_response(resources, len(resources), 1))


async def resource_type(request: Request) -> Response:
    name = request.path_params["name"]
    resource = _BY_NAME.get(name)
    if resource is None:
        served = " and ".join(repr(r.name) for r in RESOURCE_TYPES)
        raise errors.NotFound(f"No resource type {name!r}; this service serves {served}.")
    return scim_json(_resource_type(request, resource))


def _resource_type(request: Request, resource: ResourceType) -> dict[str, Any]:
    url = f"{base_url(request)}/ResourceTypes/{resource.name}"
    return _with_meta(_resource_type_document(resource), "ResourceType", url)


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
