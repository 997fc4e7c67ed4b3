"""Tenants share a web process fairly: a budget of SCIM requests in progress.

A web process serves every tenant from one event loop, first come, first
served, and every request in progress slows all the others down (each of
its database round trips puts it back in the loop's queue). An IdP's
initial sync keeps many connections busy (Okta and Entra use 16 or more),
so without a budget a small tenant's request would queue behind every one
of a large tenant's: 9-10x its p99 alone in bench/two_tenants.py.

So each process lets ``budget`` SCIM requests be in progress and splits it
evenly between the tenants that have requests in it: one tenant alone gets
all of it, two get half each, and so on, never less than one. The budget is
small (4 by default) because 4 requests in progress keep a process as busy
as 12 do, while each one more makes every other request wait longer: a
small tenant's p99 during a large tenant's sync is 2.9x its p99 alone with
4, 7x with 12 (docs/performance.md, "Requests in progress per process").
Requests beyond their tenant's part wait, in the order they came, before any
work is done for them. Measured in docs/performance.md, "Two tenants
(fairness)".

A request takes its place last (gateway/auth.py): once its token is known
to be a tenant's (so a forged token, whose checksum anyone can compute,
never becomes a "tenant" of its own and never dilutes the others' parts),
and once its whole body has arrived (so a client that stalls or leaves
mid-body holds no place: four such POSTs used to hold a tenant's whole
budget). A tenant is named by its id. What a waiting request has cost is
one credential lookup, usually answered by the credential cache, and its
body in memory (at most ``max_body_bytes``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class _Tenant:
    def __init__(self) -> None:
        self.running = 0
        self.waiting: deque[asyncio.Future[None]] = deque()


class TenantShares:
    """At most ``budget`` requests in progress, split between tenants; 0: no limit."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        # Only tenants with requests in progress or waiting: idle ones hold no memory.
        self._tenants: dict[str, _Tenant] = {}

    def _part(self) -> int:
        return max(1, self.budget // max(1, len(self._tenants)))

    @asynccontextmanager
    async def place(self, tenant: str) -> AsyncIterator[None]:
        if self.budget <= 0:
            yield
            return
        state = self._tenants.get(tenant)
        if state is None:
            state = self._tenants[tenant] = _Tenant()
        if state.waiting or state.running >= self._part():
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            state.waiting.append(turn)
            try:
                await turn  # _wake() counts us as running before it resolves the turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._leave(tenant, state)  # given a place, then cancelled
                else:
                    if turn in state.waiting:  # _wake() may have dropped it already
                        state.waiting.remove(turn)
                    self._forget_if_idle(tenant, state)
                    self._wake()
                raise
        else:
            state.running += 1
        try:
            yield
        finally:
            self._leave(tenant, state)

    def _leave(self, tenant: str, state: _Tenant) -> None:
        state.running -= 1
        self._forget_if_idle(tenant, state)
        self._wake()

    def _forget_if_idle(self, tenant: str, state: _Tenant) -> None:
        if state.running == 0 and not state.waiting:
            del self._tenants[tenant]

    def _wake(self) -> None:
        """Give freed places (and larger parts, when a tenant left) to waiting requests."""
        part = self._part()
        for state in self._tenants.values():
            while state.waiting and state.running < part:
                turn = state.waiting.popleft()
                if not turn.done():
                    state.running += 1
                    turn.set_result(None)

    def in_progress(self) -> dict[str, tuple[int, int]]:
        """(running, waiting) per tenant with requests in this process."""
        return {name: (s.running, len(s.waiting)) for name, s in self._tenants.items()}
