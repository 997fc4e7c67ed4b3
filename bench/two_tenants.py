"""Fairness: a small tenant's sync alone, then while a large tenant syncs.

Both IdPs play Okta's initial-sync pattern (bench/initial_sync.py: a
``userName eq`` lookup, then a create). The small tenant syncs SMALL users
alone; then the large tenant starts a sync with C clients and, once it is
under way, the small tenant syncs SMALL new users again. The large sync stops
when the small one ends. Reports the small tenant's latency alone and during,
and their ratio (target: p99 during within 2x of p99 alone). Each IdP is its
own process, as it would be: the large one's clients must not slow down the
small one's measurements.

    python -m bench.two_tenants --url http://127.0.0.1:8000/scim/v2 \
        --large-token sams_scim_… --small-token sams_scim_…
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
import uuid
from collections import Counter
from itertools import count
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

import httpx2

from bench.initial_sync import percentile, user_body

# The large sync runs this long before the small one starts, so that the
# small tenant's whole sync meets a large one in full flow.
WARM_UP_USERS = 500


class Sync:
    """One IdP's initial sync: N users (or until stopped) from C clients."""

    def __init__(self, http: httpx2.AsyncClient, users: int | None, concurrency: int) -> None:
        self.http = http
        self.users = users
        self.concurrency = concurrency
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.done = 0
        self.warmed_up: Any = asyncio.Event()
        self.stop: Any = asyncio.Event()

    async def run(self) -> float:
        run = uuid.uuid4().hex[:6]
        numbers = count()
        started = time.perf_counter()

        async def one_client() -> None:
            while not self.stop.is_set():
                n = next(numbers)
                if self.users is not None and n >= self.users:
                    return
                body = user_body(n, run)
                t = time.perf_counter()
                lookup = await self.http.get(
                    "/Users", params={"filter": f'userName eq "{body["userName"]}"'}
                )
                created = await self.http.post("/Users", json=body)
                self.latencies.append(time.perf_counter() - t)
                self.statuses[lookup.status_code] += 1
                self.statuses[created.status_code] += 1
                self.done += 1
                if self.done >= WARM_UP_USERS:
                    self.warmed_up.set()

        await asyncio.gather(*(one_client() for _ in range(self.concurrency)))
        return time.perf_counter() - started

    def line(self, name: str, elapsed: float) -> str:
        ms = [s * 1000 for s in self.latencies]
        return (
            f"{name:>22}: {len(ms) / elapsed:7.1f} users/s  p50 {percentile(ms, 50):6.1f} ms  "
            f"p95 {percentile(ms, 95):6.1f}  p99 {percentile(ms, 99):6.1f}  "
            f"max {max(ms):6.1f}  statuses {dict(self.statuses)}"
        )


def client(url: str, token: str, concurrency: int) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"},
        limits=httpx2.Limits(max_connections=concurrency),
        timeout=60,
    )


def large_sync(
    url: str,
    token: str,
    concurrency: int,
    warmed_up: ProcessEvent,
    stop: ProcessEvent,
    results: Any,
) -> None:
    """The large tenant's IdP, in its own process, until told to stop."""

    async def run() -> None:
        async with client(url, token, concurrency) as http:
            sync = Sync(http, None, concurrency)
            sync.warmed_up, sync.stop = warmed_up, stop
            elapsed = await sync.run()
            results.put((sync.line("large tenant", elapsed), sync.latencies))

    asyncio.run(run())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--large-token", required=True)
    parser.add_argument("--small-token", required=True)
    parser.add_argument("--large-concurrency", type=int, default=16)
    parser.add_argument("--small-users", type=int, default=500)
    parser.add_argument("--small-concurrency", type=int, default=2)
    args = parser.parse_args()
    async with client(args.url, args.small_token, args.small_concurrency) as small_http:
        alone = Sync(small_http, args.small_users, args.small_concurrency)
        print(alone.line("small tenant alone", await alone.run()))

        warmed_up, stop = multiprocessing.Event(), multiprocessing.Event()
        results: Any = multiprocessing.Queue()
        large = multiprocessing.Process(
            target=large_sync,
            args=(args.url, args.large_token, args.large_concurrency, warmed_up, stop, results),
        )
        large.start()
        await asyncio.to_thread(warmed_up.wait)
        during = Sync(small_http, args.small_users, args.small_concurrency)
        small_elapsed = await during.run()
        stop.set()
        large_line, _large_latencies = await asyncio.to_thread(results.get)
        large.join()
        print(during.line("small tenant during", small_elapsed))
        print(large_line)
        alone_p99 = percentile(alone.latencies, 99)
        during_p99 = percentile(during.latencies, 99)
        print(f"{'small p99 during/alone':>22}: {during_p99 / alone_p99:.2f}x (target <= 2x)")


if __name__ == "__main__":
    asyncio.run(main())
