"""Outbound queue port.

A durable queue of messages to send, drained by workers in other processes
(``ratatosk worker``). The queue holds each message as plain JSON-able data
(``twilio.wire.queued`` encodes and decodes it), so a shared store keeps it as
text and a worker on another machine rebuilds the same ``Message``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import attrs


@attrs.frozen(kw_only=True)
class QueuedSend:
    """One entry as a consumer reads it: which message, and how often it was handed out.

    ``deliveries`` counts the times a consumer was given the entry: 1 when
    read new, one more at each reclaim. ``entry_id`` is the queue's own id,
    what acknowledging names.
    """

    entry_id: str
    message_id: str
    payload: Mapping[str, object] = attrs.field(repr=False)
    deliveries: int = 1


@attrs.frozen(kw_only=True)
class DeadLetter:
    """An entry taken out of the queue for good, and why (read back for an operator)."""

    entry_id: str
    message_id: str
    payload: Mapping[str, object] = attrs.field(repr=False)
    deliveries: int
    reason: str


@attrs.frozen(kw_only=True)
class QueueStats:
    """How much work the queue holds now."""

    waiting: int  #: added, not yet read by any consumer
    pending: int  #: read by a consumer and not acknowledged (being sent, or left for a re-check)
    dead: int  #: dead letters kept


@runtime_checkable
class OutboundQueue(Protocol):
    """Messages waiting to be sent, handed to named consumers of one group, at least once.

    An entry read by a consumer stays *pending* until acknowledged (by
    :meth:`complete` or :meth:`dead_letter`, which also store the message's
    final result). A pending entry its consumer stopped touching for
    ``visibility_timeout`` seconds (the process died, or the worker left it
    to be looked at again later) can be *reclaimed* by any consumer; each
    hand-out counts as a delivery. A consumer keeps the entries it is still
    working on with :meth:`extend`, and hands entries back at once with
    :meth:`release`. Final results are kept by message id for a while (the
    adapter's TTL), first result wins, so a submitter can ask for them.

    Adapters raise :class:`StateStoreError` when their store cannot be asked.
    """

    @property
    def visibility_timeout(self) -> float:
        """Seconds a pending entry may go untouched before another consumer may reclaim it."""
        ...

    async def add(self, items: Sequence[tuple[str, Mapping[str, object]]]) -> Sequence[str]:
        """Append ``(message_id, payload)`` items, in order; their entry ids, in the same order."""
        ...

    async def read(self, consumer: str, *, count: int, block: float = 0.0) -> Sequence[QueuedSend]:
        """Up to ``count`` entries no consumer has had yet, now ``consumer``'s (deliveries 1).

        With none waiting, wait up to ``block`` seconds for some to be added.
        """
        ...

    async def reclaim(self, consumer: str, *, count: int) -> Sequence[QueuedSend]:
        """Up to ``count`` pending entries untouched for ``visibility_timeout``, now ``consumer``'s.

        Each comes with its delivery counted (at least 2).
        """
        ...

    async def extend(self, consumer: str, entry_ids: Sequence[str]) -> None:
        """``consumer`` is still working on these: their untouched time starts again.

        An entry another consumer has reclaimed meanwhile stays that consumer's.
        """
        ...

    async def release(self, consumer: str, entry_ids: Sequence[str]) -> None:
        """Hand ``consumer``'s pending entries back: any consumer may reclaim them now."""
        ...

    async def complete(self, entry: QueuedSend, result: Mapping[str, object]) -> bool:
        """Store ``result`` as the message's final result and acknowledge the entry.

        True when this was the message's first final result; a later one
        (the same message id queued twice) leaves the first in place.
        """
        ...

    async def dead_letter(
        self, entry: QueuedSend, reason: str, result: Mapping[str, object]
    ) -> bool:
        """Move the entry to the dead letters with ``reason``, store ``result``, acknowledge it.

        True when ``result`` was the message's first final result.
        """
        ...

    async def result(self, message_id: str) -> Mapping[str, object] | None:
        """The message's final result; None while it has none (or after the results' TTL)."""
        ...

    async def holds(self, entry_ids: Sequence[str]) -> Sequence[bool]:
        """Whether each entry is still in the queue (waiting or pending), in order.

        False once it was completed or dead-lettered, and for an id the queue
        never gave out: with no :meth:`result` either, the queue no longer
        knows the message, which a submitter must not wait on forever.
        """
        ...

    async def dead_letters(self, count: int = 100) -> Sequence[DeadLetter]:
        """The oldest ``count`` dead letters kept."""
        ...

    async def stats(self) -> QueueStats: ...
