"""Okta's full import of a big directory, page by page, through a running `web`.

    python -m bench.paged_read --url http://127.0.0.1:8804/scim/v2 --users 100000

Seeds USERS users into a new Business tenant exactly as POST /Users stores
them (parse_user + indexed_columns, one INSERT per 1,000), then reads the
whole directory three ways, one page after another as the IdPs do:

- startIndex 1, 101, 201… with count=100 (Okta's import): each page after
  the first continues from where the previous one ended (keyset);
- cursor=, then nextCursor (RFC 9865);
- 100 pages at random depths (startIndex jumps: OFFSET, the slow path).

Prints per-method pages/s, p50/p95/p99/max per page and the total time.
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
from sqlalchemy import create_engine, insert, text

from bench.initial_sync import user_body
from gateway import tenancy
from gateway.scim.attributes import indexed_columns
from gateway.scim.schema import parse_user
from gateway.settings import Settings
from models.tenants import Plan
from models.users import User

PAGE = 100


def seed(database_url: str, users: int) -> str:
    """A new tenant with ``users`` users; returns its token."""
    slug = f"read{secrets.token_hex(3)}"
    engine = create_engine(database_url)
    run = uuid.uuid4().hex[:6]
    start = datetime.now(UTC) - timedelta(days=1)
    with engine.begin() as conn:
        tenancy.create_tenant(conn, slug, "Import Ltd", Plan.business)
        token = tenancy.issue_token(conn, slug).token
        tenant_id = conn.execute(text("SELECT id FROM tenants WHERE slug = :s"), {"s": slug})
        tenant_id = tenant_id.scalar_one()
    for first in range(0, users, 1000):
        rows = []
        for n in range(first, min(users, first + 1000)):
            document = parse_user(user_body(n, run)).document
            created = start + timedelta(milliseconds=n)
            rows.append(
                {
                    **indexed_columns(document),
                    "id": uuid.uuid4(),
                    "scim_id": uuid.uuid4(),
                    "tenant_id": tenant_id,
                    "attributes": document,
                    "source": "okta",
                    "created_at": created,
                    "updated_at": created,
                }
            )
        with engine.begin() as conn:
            conn.execute(insert(User), rows)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE users"))
    engine.dispose()
    return token


def summary(name: str, timings: list[float], seen: int, expected: int | None) -> None:
    timings_ms = sorted(t * 1000 for t in timings)

    def pct(p: float) -> float:
        return timings_ms[min(len(timings_ms) - 1, int(p / 100 * len(timings_ms)))]

    total = sum(timings)
    read = f"read {seen:,} of {expected:,} users" if expected is not None else f"{seen:,} users"
    print(
        f"{name:<22} {len(timings):5d} pages in {total:6.1f} s ({len(timings) / total:6.1f}/s)  "
        f"p50 {statistics.median(timings_ms):6.1f}  p95 {pct(95):6.1f}  p99 {pct(99):6.1f}  "
        f"max {timings_ms[-1]:6.1f} ms  {read}"
    )


def timed(http: httpx2.Client, params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    answer = http.get("/Users", params=params)
    took = time.perf_counter() - started
    if answer.status_code != 200:
        raise SystemExit(f"{params} answered {answer.status_code}: {answer.text[:200]}")
    return took, answer.json()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    token = seed(Settings.from_env().database_url, args.users)
    http = httpx2.Client(
        base_url=args.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    print(f"{args.users:,} users; pages of {PAGE}, one after another (ms per page)")

    timings, seen, start_index, total = [], 0, 1, None
    names: list[str] = []
    while total is None or start_index <= total:
        took, body = timed(http, {"startIndex": start_index, "count": PAGE})
        timings.append(took)
        total = body["totalResults"]
        names += [user["userName"] for user in body["Resources"]]
        seen += body["itemsPerPage"]
        start_index += PAGE
    if len(set(names)) != len(names):
        raise SystemExit("startIndex import returned a user twice")
    summary("startIndex (Okta)", timings, seen, total)

    cursor: str | None = ""
    timings, seen = [], 0
    while cursor is not None:
        took, body = timed(http, {"cursor": cursor, "count": PAGE})
        timings.append(took)
        seen += body["itemsPerPage"]
        cursor = body.get("nextCursor")
    summary("cursor (RFC 9865)", timings, seen, total)

    timings, seen = [], 0
    for depth in random.Random(1).sample(range(1, args.users - PAGE), 100):
        took, body = timed(http, {"startIndex": depth, "count": PAGE})
        timings.append(took)
        seen += body["itemsPerPage"]
    summary("random startIndex", timings, seen, None)


if __name__ == "__main__":
    main()
