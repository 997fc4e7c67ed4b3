"""A mapping that forgets its least recently used entries past a size.

The gateway keeps a few small memories per process, each keyed by something
a client chooses (an address, a token hash, a query): failed authentications
(gateway/throttle.py), refused and valid tokens and throttled lookups
(gateway/auth.py), where the next page of a sequential read starts
(gateway/scim/paging.py). A client spraying keys must not grow them without
bound; this is their one bound.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedMap(Generic[K, V]):
    """At most ``size`` entries; reading or writing one makes it the most recent,
    and a write past the size forgets the least recent."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
