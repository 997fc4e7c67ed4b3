"""Play an IdP's initial sync against a running gateway and report throughput and latency.

For each of N users, Okta's pattern: GET /Users?filter=userName eq "…" then
POST /Users with a realistic body, from C concurrent clients. Then a paged
read of the whole directory with count=100.

    python -m bench.initial_sync --url http://127.0.0.1:8000/scim/v2 --token sams_scim_… \
        --users 5000 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections import Counter
from typing import Any

import httpx2

from bench.cpu import Meter, per_user_line, postmaster_pid

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
DEPARTMENTS = ["Engineering", "Sales", "Finance", "Operations", "Support", "Legal"]


def user_body(n: int, run: str) -> dict[str, Any]:
    email = f"user{n:06d}.{run}@bench.example.com"
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "userName": email,
        "externalId": f"00u{run}{n:06d}",
        "name": {"givenName": f"Given{n}", "familyName": f"Family{n}"},
        "displayName": f"Given{n} Family{n}",
        "emails": [{"primary": True, "value": email, "type": "work"}],
        "active": True,
        ENTERPRISE: {"department": DEPARTMENTS[n % len(DEPARTMENTS)], "manager": {"value": "00u0"}},
    }


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def report(
    name: str, unit: str, latencies: list[float], elapsed: float, statuses: Counter[int]
) -> None:
    ms = [s * 1000 for s in latencies]
    print(
        f"{name:>14}: {len(ms) / elapsed:8.1f} {unit}/s  p50 {percentile(ms, 50):6.1f} ms  "
        f"p95 {percentile(ms, 95):6.1f}  p99 {percentile(ms, 99):6.1f}  max {max(ms):7.1f}  "
        f"statuses {dict(statuses)}"
    )


async def initial_sync(
    http: httpx2.AsyncClient, users: int, concurrency: int, run: str, meter: Meter
) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(users):
        queue.put_nowait(n)
    latencies: list[float] = []
    lookups: list[float] = []
    creates: list[float] = []
    slices: list[list[float]] = [[] for _ in range(10)]
    statuses: Counter[int] = Counter()

    async def one_client() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            body = user_body(n, run)
            started = time.perf_counter()
            lookup = await http.get(
                "/Users", params={"filter": f'userName eq "{body["userName"]}"'}
            )
            looked_up = time.perf_counter()
            created = await http.post("/Users", json=body)
            took = time.perf_counter() - started
            lookups.append(looked_up - started)
            creates.append(took - (looked_up - started))
            statuses[lookup.status_code] += 1
            statuses[created.status_code] += 1
            latencies.append(took)
            slices[n * 10 // users].append(took * 1000)

    meter.start()
    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    used = meter.stop()
    report("initial sync", "users", latencies, elapsed, statuses)
    print(per_user_line(used, users, os.cpu_count() or 1))
    # Each request on its own: the IdP waits this long for one acknowledgement.
    lookup_ms, create_ms = [x * 1000 for x in lookups], [x * 1000 for x in creates]
    print(
        f"  per request: lookup p50 {percentile(lookup_ms, 50):.1f} p99 "
        f"{percentile(lookup_ms, 99):.1f} ms, create p50 {percentile(create_ms, 50):.1f} "
        f"p99 {percentile(create_ms, 99):.1f} ms"
    )
    print("  p50 per 10% slice (ms):", " ".join(f"{statistics.median(s):.1f}" for s in slices if s))
    print("  p99 per 10% slice (ms):", " ".join(f"{percentile(s, 99):.1f}" for s in slices if s))


async def paged_read(http: httpx2.AsyncClient) -> None:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    start_index, total, seen = 1, None, 0
    started = time.perf_counter()
    while total is None or start_index <= total:
        t = time.perf_counter()
        page = await http.get("/Users", params={"startIndex": start_index, "count": 100})
        latencies.append(time.perf_counter() - t)
        statuses[page.status_code] += 1
        body = page.json()
        total = body["totalResults"]
        seen += body["itemsPerPage"]
        start_index += 100
    elapsed = time.perf_counter() - started
    report("paged read", "pages", latencies, elapsed, statuses)
    print(f"  read {seen} of {total} users in {elapsed:.1f} s")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--cpu",
        action="append",
        default=[],
        metavar="NAME=PID",
        help="also report the CPU per user of this process tree (repeat: web=…, relay=…)",
    )
    parser.add_argument(
        "--postgres-cpu", action="store_true", help="also report PostgreSQL's CPU per user"
    )
    args = parser.parse_args()
    watched = {name: int(pid) for name, pid in (item.split("=", 1) for item in args.cpu)}
    if args.postgres_cpu:
        watched["postgres"] = postmaster_pid()
    limits = httpx2.Limits(max_connections=args.concurrency)
    async with httpx2.AsyncClient(
        base_url=args.url,
        headers={"Authorization": f"Bearer {args.token}", "Content-Type": "application/scim+json"},
        limits=limits,
        timeout=60,
    ) as http:
        await initial_sync(http, args.users, args.concurrency, uuid.uuid4().hex[:6], Meter(watched))
        await paged_read(http)


if __name__ == "__main__":
    asyncio.run(main())
