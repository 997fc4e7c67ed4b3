"""Admin passwords: argon2id hashes (argon2-cffi, RFC 9106 parameters).

Hashing is deliberately slow (tens of milliseconds of CPU and 64 MiB), so
the async pages call it through a ``HashingLimit``, never on the event loop:
a few threads of its own, so that a burst of sign-ins costs a bounded amount
of memory (six at once took the web process from 109 to 488 MB RSS).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
MAX_LENGTH = 1024  # argon2 takes any length; this only bounds the work per attempt

_hasher = PasswordHasher()
# Verified when the email is unknown, so that a wrong email costs as much time
# as a wrong password and sign-in timing does not reveal who is an admin.
_DUMMY_HASH = _hasher.hash("not a password anyone has")


T = TypeVar("T")


class WeakPassword(ValueError):
    """A password the CLI refuses to set, with the reason."""


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"Use at least {MIN_LENGTH} characters (a passphrase is fine).")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"Use at most {MAX_LENGTH} characters.")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; with no hash (unknown admin) always False, as slowly."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password[:MAX_LENGTH]) and (
            password_hash is not None
        )
    except (VerificationError, InvalidHashError):
        return False


class HashingBusy(Exception):
    """As many argon2 computations as allowed are running and waiting: try again shortly."""


class HashingLimit:
    """At most ``at_once`` argon2 computations at a time in this process, and
    at most ``waiting`` more queued for them; past that, ``HashingBusy`` at
    once, so waiting sign-ins cannot pile up either.

    The computations run on threads of their own: a request that stops
    waiting (the client went away) frees its place in the queue, or, once
    its computation has started, holds its thread until it ends, so the
    bound holds whatever the callers do.
    """

    def __init__(self, at_once: int = 2, waiting: int = 8) -> None:
        if at_once < 1 or waiting < 0:
            raise ValueError("at_once must be at least 1 and waiting at least 0")
        self.at_once = at_once
        self.waiting = waiting
        self._threads = ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="argon2")
        self._lock = threading.Lock()
        self._in_progress = 0

    @property
    def in_progress(self) -> int:
        """Computations running or queued."""
        return self._in_progress

    async def verify(self, password_hash: str | None, password: str) -> bool:
        return await self._run(lambda: verify(password_hash, password))

    async def _run(self, compute: Callable[[], T]) -> T:
        with self._lock:
            if self._in_progress >= self.at_once + self.waiting:
                raise HashingBusy
            self._in_progress += 1
        try:
            future = self._threads.submit(compute)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    def _done(self, _future: Future[Any] | None) -> None:
        # Called when the computation ended, or was cancelled before it started.
        with self._lock:
            self._in_progress -= 1
