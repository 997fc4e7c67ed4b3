"""Concurrent writes of one user never produce a 500 or a duplicate."""

from __future__ import annotations

import asyncio

import httpx2
from sqlalchemy import Engine, text

from tests.conftest import user_body


async def test_simultaneous_creates_of_one_person_make_one_user(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    body = user_body("rush@acme.test", externalId="00uR")

    responses = await asyncio.gather(*(client.post("/Users", json=body) for _ in range(50)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 49, statuses
    for conflict in (r for r in responses if r.status_code == 409):
        assert conflict.json()["scimType"] == "uniqueness"
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 1
        assert conn.execute(text("SELECT count(*) FROM provisioning_events")).scalar_one() == 1


async def test_concurrent_patches_of_one_user_lose_no_update(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    created = (await client.post("/Users", json=user_body("many@acme.test"))).json()
    phones = [f"+44 20 7946 {n:04d}" for n in range(12)]

    responses = await asyncio.gather(
        *(
            client.patch(
                f"/Users/{created['id']}",
                json={
                    "Operations": [{"op": "add", "path": "phoneNumbers", "value": [{"value": p}]}]
                },
            )
            for p in phones
        )
    )

    assert {r.status_code for r in responses} == {200}
    final = (await client.get(f"/Users/{created['id']}")).json()
    assert sorted(p["value"] for p in final["phoneNumbers"]) == sorted(phones)
    assert final["meta"]["version"] == f'W/"{1 + len(phones)}"'


async def test_if_match_races_give_one_winner_and_412s(client: httpx2.AsyncClient) -> None:
    created = (await client.post("/Users", json=user_body("race@acme.test"))).json()
    version = created["meta"]["version"]

    responses = await asyncio.gather(
        *(
            client.patch(
                f"/Users/{created['id']}",
                json={"Operations": [{"op": "replace", "path": "title", "value": f"T{n}"}]},
                headers={"If-Match": version},
            )
            for n in range(10)
        )
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * 9, statuses
    winner = next(r for r in responses if r.status_code == 200).json()
    assert (await client.get(f"/Users/{created['id']}")).json()["title"] == winner["title"]
