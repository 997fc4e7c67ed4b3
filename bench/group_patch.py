"""Membership PATCHes on a large group against a running gateway.

Seeds MEMBERS + spare users and a group holding MEMBERS of them straight in
PostgreSQL (the setup is not what is measured), then times, ROUNDS times,
one PATCH adding 1,000 users and one removing 1,000 members, in Okta's
shapes (add: ``path: members`` with a value list; remove: 1,000
``members[value eq "…"]`` operations).

python -m bench.group_patch --url http://127.0.0.1:8807/scim/v2 --token sams_scim_… \\
    --database-url postgresql+psycopg://root@127.0.0.1:5432/simpleams_bench_groups
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx2
from sqlalchemy import create_engine, text

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


def seed(database_url: str, group_id: str, members: int, spare: int) -> tuple[list[str], list[str]]:
    engine = create_engine(database_url)
    with engine.begin() as conn:
        tenant_id = conn.execute(text("SELECT id FROM tenants WHERE slug = 'demo'")).scalar_one()
        conn.execute(
            text(
                "INSERT INTO users (id, tenant_id, scim_id, user_name, user_name_key, email,"
                " email_key, email_values, display_name, attributes, source)"
                " SELECT gen_random_uuid(), :tenant, gen_random_uuid(), 'u' || n || '@bench.test',"
                " 'u' || n || '@bench.test', 'u' || n || '@bench.test', 'u' || n || '@bench.test',"
                " ARRAY['u' || n || '@bench.test'], 'User ' || n,"
                " jsonb_build_object('userName', 'u' || n || '@bench.test'), 'okta'"
                " FROM generate_series(1, :total) AS n"
            ),
            {"tenant": tenant_id, "total": members + spare},
        )
        conn.execute(
            text(
                "INSERT INTO group_members (group_id, user_id)"
                " SELECT :group, id FROM users WHERE tenant_id = :tenant"
                " ORDER BY user_name LIMIT :members"
            ),
            {"group": group_id, "tenant": tenant_id, "members": members},
        )
        inside = conn.execute(
            text(
                "SELECT u.scim_id FROM group_members m JOIN users u ON u.id = m.user_id"
                " WHERE m.group_id = :group"
            ),
            {"group": group_id},
        ).scalars()
        member_ids = [str(value) for value in inside]
        outside = conn.execute(
            text(
                "SELECT scim_id FROM users u WHERE tenant_id = :tenant AND NOT EXISTS"
                " (SELECT 1 FROM group_members m WHERE m.user_id = u.id AND m.group_id = :group)"
            ),
            {"group": group_id, "tenant": tenant_id},
        ).scalars()
        spare_ids = [str(value) for value in outside]
        conn.execute(text("ANALYZE users, group_members"))
    engine.dispose()
    return member_ids, spare_ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    http = httpx2.Client(
        base_url=args.url,
        headers={"Authorization": f"Bearer {args.token}", "Content-Type": "application/scim+json"},
        timeout=120,
    )
    created = http.post("/Groups", json={"schemas": [GROUP], "displayName": "Everyone"})
    created.raise_for_status()
    group_id = created.json()["id"]
    members, spare = seed(args.database_url, group_id, args.members, args.changes * args.rounds)
    print(f"group of {len(members):,} members, {len(spare):,} users outside it")
    adds: list[float] = []  # milliseconds per PATCH
    removes: list[float] = []
    for round_ in range(args.rounds):
        joining = spare[round_ * args.changes : (round_ + 1) * args.changes]
        leaving = members[round_ * args.changes : (round_ + 1) * args.changes]
        add = {
            "schemas": [PATCH],
            "Operations": [
                {"op": "add", "path": "members", "value": [{"value": v} for v in joining]}
            ],
        }
        remove = {
            "schemas": [PATCH],
            "Operations": [{"op": "remove", "path": f'members[value eq "{v}"]'} for v in leaving],
        }
        for body, took in ((add, adds), (remove, removes)):
            started = time.perf_counter()
            response = http.patch(f"/Groups/{group_id}", json=body)
            took.append((time.perf_counter() - started) * 1000)
            if response.status_code != 204:
                raise SystemExit(f"PATCH answered {response.status_code}: {response.text[:300]}")
    members_now = http.get(f'/Groups?filter=members eq "{spare[0]}"&excludedAttributes=members')
    print(
        f"  add {args.changes:,} members:    median {statistics.median(adds):.1f} ms, "
        f"max {max(adds):.1f} ms over {len(adds)} PATCHes"
    )
    print(
        f"  remove {args.changes:,} members: median {statistics.median(removes):.1f} ms, "
        f"max {max(removes):.1f} ms over {len(removes)} PATCHes"
    )
    if members_now.json()["totalResults"] != 1:
        raise SystemExit("the first added user is not a member: the PATCHes did not apply")


if __name__ == "__main__":
    main()
