"""The outbound queue in one process (satisfies ``ports.OutboundQueue``).

For an application that submits and drains in the same process (tests,
``make run``, a single replica): the same semantics as the Redis Streams
adapter (named consumers, pending entries, reclaim after the visibility
timeout, delivery counts, dead letters, results by message id) without a
server, and without durability: what the process held dies with it.
Bounded like the other in-memory stores: results are kept ``result_ttl``
seconds and at most ``max_results``, dead letters at most ``max_dead``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import attrs

from ...ports import DeadLetter, QueuedSend, QueueStats


@attrs.define
class _Pending:
    entry: QueuedSend
    consumer: str
    touched: float


class InMemoryOutboundQueue:
    """Entries, pending entries and results in dicts; see :class:`ratatosk.ports.OutboundQueue`.

    ``monotonic`` is the clock the visibility timeout and the results' TTL
    are measured on (a test passes a manual one).
    """

    def __init__(
        self,
        monotonic: Callable[[], float],
        *,
        visibility_timeout: float = 30.0,
        result_ttl: float = 24 * 3600.0,
        max_results: int = 100_000,
        max_dead: int = 10_000,
    ) -> None:
        if visibility_timeout <= 0 or result_ttl <= 0 or max_results < 1 or max_dead < 1:
            raise ValueError("timeouts must be positive, bounds at least 1")
        self._now = monotonic
        self._visibility: Final = visibility_timeout
        self._result_ttl = result_ttl
        self._max_results = max_results
        self._waiting: deque[QueuedSend] = deque()
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        #: Entry ids added and not yet completed or dead-lettered (waiting or pending).
        self._held: set[str] = set()
        self._results: OrderedDict[str, tuple[float, Mapping[str, object]]] = OrderedDict()
        self._dead: deque[DeadLetter] = deque(maxlen=max_dead)
        self._ids = itertools.count(1)
        self._added = asyncio.Event()

    def __repr__(self) -> str:
        return (
            f"InMemoryOutboundQueue(waiting={len(self._waiting)}, pending={len(self._pending)}, "
            f"dead={len(self._dead)})"
        )

    @property
    def visibility_timeout(self) -> float:
        return self._visibility

    async def add(self, items: Sequence[tuple[str, Mapping[str, object]]]) -> Sequence[str]:
        ids = []
        for message_id, payload in items:
            entry_id = f"{next(self._ids)}-0"
            self._waiting.append(
                QueuedSend(entry_id=entry_id, message_id=message_id, payload=dict(payload))
            )
            ids.append(entry_id)
        self._held.update(ids)
        if ids:
            self._added.set()
        return ids

    async def read(self, consumer: str, *, count: int, block: float = 0.0) -> Sequence[QueuedSend]:
        if not self._waiting and block > 0:
            self._added.clear()
            try:
                await asyncio.wait_for(self._added.wait(), block)
            except TimeoutError:
                return []
        taken: list[QueuedSend] = []
        now = self._now()
        while self._waiting and len(taken) < count:
            entry = self._waiting.popleft()
            self._pending[entry.entry_id] = _Pending(entry, consumer, now)
            taken.append(entry)
        return taken

    async def reclaim(self, consumer: str, *, count: int) -> Sequence[QueuedSend]:
        now = self._now()
        taken: list[QueuedSend] = []
        for held in self._pending.values():
            if len(taken) >= count:
                break
            if now - held.touched >= self._visibility:
                held.entry = attrs.evolve(held.entry, deliveries=held.entry.deliveries + 1)
                held.consumer = consumer
                held.touched = now
                taken.append(held.entry)
        return taken

    async def extend(self, consumer: str, entry_ids: Sequence[str]) -> None:
        now = self._now()
        for entry_id in entry_ids:
            held = self._pending.get(entry_id)
            if held is not None and held.consumer == consumer:
                held.touched = now

    async def release(self, consumer: str, entry_ids: Sequence[str]) -> None:
        for entry_id in entry_ids:
            held = self._pending.get(entry_id)
            if held is not None and held.consumer == consumer:
                held.touched = self._now() - self._visibility

    async def complete(self, entry: QueuedSend, result: Mapping[str, object]) -> bool:
        self._pending.pop(entry.entry_id, None)
        self._held.discard(entry.entry_id)
        return self._record(entry.message_id, result)

    async def dead_letter(
        self, entry: QueuedSend, reason: str, result: Mapping[str, object]
    ) -> bool:
        self._pending.pop(entry.entry_id, None)
        self._held.discard(entry.entry_id)
        self._dead.append(
            DeadLetter(
                entry_id=entry.entry_id,
                message_id=entry.message_id,
                payload=entry.payload,
                deliveries=entry.deliveries,
                reason=reason,
            )
        )
        return self._record(entry.message_id, result)

    def _record(self, message_id: str, result: Mapping[str, object]) -> bool:
        now = self._now()
        self._expire(now)
        if message_id in self._results:
            return False
        self._results[message_id] = (now + self._result_ttl, dict(result))
        while len(self._results) > self._max_results:
            self._results.popitem(last=False)
        return True

    def _expire(self, now: float) -> None:
        while self._results:
            first = next(iter(self._results.values()))
            if first[0] > now:
                return
            self._results.popitem(last=False)

    async def result(self, message_id: str) -> Mapping[str, object] | None:
        self._expire(self._now())
        held = self._results.get(message_id)
        return None if held is None else held[1]

    async def holds(self, entry_ids: Sequence[str]) -> Sequence[bool]:
        return [entry_id in self._held for entry_id in entry_ids]

    async def dead_letters(self, count: int = 100) -> Sequence[DeadLetter]:
        return list(itertools.islice(self._dead, count))

    async def stats(self) -> QueueStats:
        return QueueStats(
            waiting=len(self._waiting), pending=len(self._pending), dead=len(self._dead)
        )
