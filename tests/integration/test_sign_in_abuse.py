"""Admin sign-in under abuse: lock-outs by strangers, and argon2 memory.

What this proves:

* failures on an account from other addresses do not stop its admin signing
  in from theirs, while a guesser is still stopped: once an account has had
  ``sign_in_failures`` failures (from anywhere) within 15 minutes, an
  address that has itself failed on it is refused (429), and each new
  address gets one guess; an address over its own limit is refused for
  every account, even with the right password;
* a process runs at most ``password_hashes_at_once`` argon2 computations
  (64 MiB each) at once, however many sign-ins arrive together, and with
  ``password_hashes_waiting`` more waiting, it answers the next at once
  with 503 and Retry-After instead of queueing without end.

The argon2 computations are observed by wrapping the real hasher (they still
run) and holding each one inside until the test has seen how many are in.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine

from gateway.admin import passwords, sign_in
from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import TenantHandle
from tests.integration.admin_client import (
    PASSWORD,
    browser,
    create_admin,
    submit_login,
)
from tests.integration.admin_client import sign_in as signs_in

VICTIM = "victim@acme.test"
WRONG = "not the password!"


def settings_app(settings: Settings, **overrides: Any) -> Any:
    return create_app(
        Settings(database_url=settings.database_url, base_domain="simpleams.test", **overrides)
    )


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Any]:
    """A gateway with the default limits and counters of its own."""
    application = settings_app(settings)
    yield application
    await application.state.engine.dispose()


@pytest.fixture
def victim(db: Engine, tenant: TenantHandle) -> str:
    create_admin(db, tenant.slug, VICTIM)
    return VICTIM


async def attempt(app: Any, address: str, email: str, password: str = WRONG) -> httpx2.Response:
    async with browser(app, client=(address, 4000)) as http:
        return await submit_login(http, "acme", email, password)


def assert_throttled(answer: httpx2.Response) -> None:
    assert answer.status_code == 429, answer.text[:300]
    assert 1 <= int(answer.headers["retry-after"]) <= 901
    assert "Too many failed sign-ins" in answer.text


# --- lock-out by strangers ----------------------------------------------------


async def test_failures_from_other_addresses_do_not_lock_the_admin_out(
    gateway: Any, victim: str
) -> None:
    # 12 failures (the limit is 10), each from an address of its own.
    for n in range(12):
        answer = await attempt(gateway, f"10.9.0.{n}", victim.upper())
        assert answer.status_code == 400, (n, answer.status_code)
    assert_throttled(await attempt(gateway, "10.9.0.0", victim))

    async with browser(gateway, client=("192.0.2.10", 5000)) as own_laptop:
        await signs_in(own_laptop, "acme", victim)


async def test_once_an_account_is_under_attack_each_address_gets_one_guess(
    gateway: Any, victim: str
) -> None:
    guessers = [f"10.9.1.{n}" for n in range(5)]
    for n in range(10):
        assert (await attempt(gateway, guessers[n % 5], victim)).status_code == 400

    # Every address that has failed on it is refused, even with the right password.
    for address in guessers:
        assert_throttled(await attempt(gateway, address, victim))
        assert_throttled(await attempt(gateway, address, victim, PASSWORD))
    # A new address gets one guess on it, and no second.
    assert (await attempt(gateway, "10.9.2.1", victim)).status_code == 400
    assert_throttled(await attempt(gateway, "10.9.2.1", victim))


async def test_an_address_over_its_own_limit_is_refused_for_every_account(
    gateway: Any, db: Engine, victim: str
) -> None:
    create_admin(db, "acme", "second@acme.test")
    for n in range(10):
        answer = await attempt(gateway, "10.9.3.1", f"nobody{n}@acme.test")
        assert answer.status_code == 400
    assert_throttled(await attempt(gateway, "10.9.3.1", victim, PASSWORD))
    assert_throttled(await attempt(gateway, "10.9.3.1", "second@acme.test", PASSWORD))
    # Its failures were on other accounts: the victim is not under attack.
    assert (await attempt(gateway, "10.9.3.2", victim, PASSWORD)).status_code == 303


# --- argon2 work per process -----------------------------------------------------


class HeldHasher:
    """The real PasswordHasher, counting the computations in it and holding
    each until ``release`` is set (they never wait forever: 60 s)."""

    def __init__(self) -> None:
        self.real = passwords._hasher
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.inside = 0
        self.peak = 0
        self.entered = 0

    def _held(self, compute: Callable[[], Any]) -> Any:
        with self.lock:
            self.inside += 1
            self.entered += 1
            self.peak = max(self.peak, self.inside)
        try:
            assert self.release.wait(timeout=60), "the test never released the hasher"
            return compute()
        finally:
            with self.lock:
                self.inside -= 1

    def verify(self, password_hash: str, password: str) -> bool:
        return bool(self._held(lambda: self.real.verify(password_hash, password)))


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> HeldHasher:
    held = HeldHasher()
    monkeypatch.setattr(passwords, "_hasher", held)
    return held


async def until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll ``condition`` (which reads other threads' counters) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)  # polling interval while waiting on a condition with a deadline


async def test_concurrent_sign_ins_run_at_most_two_argon2_computations_at_once(
    gateway: Any, victim: str, hasher: HeldHasher
) -> None:
    bound, arriving = 2, 6
    tasks = [
        asyncio.create_task(attempt(gateway, f"10.9.4.{n}", victim, PASSWORD))
        for n in range(arriving)
    ]
    try:
        # Every sign-in is in: `bound` of them inside argon2, the rest waiting
        # for it (or, without a bound, more than `bound` inside).
        await until(
            lambda: (
                hasher.peak > bound
                or hasher.entered == arriving
                or (
                    hasher.inside == bound
                    and sign_in.password_hashing(gateway).in_progress == arriving
                )
            ),
            "every sign-in to reach argon2",
        )
        assert hasher.peak == bound
        assert hasher.entered == bound
    finally:
        hasher.release.set()
    answers = await asyncio.gather(*tasks)
    assert [answer.status_code for answer in answers] == [303] * arriving
    assert hasher.peak == bound and hasher.entered == arriving


async def test_past_the_waiting_room_a_sign_in_gets_503_without_argon2(
    settings: Settings, victim: str, hasher: HeldHasher
) -> None:
    gateway = settings_app(settings, password_hashes_at_once=1, password_hashes_waiting=1)
    try:
        first = asyncio.create_task(attempt(gateway, "10.9.5.1", victim, PASSWORD))
        second = asyncio.create_task(attempt(gateway, "10.9.5.2", victim, PASSWORD))
        try:
            await until(
                lambda: hasher.inside == 1 and sign_in.password_hashing(gateway).in_progress == 2,
                "one sign-in in argon2 and one waiting",
            )
            turned_away = await attempt(gateway, "10.9.5.3", victim, PASSWORD)
            assert turned_away.status_code == 503, turned_away.text[:300]
            assert 1 <= int(turned_away.headers["retry-after"]) <= 10
            assert "Too many sign-ins at once" in turned_away.text
            assert hasher.entered == 1
        finally:
            hasher.release.set()
        assert (await first).status_code == 303
        assert (await second).status_code == 303
        # Turned away is not a failure: that address signs in now.
        assert (await attempt(gateway, "10.9.5.3", victim, PASSWORD)).status_code == 303
        assert hasher.entered == 3
    finally:
        await gateway.state.engine.dispose()
