"""Admin page latency on a big tenant: the staff list at any depth, its tabs and
searches, a person's page and the activity page, through a running `web`.

    python -m bench.admin_pages --url http://127.0.0.1:8802 --users 100000 [--repeat 30]

Seeds USERS people (10 % deactivated, 1 % deleted by the IdP) and 20,000
provisioning events into a new Business tenant with SQL (the bench measures
reading, not provisioning), creates an admin, signs in over HTTP, then times
each page REPEAT times one after another and prints p50/p95/max in ms.
"""

from __future__ import annotations

import argparse
import re
import secrets
import statistics
import time
import uuid

import httpx2
from sqlalchemy import ColumnClause, create_engine, literal_column, select, text

from gateway import tenancy
from gateway.admin import accounts
from gateway.admin.staff import encode_cursor
from gateway.settings import Settings
from models.tenants import Plan
from models.users import STAFF_SORT_KEY, User

SEED_USERS = """
INSERT INTO users (id, tenant_id, scim_id, user_name, user_name_key, email, email_key,
                   email_values, display_name, given_name, family_name, department, active,
                   deleted_at, source, attributes)
SELECT gen_random_uuid(), :t, gen_random_uuid(), 'user' || i || '@bench.example',
       'user' || i || '@bench.example', 'user' || i || '@bench.example',
       'user' || i || '@bench.example', ARRAY['user' || i || '@bench.example'],
       'Given' || i || ' Family' || (i % 977), 'Given' || i, 'Family' || (i % 977),
       'Dept ' || (i % 40), i % 10 <> 0, CASE WHEN i % 100 = 0 THEN now() END, 'okta', '{}'
FROM generate_series(1, :n) AS i
"""
SEED_EVENTS = """
INSERT INTO provisioning_events (tenant_id, user_id, kind, changes, actor_idp, occurred_at,
                                 published_at, settled_at)
SELECT :t, id, 'user.created', '{}', 'okta', now() - (random() * interval '9 minutes'),
       now(), CASE WHEN random() < 0.9 THEN now() END
FROM users WHERE tenant_id = :t LIMIT 20000
"""


def seed(database_url: str, users: int) -> tuple[str, str, str, uuid.UUID, list[str]]:
    slug = f"bench{secrets.token_hex(3)}"
    email, password = f"admin@{slug}.example", secrets.token_urlsafe(16)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        tenancy.create_tenant(conn, slug, "Bench Ltd", Plan.business)
        accounts.create_admin(conn, slug, email, password)
        tenant_id = conn.execute(text("SELECT id FROM tenants WHERE slug = :s"), {"s": slug})
        tenant_id = tenant_id.scalar_one()
        conn.execute(text(SEED_USERS), {"t": tenant_id, "n": users})
        conn.execute(text(SEED_EVENTS), {"t": tenant_id})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE users"))
        conn.execute(text("VACUUM ANALYZE provisioning_events"))
        key: ColumnClause[str] = literal_column(STAFF_SORT_KEY)
        # Positions 1, 10, 100, 1,000 and the last page deep, for `after` cursors.
        depths = [50 * page for page in (10, 100, 1000) if 50 * page < users]
        cursors = []
        for depth in [*depths, users - 60]:
            row = conn.execute(
                select(key.label("key"), User.id)
                .where(User.tenant_id == tenant_id)
                .order_by(key, User.id)
                .offset(depth)
                .limit(1)
            ).one()
            cursors.append(encode_cursor(row.key, row.id))
        person = conn.execute(
            select(User.id).where(User.tenant_id == tenant_id).limit(1)
        ).scalar_one()
    engine.dispose()
    return slug, email, password, person, cursors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    settings = Settings.from_env()
    slug, email, password, person, cursors = seed(settings.database_url, args.users)
    http = httpx2.Client(base_url=args.url, timeout=30)
    form = http.get("/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    if csrf is None:
        raise SystemExit("no sign-in form at /login")
    signed_in = http.post(
        "/login",
        data={"workspace": slug, "email": email, "password": password, "csrf_token": csrf[1]},
    )
    if signed_in.status_code != 303:
        raise SystemExit(f"sign-in failed: {signed_in.status_code}")
    pages = [("/staff (page 1)", "/staff")]
    labels = ["page 11", "page 101", "page 1,001", "last page"][-len(cursors) :]
    pages += [
        (f"/staff ({label})", f"/staff?after={c}") for label, c in zip(labels, cursors, strict=True)
    ]
    pages += [
        ("/staff?status=deactivated", "/staff?status=deactivated"),
        ("/staff?status=deleted", "/staff?status=deleted"),
        ("/staff?q=user4242 (rare)", "/staff?q=user4242%40"),
        ("/staff?q=family97 (common)", "/staff?q=family97"),
        ("/staff?q=zq (2 chars, no match)", "/staff?q=zq"),
        ("/staff/{id}", f"/staff/{person}"),
        ("/activity", "/activity"),
        ("/activity/live", "/activity/live"),
    ]
    print(f"{args.users:,} people, {args.repeat} requests per page, one at a time (ms)")
    print(f"{'page':<36} {'p50':>7} {'p95':>7} {'max':>7}")
    for label, path in pages:
        timings = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            response = http.get(path)
            timings.append((time.perf_counter() - start) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"{path} answered {response.status_code}")
        timings.sort()
        p95 = timings[min(len(timings) - 1, int(len(timings) * 0.95))]
        print(f"{label:<36} {statistics.median(timings):7.1f} {p95:7.1f} {timings[-1]:7.1f}")


if __name__ == "__main__":
    main()
