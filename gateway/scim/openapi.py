"""An OpenAPI 3.0 description of the SCIM API, served at /scim/v2/openapi.json.

For people wiring an IdP or writing a client, and for schemathesis, which
fuzzes the gateway against it in the test suite. It describes what the
gateway accepts and answers; RFC 7643/7644 and /Schemas remain the
authority on attribute semantics.

The paths of the resource types come from the same descriptors as
/ResourceTypes (gateway/scim/discovery.py ``RESOURCE_TYPES``): one set of
path items per type (:func:`resource_paths`), naming the schema components
after the type (``User`` for requests, ``UserResource`` for answers).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

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
_MULTI = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "value": _STRING,
            "display": _STRING,
            "type": _STRING,
            "primary": {"type": "boolean"},
        },
    },
}

_SCHEMAS: dict[str, Any] = {
    "User": {
        "type": "object",
        "required": ["userName"],
        "properties": {
            "schemas": {"type": "array", "items": _STRING},
            "id": {**_STRING, "readOnly": True},
            "externalId": _STRING,
            "userName": _STRING,
            "name": {
                "type": "object",
                "properties": {
                    key: _STRING
                    for key in (
                        "formatted",
                        "familyName",
                        "givenName",
                        "middleName",
                        "honorificPrefix",
                        "honorificSuffix",
                    )
                },
            },
            "displayName": _STRING,
            "nickName": _STRING,
            "title": _STRING,
            "userType": _STRING,
            "preferredLanguage": _STRING,
            "locale": _STRING,
            "timezone": _STRING,
            "active": {"type": "boolean"},
            "emails": _MULTI,
            "phoneNumbers": _MULTI,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "type": "object",
                "properties": {
                    "employeeNumber": _STRING,
                    "costCenter": _STRING,
                    "organization": _STRING,
                    "division": _STRING,
                    "department": _STRING,
                    "manager": {"type": "object", "properties": {"value": _STRING}},
                },
            },
            "meta": {"type": "object", "readOnly": True},
        },
    },
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
# Responses may leave userName out (attributes/excludedAttributes, RFC 7644 §3.9).
_SCHEMAS["UserResource"] = {**_SCHEMAS["User"], "required": ["schemas", "id"]}
_SCHEMAS["Group"] = {
    "type": "object",
    "required": ["displayName"],
    "properties": {
        "schemas": {"type": "array", "items": _STRING},
        "id": {**_STRING, "readOnly": True},
        "externalId": _STRING,
        "displayName": _STRING,
        "members": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["value"],
                "properties": {"value": _STRING, "display": _STRING, "type": _STRING},
            },
        },
        "meta": {"type": "object", "readOnly": True},
    },
}
_SCHEMAS["GroupResource"] = {**_SCHEMAS["Group"], "required": ["schemas", "id"]}


@dataclass(frozen=True)
class _Endpoints:
    """What one resource type's endpoints answer beyond what every type's do.

    :param conflict: the 409 of a create, replace or patch.
    :param patch_204: whether a PATCH may answer 204 (groups: membership
        changes without a projection); a user's PATCH always answers 200.
    :param deleted: the description of a DELETE's 204.
    """

    conflict: str
    patch_204: bool = True
    deleted: str = "Deleted"


_ENDPOINTS = {
    USER: _Endpoints(
        conflict="userName or email taken",
        patch_204=False,
        deleted="Deleted (soft-deactivated in SimpleAMS)",
    ),
    GROUP: _Endpoints(conflict="displayName taken"),
}


def _listing(description: str) -> dict[str, Any]:
    return {"description": description, "content": {SCIM: {"schema": _ref("ListResponse")}}}


def resource_paths(resource: ResourceType) -> dict[str, Any]:
    """The path items of one resource type: its endpoint, .search and /{id}.

    Requests carry the schema component named after the type (``User``),
    answers the one that may leave out what a projection excluded (``UserResource``).
    """
    endpoints = _ENDPOINTS[resource]
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
        "409": _error(endpoints.conflict),
        **unmatched,
        **_ERRORS,
        **_WRITE_ERRORS,
    }
    applied = {"204": {"description": "Applied (no projection asked for)"}}
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
                    "409": _error(endpoints.conflict),
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
                "responses": {"200": one, **(applied if endpoints.patch_204 else {}), **changed},
            },
            "delete": {
                "parameters": [_IF_MATCH],
                "responses": {
                    "204": {"description": endpoints.deleted},
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
    for resource in RESOURCE_TYPES:
        paths |= resource_paths(resource)
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
