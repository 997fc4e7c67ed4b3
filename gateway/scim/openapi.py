"""An OpenAPI 3.0 description of the SCIM API, served at /scim/v2/openapi.json.

For people wiring an IdP or writing a client, and for schemathesis, which
fuzzes the gateway against it in the test suite. It describes what the
gateway accepts and answers; RFC 7643/7644 and /Schemas remain the
authority on attribute semantics.

Each resource type's paths and body schemas come from the same
descriptors as /ResourceTypes and /Schemas (gateway/scim/resources.py):
one set of path items per type's endpoints (:func:`resource_paths`), and
schema components built from its scim2-models schema (:func:`resource_schema`)
and named after the type (``User`` for requests, ``UserResource`` for answers).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from scim2_models import Attribute, Mutability, Required
from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.scim.endpoints import RESOURCE_ENDPOINTS, Endpoints
from gateway.scim.resources import GROUP, RESOURCE_TYPES, USER, ResourceType

SCIM = "application/scim+json"


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {SCIM: {"schema": schema}, "application/json": {"schema": schema}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {SCIM: {"schema": _ref("Error")}}}


_WRITE_ERRORS = {
    "413": _error("The request body is larger than the limit"),
    "415": _error("The body is not application/scim+json or application/json"),
}
_ERRORS = {
    "400": _error("Invalid request (scimType says why)"),
    "401": _error("Missing or invalid bearer token"),
    "403": _error("SCIM is not included in the workspace's plan"),
    "429": _error("Too many failed authentications from this address"),
    "503": _error("Database temporarily unavailable; retry after Retry-After"),
}

_LIST_PARAMETERS = [
    {"name": "filter", "in": "query", "schema": {"type": "string"}},
    {"name": "startIndex", "in": "query", "schema": {"type": "integer"}},
    # RFC 9865: empty for the first page, then a nextCursor / previousCursor.
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
    {"name": "count", "in": "query", "schema": {"type": "integer"}},
    {"name": "sortBy", "in": "query", "schema": {"type": "string"}},
    {
        "name": "sortOrder",
        "in": "query",
        "schema": {"type": "string", "enum": ["ascending", "descending"]},
    },
]
_PROJECTION = [
    {"name": "attributes", "in": "query", "schema": {"type": "string"}},
    {"name": "excludedAttributes", "in": "query", "schema": {"type": "string"}},
]
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_IF_MATCH = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}}

_STRING = {"type": "string"}
# SCIM attribute types (RFC 7643 §2.3) -> JSON Schema.
_TYPES: dict[str, dict[str, Any]] = {
    "string": _STRING,
    "reference": _STRING,
    "binary": _STRING,
    "dateTime": {"type": "string", "format": "date-time"},
    "boolean": {"type": "boolean"},
    "integer": {"type": "integer"},
    "decimal": {"type": "number"},
}


def resource_schema(resource: ResourceType) -> dict[str, Any]:
    """A resource type's body as JSON Schema, from the schemas /Schemas serves
    (its scim2-models class and extensions), so the two cannot disagree."""
    properties: dict[str, Any] = {
        "schemas": {"type": "array", "items": _STRING},
        "id": {**_STRING, "readOnly": True},
        "externalId": _STRING,
    }
    attributes = resource.model.to_schema().attributes or []
    properties |= {str(attribute.name): _attribute_schema(attribute) for attribute in attributes}
    for extension in resource.extensions:
        properties[str(extension.__schema__)] = _object(extension.to_schema().attributes or [])
    properties["meta"] = {"type": "object", "readOnly": True}
    required = [str(attribute.name) for attribute in attributes if _required(attribute)]
    return {"type": "object", "required": required, "properties": properties}


def _attribute_schema(attribute: Attribute) -> dict[str, Any]:
    kind = attribute.type.value if attribute.type else "string"
    schema = _object(attribute.sub_attributes or []) if kind == "complex" else dict(_TYPES[kind])
    if attribute.multi_valued:
        schema = {"type": "array", "items": schema}
    if attribute.mutability is Mutability.read_only:
        schema["readOnly"] = True
    elif attribute.mutability is Mutability.write_only:
        schema["writeOnly"] = True
    return schema


def _object(attributes: list[Attribute]) -> dict[str, Any]:
    # "$ref" (a sub-attribute of members, groups, manager) is left out: a
    # property of that name reads as a JSON reference to OpenAPI tools.
    named = [attribute for attribute in attributes if attribute.name != "$ref"]
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {str(attribute.name): _attribute_schema(attribute) for attribute in named},
    }
    required = [str(attribute.name) for attribute in named if _required(attribute)]
    if required:
        schema["required"] = required
    return schema


def _required(attribute: Attribute) -> bool:
    return attribute.required is Required.true


_SCHEMAS: dict[str, Any] = {
    "PatchOp": {
        "type": "object",
        "required": ["Operations"],
        "properties": {
            "schemas": {"type": "array", "items": _STRING},
            "Operations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["op"],
                    "properties": {
                        "op": {"type": "string", "enum": ["add", "replace", "remove"]},
                        "path": _STRING,
                        "value": {},
                    },
                },
            },
        },
    },
    "SearchRequest": {
        "type": "object",
        "properties": {
            "schemas": {"type": "array", "items": _STRING},
            "filter": _STRING,
            "startIndex": {"type": "integer"},
            "cursor": _STRING,
            "count": {"type": "integer"},
            "sortBy": _STRING,
            "sortOrder": {"type": "string", "enum": ["ascending", "descending"]},
            "attributes": {"type": "array", "items": _STRING},
            "excludedAttributes": {"type": "array", "items": _STRING},
        },
    },
    "ListResponse": {
        "type": "object",
        # totalResults is left out of cursor pages (RFC 9865 §2).
        "required": ["schemas", "Resources"],
        "properties": {
            "schemas": {"type": "array", "items": _STRING},
            "totalResults": {"type": "integer", "minimum": 0},
            "itemsPerPage": {"type": "integer", "minimum": 0},
            "startIndex": {"type": "integer", "minimum": 1},
            "nextCursor": {"type": "string", "pattern": "^[A-Za-z0-9._~-]+$"},
            "previousCursor": {"type": "string", "pattern": "^[A-Za-z0-9._~-]+$"},
            "Resources": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Error": {
        "type": "object",
        "required": ["schemas", "status", "detail"],
        "properties": {
            "schemas": {"type": "array", "items": _STRING},
            "status": _STRING,
            "scimType": _STRING,
            "detail": _STRING,
        },
    },
}


_SCHEMAS["BulkRequest"] = {
    "type": "object",
    "required": ["Operations"],
    "properties": {
        "schemas": {"type": "array", "items": _STRING},
        "failOnErrors": {"type": "integer", "minimum": 1},
        "Operations": {
            "type": "array",
            "maxItems": 1000,
            "items": {
                "type": "object",
                "required": ["method", "path"],
                "properties": {
                    "method": {"type": "string", "enum": ["POST", "PUT", "PATCH", "DELETE"]},
                    "bulkId": _STRING,
                    "version": _STRING,
                    "path": _STRING,
                    "data": {"type": "object"},
                },
            },
        },
    },
}
_SCHEMAS["BulkResponse"] = {
    "type": "object",
    "required": ["schemas", "Operations"],
    "properties": {
        "schemas": {"type": "array", "items": _STRING},
        "Operations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "method": {"type": "string", "nullable": True},
                    "bulkId": _STRING,
                    "version": _STRING,
                    "location": _STRING,
                    "status": {"type": "string", "pattern": "^[1-5][0-9][0-9]$"},
                    "response": {"type": "object", "nullable": True},
                },
            },
        },
    },
}
for _resource in RESOURCE_TYPES:
    _SCHEMAS[_resource.name] = resource_schema(_resource)
    # Answers may leave the required attributes out (attributes/excludedAttributes,
    # RFC 7644 §3.9).
    _SCHEMAS[f"{_resource.name}Resource"] = {
        **_SCHEMAS[_resource.name],
        "required": ["schemas", "id"],
    }


@dataclass(frozen=True)
class _Descriptions:
    """How one resource type's answers are described beyond every type's.

    :param conflict: the 409 of a create, replace or patch.
    :param deleted: the description of a DELETE's 204.
    """

    conflict: str
    deleted: str = "Deleted"


_DESCRIPTIONS = {
    USER: _Descriptions(
        conflict="userName or email taken", deleted="Deleted (soft-deactivated in SimpleAMS)"
    ),
    GROUP: _Descriptions(conflict="displayName taken"),
}


def _listing(description: str) -> dict[str, Any]:
    return {"description": description, "content": {SCIM: {"schema": _ref("ListResponse")}}}


def resource_paths(endpoints: Endpoints) -> dict[str, Any]:
    """The path items of one resource type: its endpoint, .search and /{id}.

    Requests carry the schema component named after the type (``User``),
    answers the one that may leave out what a projection excluded (``UserResource``).
    """
    resource = endpoints.resource
    described = _DESCRIPTIONS[resource]
    noun = resource.name.lower()
    one = {
        "description": f"The {noun}",
        "content": {SCIM: {"schema": _ref(f"{resource.name}Resource")}},
    }
    listing = _listing(f"A page of {noun}s")
    body = {"required": True, "content": _content(_ref(resource.name))}
    missing = {"404": _error(f"No such {noun}")}
    unmatched = {"412": _error("If-Match did not match")}
    changed = {
        **missing,
        "409": _error(described.conflict),
        **unmatched,
        **_ERRORS,
        **_WRITE_ERRORS,
    }
    applied = {"204": {"description": "Applied (no projection asked for)"}}
    patched = {"200": one, **({} if endpoints.storage.patch_answers_resource else applied)}
    return {
        resource.endpoint: {
            "get": {
                "parameters": [
                    *_LIST_PARAMETERS,
                    *_PROJECTION,
                ],
                "responses": {"200": listing, **_ERRORS},
            },
            "post": {
                "parameters": _PROJECTION,
                "requestBody": body,
                "responses": {
                    "201": one,
                    "409": _error(described.conflict),
                    **_ERRORS,
                    **_WRITE_ERRORS,
                },
            },
        },
        f"{resource.endpoint}/.search": {
            "post": {
                "requestBody": {"required": True, "content": _content(_ref("SearchRequest"))},
                "responses": {"200": listing, **_ERRORS, **_WRITE_ERRORS},
            }
        },
        f"{resource.endpoint}/{{id}}": {
            "parameters": [_ID],
            "get": {
                "parameters": _PROJECTION,
                "responses": {"200": one, **missing, **_ERRORS},
            },
            "put": {
                "parameters": [*_PROJECTION, _IF_MATCH],
                "requestBody": body,
                "responses": {"200": one, **changed},
            },
            "patch": {
                "parameters": [*_PROJECTION, _IF_MATCH],
                "requestBody": {"required": True, "content": _content(_ref("PatchOp"))},
                "responses": {**patched, **changed},
            },
            "delete": {
                "parameters": [_IF_MATCH],
                "responses": {
                    "204": {"description": described.deleted},
                    **missing,
                    **unmatched,
                    **_ERRORS,
                },
            },
        },
    }


@cache
def openapi_document() -> dict[str, Any]:
    discovery = {
        "description": "Discovery document",
        "content": {SCIM: {"schema": {"type": "object"}}},
    }
    paths: dict[str, Any] = {}
    for endpoints in RESOURCE_ENDPOINTS:
        paths |= resource_paths(endpoints)
    return {
        "openapi": "3.0.3",
        "info": {"title": "SimpleAMS SCIM 2.0 API", "version": "2.0"},
        "servers": [{"url": "/scim/v2"}],
        "security": [{"bearer": []}],
        "paths": {
            **paths,
            "/Bulk": {
                "post": {
                    "requestBody": {"required": True, "content": _content(_ref("BulkRequest"))},
                    "responses": {
                        "200": {
                            "description": "Each operation's own status (not atomic)",
                            "content": {SCIM: {"schema": _ref("BulkResponse")}},
                        },
                        **_ERRORS,
                        **_WRITE_ERRORS,
                    },
                }
            },
            "/ServiceProviderConfig": {"get": {"responses": {"200": discovery, **_ERRORS}}},
            "/ResourceTypes": {
                "get": {"responses": {"200": _listing("The resource types"), **_ERRORS}}
            },
            "/Schemas": {"get": {"responses": {"200": _listing("The schemas"), **_ERRORS}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _SCHEMAS,
        },
    }


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document())
