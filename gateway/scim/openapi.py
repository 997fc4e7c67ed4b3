"""An OpenAPI 3.0 description of the SCIM API, served at /scim/v2/openapi.json.

For people wiring an IdP or writing a client, and for schemathesis, which
fuzzes the gateway against it in the test suite. It describes what the
gateway accepts and answers; RFC 7643/7644 and /Schemas remain the
authority on attribute semantics.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

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
_GROUP_LIST_PARAMETERS = [
    p for p in _LIST_PARAMETERS if p["name"] in ("filter", "startIndex", "count")
]


def _group_paths() -> dict[str, Any]:
    group = {"description": "The group", "content": {SCIM: {"schema": _ref("GroupResource")}}}
    listing = {
        "description": "A page of groups",
        "content": {SCIM: {"schema": _ref("ListResponse")}},
    }
    changed = {
        "404": _error("No such group"),
        "409": _error("displayName taken"),
        "412": _error("If-Match did not match"),
        **_ERRORS,
        **_WRITE_ERRORS,
    }
    return {
        "/Groups": {
            "get": {
                "parameters": _GROUP_LIST_PARAMETERS + _PROJECTION,
                "responses": {"200": listing, **_ERRORS},
            },
            "post": {
                "parameters": _PROJECTION,
                "requestBody": {"required": True, "content": _content(_ref("Group"))},
                "responses": {
                    "201": group,
                    "409": _error("displayName taken"),
                    **_ERRORS,
                    **_WRITE_ERRORS,
                },
            },
        },
        "/Groups/.search": {
            "post": {
                "requestBody": {"required": True, "content": _content(_ref("SearchRequest"))},
                "responses": {"200": listing, **_ERRORS, **_WRITE_ERRORS},
            }
        },
        "/Groups/{id}": {
            "parameters": [_ID],
            "get": {
                "parameters": _PROJECTION,
                "responses": {"200": group, "404": _error("No such group"), **_ERRORS},
            },
            "put": {
                "parameters": [*_PROJECTION, _IF_MATCH],
                "requestBody": {"required": True, "content": _content(_ref("Group"))},
                "responses": {"200": group, **changed},
            },
            "patch": {
                "parameters": [*_PROJECTION, _IF_MATCH],
                "requestBody": {"required": True, "content": _content(_ref("PatchOp"))},
                "responses": {
                    "200": group,
                    "204": {"description": "Applied (no projection asked for)"},
                    **changed,
                },
            },
            "delete": {
                "parameters": [_IF_MATCH],
                "responses": {
                    "204": {"description": "Deleted"},
                    "404": _error("No such group"),
                    "412": _error("If-Match did not match"),
                    **_ERRORS,
                },
            },
        },
    }


@cache
def openapi_document() -> dict[str, Any]:
    user = {"description": "The user", "content": {SCIM: {"schema": _ref("UserResource")}}}
    listing = {
        "description": "A page of users",
        "content": {SCIM: {"schema": _ref("ListResponse")}},
    }
    discovery = {
        "description": "Discovery document",
        "content": {SCIM: {"schema": {"type": "object"}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "SimpleAMS SCIM 2.0 API", "version": "2.0"},
        "servers": [{"url": "/scim/v2"}],
        "security": [{"bearer": []}],
        "paths": {
            "/Users": {
                "get": {
                    "parameters": _LIST_PARAMETERS + _PROJECTION,
                    "responses": {"200": listing, **_ERRORS},
                },
                "post": {
                    "parameters": _PROJECTION,
                    "requestBody": {"required": True, "content": _content(_ref("User"))},
                    "responses": {
                        "201": user,
                        "409": _error("userName or email taken"),
                        **_ERRORS,
                        **_WRITE_ERRORS,
                    },
                },
            },
            "/Users/.search": {
                "post": {
                    "requestBody": {"required": True, "content": _content(_ref("SearchRequest"))},
                    "responses": {"200": listing, **_ERRORS, **_WRITE_ERRORS},
                }
            },
            "/Users/{id}": {
                "parameters": [_ID],
                "get": {
                    "parameters": _PROJECTION,
                    "responses": {"200": user, "404": _error("No such user"), **_ERRORS},
                },
                "put": {
                    "parameters": [*_PROJECTION, _IF_MATCH],
                    "requestBody": {"required": True, "content": _content(_ref("User"))},
                    "responses": {
                        "200": user,
                        "404": _error("No such user"),
                        "409": _error("Taken"),
                        "412": _error("If-Match did not match"),
                        **_ERRORS,
                        **_WRITE_ERRORS,
                    },
                },
                "patch": {
                    "parameters": [*_PROJECTION, _IF_MATCH],
                    "requestBody": {"required": True, "content": _content(_ref("PatchOp"))},
                    "responses": {
                        "200": user,
                        "404": _error("No such user"),
                        "409": _error("Taken"),
                        "412": _error("If-Match did not match"),
                        **_ERRORS,
                        **_WRITE_ERRORS,
                    },
                },
                "delete": {
                    "parameters": [_IF_MATCH],
                    "responses": {
                        "204": {"description": "Deleted (soft-deactivated in SimpleAMS)"},
                        "404": _error("No such user"),
                        "412": _error("If-Match did not match"),
                        **_ERRORS,
                    },
                },
            },
            **_group_paths(),
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
            "/ResourceTypes": {"get": {"responses": {"200": listing, **_ERRORS}}},
            "/Schemas": {"get": {"responses": {"200": listing, **_ERRORS}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _SCHEMAS,
        },
    }


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document())
