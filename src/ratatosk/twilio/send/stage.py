"""What every create stage shares: the per-send trace and the stage shape.

A create stage has the shape of ``MessagingApi.create_message`` plus the
send's :class:`SendTrace`: it answers a resource or an ``ApiError`` and
raises ``TransportError`` when no answer came. Stages wrap one another the
way a retrying transport wraps a transport, so each is tested with a tiny
stub inside it, and the composition root can reorder or leave one out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from typing import Any, ParamSpec, Protocol

import attrs

from ...domain.result import SendResult
from ...ports import (
    ApiError,
    CreateMessageRequest,
    MessageResource,
    SendObservation,
    TransportError,
)
from .. import wire

P = ParamSpec("P")
log = logging.getLogger("ratatosk.twilio")


@attrs.define(kw_only=True)
class SendTrace:
    """What one send took: filled in by the stages, reported in the result.

    ``send`` names the send in the ledger (its message id); ``lane`` groups
    the sends a reconcile could confuse (same recipient, same sender).
    ``deadline`` is on the clock's monotonic scale. ``observation`` is told
    of retries and reconciles; None (no telemetry) costs the stages one check
    on those rare paths and nothing on the common one.
    """

    send: str
    lane: str
    key: str
    started: dt.datetime
    deadline: float
    attempts: int = 0
    waited: float = 0.0  #: seconds of retry back-off
    paced: float = 0.0  #: seconds waited for the sender's rate limit
    reconciled: bool = False  #: the message was found at Twilio after a lost answer
    fallback: tuple[str, str] | None = None  #: (template sent instead, code of the refusal)
    observation: SendObservation | None = None  #: telemetry watching this send, if any

    def report(self) -> dict[str, Any]:
        """The trace as result data: how many attempts, how long it waited, reconciled or not."""
        report: dict[str, Any] = {
            "attempts": self.attempts,
            "waited_seconds": round(self.waited, 6),
            "paced_seconds": round(self.paced, 6),
            "reconciled": self.reconciled,
        }
        if self.fallback is not None:
            report["fallback_template"], report["fallback_because"] = self.fallback
        return report


class OutcomeUnknown(TransportError):
    """Twilio may have created the message and looking could not tell; never resend.

    ``cause`` is the failure that made the outcome ambiguous; ``why`` says
    what the reconcile saw (nothing matched, or it could not tell candidates apart).
    """

    def __init__(self, cause: ApiError | TransportError, why: str) -> None:
        super().__init__(why, maybe_delivered=True)
        self.cause = cause
        self.why = why


class CreateStage(Protocol):
    async def create(
        self, request: CreateMessageRequest, trace: SendTrace
    ) -> MessageResource | ApiError: ...


def sent_result(
    message_id: str, resource: MessageResource, trace: SendTrace, now: Callable[[], dt.datetime]
) -> SendResult:
    """The success of a send: Twilio's resource and what the send took (``trace``).

    ``now`` is asked only when Twilio's answer has no creation date.
    """
    fields = (
        ("twilio_status", resource.status),
        ("to", resource.to),
        ("from", resource.from_),
        ("channel", "whatsapp"),
        ("num_segments", resource.num_segments),
        ("num_media", resource.num_media),
        ("price", resource.price),
        ("price_unit", resource.price_unit),
        ("messaging_service_sid", resource.messaging_service_sid),
    )
    data: dict[str, Any] = {k: v for k, v in fields if v is not None}
    data.update(trace.report())  # never None
    return SendResult(
        message_id=message_id,
        provider_message_id=resource.sid,
        status=wire.map_status(resource.status),
        timestamp=resource.date_created or now(),
        data=data,
    )


def sender_of(request: CreateMessageRequest) -> str:
    """The key Twilio paces and a reconcile groups by: the sender number or the service."""
    return request.from_ or request.messaging_service_sid or ""


def lane_of(request: CreateMessageRequest) -> str:
    return f"{sender_of(request)}>{request.to}"


def match_key(request: CreateMessageRequest) -> str:
    """What a reconcile can tell of the message ``request`` creates: media count and body.

    A template's body is rendered by Twilio and a media message may have
    none, so for those the body is a wildcard (``*``).
    """
    media = len(request.media_urls)
    if request.body is None or request.content_sid is not None:
        return f"{media}|*"
    digest = hashlib.blake2b(request.body.encode("utf-8", "surrogatepass"), digest_size=8)
    return f"{media}|{digest.hexdigest()}"


def confusable(key: str, other: str) -> bool:
    """Whether a message of one send could be taken for the other's by the matcher."""
    media, _, body = key.partition("|")
    other_media, _, other_body = other.partition("|")
    return media == other_media and (body == other_body or "*" in (body, other_body))


def describe(failure: ApiError | TransportError) -> str:
    if isinstance(failure, TransportError):
        return str(failure)
    return f"HTTP {failure.status}, Twilio {failure.code}"


def notify(call: Callable[P, None], *args: P.args, **kwargs: P.kwargs) -> None:
    """Tell telemetry; what it raises is logged and ignored, never the send's failure."""
    try:
        call(*args, **kwargs)
    except Exception:
        log.exception("telemetry raised; the send goes on")
