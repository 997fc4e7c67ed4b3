"""RFC 7644 §4 discovery advertises exactly what works."""

from __future__ import annotations

import httpx2

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"


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
