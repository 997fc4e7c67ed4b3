from __future__ import annotations

from gateway.admin.sign_in import SignInThrottles, record_failed_sign_in, refused_for
from gateway.throttle import FailedAuthThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_is_throttled_after_the_limit_until_the_window_passes() -> None:
    clock = Clock()
    throttle = FailedAuthThrottle(limit=3, window=60, clock=clock)
    for _ in range(3):
        assert throttle.retry_after("a") is None
        throttle.record_failure("a")
    assert throttle.retry_after("a") == 61
    assert throttle.retry_after("b") is None  # other clients are unaffected
    clock.now += 30
    assert throttle.retry_after("a") == 31
    clock.now += 31
    assert throttle.retry_after("a") is None


def test_memory_stays_bounded_under_a_spray_of_addresses() -> None:
    throttle = FailedAuthThrottle(limit=2, window=60, max_clients=100, clock=Clock())
    for n in range(1000):
        throttle.record_failure(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle._failures) == 100


def sign_in_throttles(clock: Clock) -> SignInThrottles:
    """As gateway/admin/sign_in.py builds them, with 3 failures allowed, on ``clock``."""
    return (
        FailedAuthThrottle(limit=3, window=900, clock=clock),
        FailedAuthThrottle(limit=3, window=900, clock=clock),
        FailedAuthThrottle(limit=1, window=900, clock=clock),
    )


def test_an_account_under_attack_refuses_only_the_addresses_that_failed_on_it() -> None:
    clock = Clock()
    throttles = sign_in_throttles(clock)
    record_failed_sign_in(throttles, "10.0.0.1", "acme:victim")
    assert refused_for(throttles, "10.0.0.1", "acme:victim") is None  # one typo: try again
    clock.now += 600
    record_failed_sign_in(throttles, "10.0.0.2", "acme:victim")
    record_failed_sign_in(throttles, "10.0.0.3", "acme:victim")

    # Under attack: the addresses that failed wait until the account's oldest
    # failure or their own last one leaves the window, whichever comes first.
    assert refused_for(throttles, "10.0.0.1", "acme:victim") == 301
    assert refused_for(throttles, "10.0.0.3", "acme:victim") == 301
    assert refused_for(throttles, "10.0.0.4", "acme:victim") is None  # never failed on it
    assert refused_for(throttles, "10.0.0.1", "acme:other") is None  # another account
    clock.now += 301
    assert refused_for(throttles, "10.0.0.3", "acme:victim") is None


def test_an_address_past_its_own_limit_is_refused_for_every_account() -> None:
    clock = Clock()
    throttles = sign_in_throttles(clock)
    for account in ("acme:a", "acme:b", "acme:c"):
        record_failed_sign_in(throttles, "10.0.0.9", account)
    assert refused_for(throttles, "10.0.0.9", "acme:d") == 901
    assert refused_for(throttles, "10.0.0.8", "acme:a") is None
