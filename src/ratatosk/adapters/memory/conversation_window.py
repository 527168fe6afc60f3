"""In-memory conversation windows (adapters layer).

Satisfies ``ratatosk.ports.ConversationWindow``: the latest inbound time per
(customer, business number) and per customer, bounded to ``max_entries``
pairs (least recently written dropped first; a dropped pair only makes the
guard refuse a free-form send it could have allowed, never the reverse).
One process only: several receivers need a shared store behind the port.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Hashable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


class InMemoryConversationWindows:
    """Last inbound message times, newest wins, bounded."""

    __slots__ = ("_any", "_max", "_pairs")

    def __init__(self, *, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._pairs: OrderedDict[tuple[str, str], dt.datetime] = OrderedDict()
        self._any: OrderedDict[str, dt.datetime] = OrderedDict()

    def __repr__(self) -> str:
        return f"InMemoryConversationWindows(pairs={len(self._pairs)}/{self._max})"

    async def record_inbound(self, customer: str, business: str, at: dt.datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("inbound times must be timezone-aware")
        _keep_latest(self._pairs, (customer, business), at, self._max)
        _keep_latest(self._any, customer, at, self._max)

    async def last_inbound(self, customer: str, business: str | None) -> dt.datetime | None:
        if business is None:
            return self._any.get(customer)
        return self._pairs.get((customer, business))


def _keep_latest(store: OrderedDict[K, dt.datetime], key: K, at: dt.datetime, limit: int) -> None:
    # Webhooks can arrive out of order: an older time never moves the window back.
    previous = store.pop(key, None)
    store[key] = at if previous is None or at > previous else previous
    while len(store) > limit:
        store.popitem(last=False)
