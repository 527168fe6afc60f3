"""In-memory webhook deduplication (adapters layer): a bounded TTL store.

Satisfies ``ratatosk.ports.Deduplicator``. Bounded twice, so a flood of
distinct keys cannot grow memory without limit: entries expire after
``ttl`` seconds, and past ``max_entries`` the oldest are dropped first.
Dropping early only risks handling a very old repeat twice, never losing
an event. One process only: several server processes need a shared store
(Redis, a database) behind the same port.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class InMemoryDeduplicator:
    """Keys seen in the last ``ttl`` seconds, at most ``max_entries`` of them."""

    __slots__ = ("_max", "_now", "_seen", "_ttl")

    def __init__(
        self,
        *,
        ttl: float = 24 * 3600.0,
        max_entries: int = 100_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0 or max_entries < 1:
            raise ValueError("ttl must be positive and max_entries at least 1")
        self._ttl = ttl
        self._max = max_entries
        self._now = monotonic
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __repr__(self) -> str:
        return f"InMemoryDeduplicator(ttl={self._ttl}, entries={len(self._seen)}/{self._max})"

    def claim(self, key: str) -> bool:
        now = self._now()
        self._expire(now)
        if key in self._seen:
            return False
        self._seen[key] = now + self._ttl
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return True

    def release(self, key: str) -> None:
        self._seen.pop(key, None)

    def _expire(self, now: float) -> None:
        # Insertion order is expiry order (one ttl for all), so stop at the first live key.
        while self._seen:
            key, expires = next(iter(self._seen.items()))
            if expires > now:
                return
            del self._seen[key]
