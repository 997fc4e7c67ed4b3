"""RFC 7644 §4 discovery advertises exactly what works."""

from __future__ import annotations

import httpx2
import pytest

from gateway.scim import resources
from gateway.scim.resources import ResourceType

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
SCIM = "application/scim+json"


async def test_service_provider_config_tells_the_truth(client: httpx2.AsyncClient) -> None:
    config = (await client.get("/ServiceProviderConfig")).json()
    assert config["patch"] == {"supported": True}
    assert config["filter"] == {"supported": True, "maxResults": 1000}
    assert config["sort"] == {"supported": True}
    assert config["etag"] == {"supported": True}
    assert config["changePassword"] == {"supported": False}
    assert config["bulk"] == {
        "supported": True,
        "maxOperations": 1000,
        "maxPayloadSize": 1_048_576,
    }
    [scheme] = config["authenticationSchemes"]
    assert scheme["type"] == "oauthbearertoken"
    assert config["meta"]["resourceType"] == "ServiceProviderConfig"


GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


async def test_resource_types_and_schemas(client: httpx2.AsyncClient) -> None:
    types = (await client.get("/ResourceTypes")).json()
    assert types["totalResults"] == 2
    assert [t["id"] for t in types["Resources"]] == ["User", "Group"]
    user = types["Resources"][0]
    assert (user["id"], user["endpoint"], user["schema"]) == ("User", "/Users", CORE)
    assert user["schemaExtensions"] == [{"schema": ENTERPRISE, "required": False}]
    assert (await client.get("/ResourceTypes/User")).json()["id"] == "User"
    group = (await client.get("/ResourceTypes/Group")).json()
    assert group["endpoint"] == "/Groups"
    assert group["schema"] == GROUP
    assert (await client.get("/ResourceTypes/Role")).status_code == 404

    schemas = (await client.get("/Schemas")).json()
    assert {s["id"] for s in schemas["Resources"]} == {CORE, ENTERPRISE, GROUP}
    group_schema = (await client.get(f"/Schemas/{GROUP}")).json()
    assert {a["name"] for a in group_schema["attributes"]} >= {"displayName", "members"}
    enterprise = (await client.get(f"/Schemas/{ENTERPRISE}")).json()
    manager = next(a for a in enterprise["attributes"] if a["name"] == "manager")
    ref = next(s for s in manager["subAttributes"] if s["name"] == "$ref")
    assert ref["required"] is False and ref["referenceTypes"] == ["User"]
    core = (await client.get(f"/Schemas/{CORE}")).json()
    user_name = next(a for a in core["attributes"] if a["name"] == "userName")
    assert user_name["uniqueness"] == "server" and user_name["caseExact"] is False
    assert (await client.get("/Schemas/urn:nope")).status_code == 404


# Every descriptor gateway/scim/resources.py defines, whether or not discovery lists it.
DESCRIPTORS = [
    pytest.param(value, id=value.name)
    for value in vars(resources).values()
    if isinstance(value, ResourceType)
]


@pytest.mark.parametrize("resource", DESCRIPTORS)
async def test_every_resource_type_is_discovered_and_described(
    client: httpx2.AsyncClient, resource: ResourceType
) -> None:
    response = await client.get(f"/ResourceTypes/{resource.name}")
    assert response.status_code == 200, f"/ResourceTypes does not serve {resource.name}"
    served = response.json()
    assert (served["id"], served["name"], served["endpoint"], served["schema"]) == (
        resource.name,
        resource.name,
        resource.endpoint,
        resource.schema,
    )
    extensions = [str(extension.__schema__) for extension in resource.extensions]
    assert [e["schema"] for e in served.get("schemaExtensions", [])] == extensions
    listed = (await client.get("/ResourceTypes")).json()["Resources"]
    assert served in listed
    schemas = (await client.get("/Schemas")).json()["Resources"]
    assert {resource.schema, *extensions} <= {s["id"] for s in schemas}

    spec = (await client.get("/openapi.json")).json()
    paths, components = spec["paths"], spec["components"]["schemas"]
    endpoint = resource.endpoint
    assert endpoint in paths, f"openapi.json does not describe {endpoint}"
    assert set(paths[endpoint]) == {"get", "post"}
    assert set(paths[f"{endpoint}/.search"]) == {"post"}
    assert set(paths[f"{endpoint}/{{id}}"]) == {"parameters", "get", "put", "patch", "delete"}
    created = paths[endpoint]["post"]
    assert created["requestBody"]["content"][SCIM]["schema"]["$ref"].endswith(f"/{resource.name}")
    answer = created["responses"]["201"]["content"][SCIM]["schema"]["$ref"]
    assert answer == f"#/components/schemas/{resource.name}Resource"
    assert {resource.name, f"{resource.name}Resource"} <= set(components)

    # The body schema is the one /Schemas serves: every attribute, with its
    # sub-attributes, extensions under their URN, read-only ones marked.
    body = components[resource.name]["properties"]
    for served_schema in (s for s in schemas if s["id"] in {resource.schema, *extensions}):
        where = body if served_schema["id"] == resource.schema else body[served_schema["id"]]
        where = where.get("properties", where)
        for attribute in served_schema["attributes"]:
            described = where[attribute["name"]]
            element = described["items"] if attribute["multiValued"] else described
            subs = {sub["name"] for sub in attribute.get("subAttributes", [])} - {"$ref"}
            assert set(element.get("properties", {})) == subs, attribute["name"]
            read_only = attribute["mutability"] == "readOnly"
            assert described.get("readOnly", False) is read_only, attribute["name"]
        required = [a["name"] for a in served_schema["attributes"] if a["required"]]
        if served_schema["id"] == resource.schema:
            assert components[resource.name]["required"] == required


async def test_every_type_pages_by_cursor_and_sorts(client: httpx2.AsyncClient) -> None:
    """One list planner (gateway/scim/listing.py) serves every resource type."""
    paths = (await client.get("/openapi.json")).json()["paths"]

    def listed(endpoint: str) -> list[str]:
        return [p["name"] for p in paths[endpoint]["get"]["parameters"]]

    for endpoint in ("/Users", "/Groups"):
        assert listed(endpoint) == [
            "filter",
            "startIndex",
            "cursor",
            "count",
            "sortBy",
            "sortOrder",
            "attributes",
            "excludedAttributes",
        ]
    # A group's membership PATCH may answer 204; a user's always answers 200.
    assert "204" in paths["/Groups/{id}"]["patch"]["responses"]
    assert "204" not in paths["/Users/{id}"]["patch"]["responses"]
