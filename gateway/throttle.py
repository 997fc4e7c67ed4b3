"""Failed-authentication throttling, per client address, in memory.

Repeated bad tokens from one client get 429 with Retry-After instead of 401,
which slows token guessing and scanners down. A request with a *valid* token
gets through even from a throttled address: Okta and Entra send from shared
egress addresses, and Entra quarantines an app that keeps answering it 429.
A token this process knows is never throttled; one it has not seen yet is
looked up at most once a second per throttled address (gateway/auth.py).

Counters live in each gateway process (no shared state, no extra round
trip); with N web processes a client gets up to N times the limit.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from gateway.bounded import BoundedMap


class FailedAuthThrottle:
    """
    :param limit: failed attempts per client allowed within ``window``.
    :param window: seconds over which failures are counted.
    :param max_clients: addresses tracked at once; the least recently failing
        are forgotten first, so memory stays bounded under a spray of addresses.
    :param clock: a monotonic clock (replaced in tests).
    """

    def __init__(
        self,
        limit: int = 20,
        window: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: BoundedMap[str, deque[float]] = BoundedMap(max_clients)

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may fail again, or None when it is not throttled."""
        failures = self._recent(client)
        if failures is None or len(failures) < self.limit:
            return None
        return max(1, int(failures[0] + self.window - self.clock()) + 1)

    def record_failure(self, client: str) -> None:
        failures = self._recent(client)
        if failures is None:
            failures = deque(maxlen=self.limit)
        failures.append(self.clock())
        self._failures.put(client, failures)

    def clear(self) -> None:
        """Forget every client (tests; an operator after an incident)."""
        self._failures.clear()

    def _recent(self, client: str) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        horizon = self.clock() - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            self._failures.forget(client)
            return None
        return failures
