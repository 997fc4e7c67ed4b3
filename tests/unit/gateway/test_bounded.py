"""The one bound on the gateway's per-process memories (gateway/bounded.py)."""

from __future__ import annotations

from gateway.bounded import BoundedMap


def test_the_least_recently_used_entry_is_forgotten_past_the_size() -> None:
    seen: BoundedMap[str, int] = BoundedMap(2)
    seen.put("a", 1)
    seen.put("b", 2)
    assert seen.get("a") == 1  # now the most recent
    seen.put("c", 3)
    assert (seen.get("a"), seen.get("b"), seen.get("c")) == (1, None, 3)
    assert len(seen) == 2


def test_a_spray_of_keys_stays_within_the_size() -> None:
    seen: BoundedMap[int, int] = BoundedMap(100)
    for key in range(10_000):
        seen.put(key, key)
    assert len(seen) == 100 and seen.get(9_999) == 9_999 and seen.get(0) is None
    seen.forget(9_999)
    assert seen.get(9_999) is None
