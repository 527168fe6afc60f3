"""Webhook ports: whether a delivery came from Twilio, and whether it was handled already."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class SignatureValidator(Protocol):
    """Decides whether a webhook really came from Twilio."""

    def validate(
        self,
        url: str,
        params: Mapping[str, Sequence[str]] | str,
        signature: str | None,
    ) -> bool:
        """``params`` is the decoded form (key -> values), or the raw body of a JSON webhook."""
        ...


class Claim(enum.Enum):
    """What claiming a delivery key found."""

    FIRST = "first"  #: nobody had it: the caller holds it now and must complete or release it
    REPEAT = "repeat"  #: handled already (within the store's TTL)
    IN_FLIGHT = "in_flight"  #: someone else holds it, still, when the wait ran out


@runtime_checkable
class Deduplicator(Protocol):
    """Which webhook deliveries were handled, and which are being handled right now.

    Twilio delivers at least once, so one event can arrive twice, even while
    the first delivery's handler still runs (Twilio gives up waiting after
    15 s and retries). The webhook server claims a key before the handler,
    completes it after a success and releases it after a failure, so a retry
    after a failure is handled and a retry after a success is not. Async, so
    a store shared by several server processes (Redis) fits behind it.

    A claim in flight carries a lease: if its holder neither completes nor
    releases it within the lease (the process died), the next claim gets
    FIRST. Completed keys are remembered for a TTL. Lease and TTL belong to
    the adapter's configuration. ``complete`` and ``release`` name a key, not
    a holder: a lease shorter than the slowest handler lets a second delivery
    run beside the first, so choose it well above the handler's worst time.
    """

    async def claim(self, key: str, *, wait: float = 0.0) -> Claim:
        """FIRST (now yours), REPEAT (handled) or IN_FLIGHT (someone else's).

        While another holder has ``key``, wait up to ``wait`` seconds for its
        outcome: completed gives REPEAT, released or lapsed gives FIRST, and
        still in flight when the time is up gives IN_FLIGHT. Never REPEAT for
        a key whose holder may still fail.
        """
        ...

    async def complete(self, key: str) -> None:
        """Mark ``key`` handled: every claim within the TTL is a REPEAT."""
        ...

    async def release(self, key: str) -> None:
        """Forget a claim in flight, so the next delivery with ``key`` is handled.

        A completed key stays completed: a late release cannot undo it.
        """
        ...
