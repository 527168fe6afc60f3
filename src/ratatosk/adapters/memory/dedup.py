"""In-memory webhook deduplication (adapters layer): a bounded TTL store with leases.

Satisfies ``ratatosk.ports.Deduplicator`` for one process. Bounded twice, so
a flood of distinct keys cannot grow memory without limit: completed keys
expire after ``ttl`` seconds, and past ``max_entries`` the oldest are dropped
first. Dropping early only risks handling a very old repeat twice, never
losing an event. A claim in flight lapses after ``lease`` seconds, so a
handler that never finished (a task killed mid-way) cannot block its event
for good. Several server processes need a shared store (Redis) behind the
same port; ``tests/ports/test_deduplicator_contract.py`` is the suite it must pass.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from ...ports import Claim


class _Entry:
    """One key's state; the event a repeat waits on exists only once someone waits."""

    __slots__ = ("done", "expires", "settled")

    def __init__(self, done: bool, expires: float) -> None:
        self.done = done
        self.expires = expires
        #: Set when the claim settles (completed, released, lapsed or dropped): waiters look
        #: again. Made by the first waiter: nearly every key is settled with nobody waiting.
        self.settled: asyncio.Event | None = None

    def settle(self) -> None:
        if self.settled is not None:
            self.settled.set()


class InMemoryDeduplicator:
    """Keys claimed or handled lately: at most ``max_entries``, handled ones for ``ttl`` s."""

    __slots__ = ("_entries", "_lease", "_max", "_now", "_ttl")

    def __init__(
        self,
        *,
        ttl: float = 24 * 3600.0,
        lease: float = 120.0,
        max_entries: int = 100_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0 or lease <= 0 or max_entries < 1:
            raise ValueError("ttl and lease must be positive and max_entries at least 1")
        self._ttl = ttl
        self._lease = lease
        self._max = max_entries
        self._now = monotonic
        # Oldest first: a claim is appended, a completion moves its key to the end.
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (
            f"InMemoryDeduplicator(ttl={self._ttl}, lease={self._lease}, "
            f"entries={len(self._entries)}/{self._max})"
        )

    async def claim(self, key: str, *, wait: float = 0.0) -> Claim:
        deadline: float | None = None  # read the loop's clock only for a repeat that waits
        while True:
            now = self._now()
            self._expire(now)
            entry = self._entries.get(key)
            if entry is not None and entry.expires <= now:  # lapsed lease or expired key
                self._drop(key)
                entry = None
            if entry is None:  # no await between the look and the claim: atomic in asyncio
                self._entries[key] = _Entry(done=False, expires=now + self._lease)
                self._trim()
                return Claim.FIRST
            if entry.done:
                return Claim.REPEAT
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + max(wait, 0.0)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return Claim.IN_FLIGHT
            if entry.settled is None:
                entry.settled = asyncio.Event()
            try:  # wake at the outcome, the end of the wait, or when the lease lapses
                async with asyncio.timeout(min(remaining, entry.expires - now)):
                    await entry.settled.wait()
            except TimeoutError:
                pass

    async def complete(self, key: str) -> None:
        expires = self._now() + self._ttl
        entry = self._entries.pop(key, None)  # re-inserted last: completions stay in time order
        if entry is None:
            entry = _Entry(done=True, expires=expires)
        else:
            entry.done, entry.expires = True, expires
            entry.settle()
            entry.settled = None  # the waiters hold it; nobody waits on a handled key
        self._entries[key] = entry
        self._trim()

    async def release(self, key: str) -> None:
        entry = self._entries.get(key)
        if entry is not None and not entry.done:
            self._drop(key)

    def _trim(self) -> None:
        while len(self._entries) > self._max:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        self._entries.pop(key).settle()

    def _expire(self, now: float) -> None:
        # Completions are appended in time order, so stop at the first live key; a
        # claim in flight found on the way is checked against its own lease on lookup.
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.expires > now:
                return
            self._drop(key)
