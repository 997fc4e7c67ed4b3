"""gateway/fairness.py: a process's budget of requests in progress, split between tenants."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gateway.fairness import TenantShares

LARGE, SMALL = "large-credential", "small-credential"


class Requests:
    """Requests that take a place and hold it until released."""

    def __init__(self, shares: TenantShares) -> None:
        self.shares = shares
        self.started: list[str] = []
        self.release = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def send(self, tenant: str, name: str) -> asyncio.Task[None]:
        async def request() -> None:
            async with self.shares.place(tenant):
                self.started.append(name)
                await self.release.wait()

        task = asyncio.create_task(request())
        self.tasks.append(task)
        return task

    async def settle(self) -> None:
        """Let every task run until it holds a place or waits for one."""
        for _ in range(20):
            await asyncio.sleep(0)

    async def finish(self) -> None:
        self.release.set()
        async with asyncio.timeout(1):
            await asyncio.gather(*self.tasks, return_exceptions=True)


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(1):
        while not condition():
            await asyncio.sleep(0)


async def test_one_tenant_alone_gets_the_whole_budget() -> None:
    requests = Requests(TenantShares(budget=4))
    for n in range(6):
        requests.send(LARGE, f"large-{n}")
    await requests.settle()
    assert requests.started == ["large-0", "large-1", "large-2", "large-3"]
    assert requests.shares.in_progress() == {LARGE: (4, 2)}
    await requests.finish()
    assert requests.started[4:] == ["large-4", "large-5"]
    assert requests.shares.in_progress() == {}


async def test_a_second_tenant_goes_ahead_of_the_first_ones_queue() -> None:
    shares = TenantShares(budget=4)
    requests = Requests(shares)
    for n in range(8):
        requests.send(LARGE, f"large-{n}")
    await requests.settle()
    # The small tenant's part is half the budget: it starts at once, even
    # though the large tenant holds the whole budget and has four waiting.
    requests.send(SMALL, "small-0")
    await requests.settle()
    assert requests.started[-1] == "small-0"
    assert shares.in_progress() == {LARGE: (4, 4), SMALL: (1, 0)}


async def test_while_two_tenants_share_the_budget_the_large_one_gets_only_its_half() -> None:
    shares = TenantShares(budget=4)
    large_release = asyncio.Event()
    started: list[str] = []

    async def request(tenant: str, name: str, release: asyncio.Event) -> None:
        async with shares.place(tenant):
            started.append(name)
            await release.wait()

    small_release = asyncio.Event()
    small = asyncio.create_task(request(SMALL, "small", small_release))
    await until(lambda: started == ["small"])
    large = [asyncio.create_task(request(LARGE, f"large-{n}", large_release)) for n in range(4)]
    await until(lambda: len(started) == 3)
    assert shares.in_progress() == {SMALL: (1, 0), LARGE: (2, 2)}
    # When the small tenant leaves, the large one gets the whole budget back.
    small_release.set()
    await small
    await until(lambda: len(started) == 5)
    assert shares.in_progress() == {LARGE: (4, 0)}
    large_release.set()
    await asyncio.gather(*large)
    assert shares.in_progress() == {}


async def test_a_failing_request_gives_its_place_back() -> None:
    shares = TenantShares(budget=1)
    with pytest.raises(RuntimeError):
        async with shares.place(LARGE):
            raise RuntimeError("boom")
    assert shares.in_progress() == {}
    async with asyncio.timeout(1), shares.place(LARGE):
        assert shares.in_progress() == {LARGE: (1, 0)}


async def test_a_cancelled_waiter_gives_up_its_turn() -> None:
    requests = Requests(TenantShares(budget=1))
    requests.send(LARGE, "holder")
    waiter = requests.send(LARGE, "waiter")
    requests.send(LARGE, "next")
    await requests.settle()
    assert requests.shares.in_progress() == {LARGE: (1, 2)}
    waiter.cancel()
    await requests.settle()
    assert requests.shares.in_progress() == {LARGE: (1, 1)}
    await requests.finish()
    assert requests.started == ["holder", "next"]
    assert requests.shares.in_progress() == {}


async def test_a_request_cancelled_just_after_its_turn_came_passes_the_place_on() -> None:
    requests = Requests(TenantShares(budget=1))
    holder = requests.send(LARGE, "holder")
    unlucky = requests.send(LARGE, "unlucky")
    requests.send(LARGE, "next")
    await requests.settle()
    # The holder finishes (its place goes to "unlucky"), and "unlucky" is
    # cancelled before it could run: the place must go on to "next".
    holder.cancel()
    await asyncio.sleep(0)
    unlucky.cancel()
    await requests.finish()
    assert "next" in requests.started
    assert requests.shares.in_progress() == {}


async def test_zero_means_no_limit() -> None:
    requests = Requests(TenantShares(budget=0))
    for n in range(50):
        requests.send(LARGE, f"large-{n}")
    await until(lambda: len(requests.started) == 50)
    await requests.finish()


async def test_a_waiter_cancelled_while_the_place_frees_up_is_skipped() -> None:
    requests = Requests(TenantShares(budget=1))
    holder = requests.send(LARGE, "holder")
    waiter = requests.send(LARGE, "waiter")
    requests.send(LARGE, "next")
    await requests.settle()
    # Both in the same turn of the loop: the holder's place is handed on
    # while the waiter's turn is already cancelled, so it goes to "next".
    holder.cancel()
    waiter.cancel()
    await requests.finish()
    assert waiter.cancelled()  # and not failed on the way out
    assert requests.started == ["holder", "next"]
    assert requests.shares.in_progress() == {}
