"""Shared state stores: the error they all raise, conversation windows, status timelines."""

from __future__ import annotations

import datetime as dt
from typing import Protocol, runtime_checkable

import attrs


class StateStoreError(Exception):
    """A state store shared by several processes (Redis) could not be asked.

    Raised by such adapters of every state port (``Deduplicator``,
    ``RateLimiter``, ``SendLedger``, ``TemplateCache``, ``ConversationWindow``)
    instead of their client's own errors, so the kernel can refuse to act
    without the shared state (a send fails with ``STATE_STORE_UNAVAILABLE``,
    the webhook server answers 503) rather than act on a guess. The message
    names the store and the failure, never a password.
    """


@runtime_checkable
class ConversationWindow(Protocol):
    """When each customer last wrote to each business number.

    WhatsApp opens a 24-hour customer-service window with every inbound
    message; the connector feeds this store from ``receive_messages`` and, when
    the guard is on, reads it before a free-form send. Async so a shared store
    (Redis, a database) fits behind it when several processes receive.
    """

    async def record_inbound(self, customer: str, business: str, at: dt.datetime) -> None:
        """Note that ``customer`` wrote to ``business`` at ``at`` (later times win)."""
        ...

    async def last_inbound(self, customer: str, business: str | None) -> dt.datetime | None:
        """The latest inbound time; ``business=None`` means to any of our numbers."""
        ...


@attrs.frozen(kw_only=True)
class StatusEvent:
    """One status report for a message, as it arrived: Twilio's word, its code, when."""

    status: str
    error_code: int | None = None
    at: dt.datetime


@attrs.frozen(kw_only=True)
class StatusTimeline:
    """What is known of one message: the status that counts, and every report in arrival order.

    ``current`` is the highest-ranked report seen (the first of equal ranks),
    so a late or repeated callback never moves a message back. ``advanced``
    says whether the report just applied moved ``current``.
    """

    sid: str
    current: StatusEvent
    history: tuple[StatusEvent, ...]
    advanced: bool


@runtime_checkable
class StatusTracker(Protocol):
    """Message status timelines, merged from callbacks that arrive out of order and twice.

    The rule that decides whether a report moves a message forward is the
    kernel's (``MessageStatus.supersedes``); a store applies it atomically, so
    two webhook servers that share it agree on the current status.
    """

    async def apply(self, sid: str, event: StatusEvent) -> StatusTimeline:
        """Record ``event`` for ``sid``; the timeline after it."""
        ...

    async def timeline(self, sid: str) -> StatusTimeline | None:
        """What is known of ``sid``; None when no report was ever applied."""
        ...
