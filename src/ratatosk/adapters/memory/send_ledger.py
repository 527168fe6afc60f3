"""Sends by message id and claimed SIDs in one process (satisfies ``ports.SendLedger``).

Bounded like every in-memory store here: finished ids and claimed SIDs are
kept for ``ttl`` seconds and at most ``max_entries`` of each (10,000 by
default, about 7 MB), oldest dropped first, so memory stays flat however
long the process sends. Dropping early means a message id repeated after
10,000 newer ones is sent again, and a reconcile that waited while more than
10,000 other sends were answered could miss a claim: a process that sends
that much needs a bigger bound or a shared ledger, which keeps everything
for ``ttl``.

An id being sent is held for ``lease`` seconds: long enough for any send
under the retry policy (its deadline, a reconcile, the list calls), so a
live holder never loses it; a holder that vanished without finishing (a
task killed without its cleanup) stops holding it when the lease runs out.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from ...ports import DEFAULT_SEND_LEASE, LaneMember, LedgerEntry, LedgerState

_Entry = TypeVar("_Entry", bound=tuple[Any, ...])


class _Id(NamedTuple):
    """One message id: kept until ``expires``; held while ``held_until`` is set."""

    expires: float
    fingerprint: str
    outcome: Mapping[str, object] | None
    settled: bool
    held_until: float | None  #: the holder's lease ends then (monotonic); None: not held
    first_attempt: dt.datetime | None


class InMemorySendLedger:
    """Message ids, lanes and SIDs in dicts; see :class:`ratatosk.ports.SendLedger`."""

    __slots__ = ("_claims", "_ghost_ttl", "_ids", "_lanes", "_lease", "_max", "_now", "_ttl")

    def __init__(
        self,
        monotonic: Callable[[], float],
        *,
        ttl: float = 24 * 3600.0,
        max_entries: int = 10_000,
        ghost_ttl: float = 300.0,
        lease: float = DEFAULT_SEND_LEASE,
    ) -> None:
        if ttl <= 0 or max_entries < 1 or lease <= 0:
            raise ValueError("ttl and lease must be positive and max_entries at least 1")
        self._now = monotonic
        self._ttl = ttl
        self._max = max_entries
        self._lease = lease
        self._ids: OrderedDict[str, _Id] = OrderedDict()
        # lane -> send -> (what it looks like and whether it is looking, kept until)
        self._lanes: dict[str, dict[str, tuple[LaneMember, float]]] = {}
        self._ghost_ttl = ghost_ttl
        # sid -> (expires, send)
        self._claims: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def __repr__(self) -> str:
        return f"InMemorySendLedger(ids={len(self._ids)}, claimed={len(self._claims)})"

    async def begin(
        self,
        message_id: str,
        fingerprint: str,
        *,
        at: dt.datetime | None = None,
        reopen: bool = False,
    ) -> LedgerEntry:
        now = self._now()
        _expire(self._ids, now)
        known = self._ids.get(message_id)
        if known is None:  # not kept: stored last with no pop, as _keep would
            ids = self._ids
            ids[message_id] = _Id(now + self._ttl, fingerprint, None, True, now + self._lease, at)
            if len(ids) > self._max:
                _bound(ids, self._max)
            return LedgerEntry(state=LedgerState.NEW, first_attempt=at)
        first = known.first_attempt
        if known.fingerprint != fingerprint:
            return LedgerEntry(state=LedgerState.CONFLICT)
        if known.held_until is not None:
            if known.held_until > now:
                return LedgerEntry(state=LedgerState.IN_FLIGHT, first_attempt=first)
            state = LedgerState.ABANDONED
        elif reopen and not known.settled:
            state = LedgerState.REOPENED
        else:
            return LedgerEntry(state=LedgerState.DONE, outcome=known.outcome, first_attempt=first)
        self._keep(
            message_id, known._replace(expires=now + self._ttl, held_until=now + self._lease)
        )
        return LedgerEntry(state=state, outcome=known.outcome, first_attempt=first)

    async def finish(
        self, message_id: str, outcome: Mapping[str, object] | None, *, settled: bool = True
    ) -> None:
        known = self._ids.pop(message_id, None)
        if known is not None and outcome is not None:
            # Stored last (expiry order); one out, one in, so the bound still holds.
            self._ids[message_id] = _Id(
                self._now() + self._ttl,
                known.fingerprint,
                dict(outcome),
                settled,
                None,
                known.first_attempt,
            )

    def _keep(self, message_id: str, entry: _Id) -> None:
        """Store ``entry`` last: insertion order stays expiry order (one ttl for all)."""
        self._ids.pop(message_id, None)
        self._ids[message_id] = entry
        _bound(self._ids, self._max)

    async def lane_enter(self, lane: str, send: str, key: str) -> None:
        self._lanes.setdefault(lane, {})[send] = (LaneMember(key), math.inf)

    async def lane_reconciling(self, lane: str, send: str) -> None:
        sends = self._lanes.get(lane, {})
        held = sends.get(send)
        if held is not None:
            sends[send] = (LaneMember(held[0].key, reconciling=True), held[1])

    async def lane_leave(self, lane: str, send: str, *, settled: bool = True) -> None:
        sends = self._lanes.get(lane)
        if sends is None:
            return
        held = sends.pop(send, None)
        if not settled and held is not None:
            ghost = LaneMember(held[0].key, reconciling=True)
            sends[send] = (ghost, self._now() + self._ghost_ttl)
        if not sends:
            del self._lanes[lane]

    async def lane_others(self, lane: str, send: str) -> Mapping[str, LaneMember]:
        sends = self._lanes.get(lane, {})
        now = self._now()
        for gone in [s for s, (_, until) in sends.items() if until <= now]:
            del sends[gone]
        return {s: member for s, (member, _) in sends.items() if s != send}

    async def claim_sid(self, sid: str, send: str, *, adopted: bool) -> str | None:
        now = self._now()
        _expire(self._claims, now)
        held = self._claims.get(sid)
        holder = None if held is None or held[1] == send else held[1]
        if holder is not None and adopted:
            return holder
        claims = self._claims
        if held is not None:
            del claims[sid]  # stored again last: insertion order stays expiry order
        claims[sid] = (now + self._ttl, send)
        if len(claims) > self._max:
            _bound(claims, self._max)
        return holder

    async def claimed(self, sids: Sequence[str]) -> frozenset[str]:
        _expire(self._claims, self._now())
        return frozenset(sid for sid in sids if sid in self._claims)


def _expire(entries: OrderedDict[str, _Entry], now: float) -> None:
    # Insertion order is expiry order (one ttl for all), so stop at the first live entry.
    while entries:
        first = next(iter(entries.values()))
        if first[0] > now:
            return
        entries.popitem(last=False)


def _bound(entries: OrderedDict[str, _Entry], limit: int) -> None:
    while len(entries) > limit:
        entries.popitem(last=False)
