from __future__ import annotations

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
