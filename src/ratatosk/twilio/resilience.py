"""Retry, reconcile and throttle decisions for sending (connector layer, pure).

Twilio's Create Message has no idempotency key, so a blind resend after an
ambiguous failure can deliver a message twice. The rule (adr/0005):

* **retry** only when Twilio cannot have created the message: the request
  never left (connect refused, connect timeout), or Twilio said 429 / 503
  without naming a limit a resend would meet again (20429 is retried,
  63018, a WhatsApp tier limit, is not);
* **reconcile** when it may have: read timeout, connection dropped after
  sending, 500 / 502 / 504: list the recipient's recent messages and look
  for this one;
* **stop** on everything else.

Everything here is arithmetic on values; the connector does the waiting.
"""

from __future__ import annotations

import datetime as dt
import enum
import random
from collections.abc import Collection, Iterable
from typing import Final

import attrs

from ..ports import ApiError, CreateMessageRequest, MessageResource, TransportError
from .provider_errors import Retry, provider_error

#: HTTP statuses after which Twilio has certainly not created the message.
SAFE_RETRY_STATUSES: Final = frozenset({429, 503})
#: HTTP statuses after which it may have.
AMBIGUOUS_STATUSES: Final = frozenset({500, 502, 504})


class Outcome(enum.Enum):
    RETRY = "retry"
    RECONCILE = "reconcile"
    FINAL = "final"


def classify(failure: ApiError | TransportError) -> Outcome:
    """What to do after a failed create."""
    if isinstance(failure, TransportError):
        return Outcome.RECONCILE if failure.maybe_delivered else Outcome.RETRY
    row = provider_error(failure.code)
    if row is not None and row.retry is Retry.NOW:
        return Outcome.RETRY
    if failure.status in SAFE_RETRY_STATUSES:
        # A refusal Twilio explained (63018: a WhatsApp tier limit) meets a resend again.
        return Outcome.FINAL if row is not None else Outcome.RETRY
    if failure.status in AMBIGUOUS_STATUSES:
        return Outcome.RECONCILE
    return Outcome.FINAL


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter; ``Retry-After`` honoured up to a cap.

    ``deadline`` bounds the whole send, retries and waits included.
    """

    max_attempts: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    base_delay: float = 0.25
    max_delay: float = 8.0
    retry_after_cap: float = 30.0
    deadline: float = 60.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return rng.uniform(0.0, ceiling)


NO_RETRY: Final = RetryPolicy(max_attempts=1)


@attrs.frozen(kw_only=True)
class SendPolicy:
    """How hard the connector tries, and how fast it may go.

    ``rate_per_sender`` defaults to Twilio's WhatsApp sender throughput (80
    messages per second); None turns the limiter off. ``max_in_flight`` caps
    concurrent create calls across ``send_batch`` and ``send_message`` alike.
    """

    retry: RetryPolicy = RetryPolicy()
    rate_per_sender: float | None = 80.0
    burst: float = 80.0
    max_in_flight: int = attrs.field(default=100, validator=attrs.validators.ge(1))
    reconcile: bool = True


@attrs.define
class TokenBucket:
    """Per-sender throughput limit: ``rate`` sends per second, bursts up to ``burst``.

    ``reserve`` takes a token now or books the earliest future one, and says
    how long to wait for it; callers that book concurrently queue fairly.
    """

    rate: float
    burst: float
    tokens: float = attrs.field(default=-1.0)
    updated: float = attrs.field(default=-1.0)

    def __attrs_post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        if self.tokens < 0:
            self.tokens = self.burst

    def reserve(self, now: float) -> float:
        if self.updated < 0:
            self.updated = now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


def find_sent(
    request: CreateMessageRequest,
    candidates: Iterable[MessageResource],
    *,
    not_before: dt.datetime,
    claimed: Collection[str] = (),
) -> MessageResource | None:
    """The oldest of :func:`sent_matches`: the one our first attempt created."""
    matches = sent_matches(request, candidates, not_before=not_before, claimed=claimed)
    return matches[0] if matches else None


def sent_matches(
    request: CreateMessageRequest,
    candidates: Iterable[MessageResource],
    *,
    not_before: dt.datetime,
    claimed: Collection[str] = (),
) -> list[MessageResource]:
    """The messages among the recipient's recent ones that ``request`` may have created.

    Matches recipient, sender (when we chose one), body (when we sent text;
    a template's body is rendered by Twilio, so it cannot be compared), media
    count, outbound direction, creation time after the first attempt began
    (two seconds of slack for clock skew and Twilio's whole-second dates),
    and never a SID already attributed to another send. Oldest first.
    """
    slack = not_before - dt.timedelta(seconds=2)
    matches = [
        message
        for message in candidates
        if message.sid not in claimed
        and message.to == request.to
        and (request.from_ is None or message.from_ == request.from_)
        and (
            request.body is None or request.content_sid is not None or message.body == request.body
        )
        and (message.num_media or 0) == len(request.media_urls)
        and (message.direction in {None, "outbound-api"})
        and (message.date_created is None or message.date_created >= slack)
    ]
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(matches, key=lambda m: m.date_created or epoch)
