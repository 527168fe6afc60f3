"""Telemetry port.

Told of the few moments an operator asks about: a send starts, retries,
reconciles and ends; a webhook is answered. The values carry ids, codes and
times, never a body or a secret; the recipient is given whole and left to the
adapter to mask. With no telemetry plugged, nothing of this runs at all.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import attrs

#: The outcome of a send Twilio accepted (``SendEnd.outcome``; any other is an error code).
SENT = "SENT"


@attrs.frozen(kw_only=True)
class RetryNotice:
    """One failed attempt of a send that will be tried again, and the wait before it.

    Given to telemetry and to a connector's ``on_retry`` hook.
    """

    message_id: str
    attempt: int  #: the attempt that failed, counted from 1
    failure: str  #: what failed, e.g. "HTTP 429, Twilio 20429" (no body, no number)
    wait: float  #: seconds until the next attempt
    provider_code: int | None = None  #: Twilio's error code, when Twilio answered
    http_status: int | None = None  #: the HTTP status, when Twilio answered


@attrs.frozen(kw_only=True)
class SendEnd:
    """How one send ended: ``outcome`` is ``"SENT"`` or the result's error code."""

    message_id: str
    outcome: str
    duration: float  #: seconds on the connector's clock, from the call to the result
    sid: str | None = None
    to: str | None = None  #: the recipient as addressed; adapters mask it
    provider_code: int | None = None
    attempts: int = 0  #: create calls made (0 when refused before Twilio was asked)
    reconciled: bool = False
    replayed: bool = False  #: the first outcome of a message id sent again


@attrs.frozen(kw_only=True)
class WebhookAnswer:
    """What the webhook server answered one delivery."""

    route: str  #: "message" or "status"
    status: int  #: the HTTP status answered
    duration: float  #: seconds from the request to the answer
    duplicate: bool = False  #: a delivery handled before: answered 200, handler not called
    sid: str | None = None  #: the event's MessageSid, once the delivery was decoded


class SendObservation(Protocol):
    """One send being watched; ``ended`` is called exactly once, last."""

    def retrying(self, notice: RetryNotice) -> None: ...

    def reconciled(self, sid: str | None, why: str) -> None:
        """A lost answer was looked up: ``sid`` found, or None and why not."""
        ...

    def ended(self, end: SendEnd) -> None: ...


class WebhookObservation(Protocol):
    """One webhook delivery being watched; ``answered`` is called exactly once."""

    def answered(self, answer: WebhookAnswer) -> None: ...


@runtime_checkable
class Telemetry(Protocol):
    """Watches sends and webhook deliveries (OpenTelemetry: ``ratatosk.adapters.otel``).

    Called on the send path and the webhook path, in the caller's task, so
    an implementation must be quick and must not raise; a failure it raises
    anyway is logged and ignored.
    """

    def send_started(self, message_id: str) -> SendObservation: ...

    def webhook_received(self, route: str) -> WebhookObservation: ...
