"""The ``Telemetry`` port on OpenTelemetry (adapters layer; the ``otel`` extra).

One span per send (``whatsapp send``, a PRODUCER span, current while the send
runs, so the HTTP client's spans nest in it) with an event per retry and per
reconcile, and one per webhook delivery (``whatsapp webhook message`` or
``... status``, a CONSUMER span current while the handler runs). Metrics:

=============================  =========  ============================================
instrument                     unit       attributes
=============================  =========  ============================================
``ratatosk.sends``             {send}     ``ratatosk.outcome`` (SENT or the error code)
``ratatosk.send.duration``     s          ``ratatosk.outcome``
``ratatosk.send.retries``      {retry}    ``http.response.status_code`` and
                                          ``twilio.error_code``, or ``error.type``
``ratatosk.send.reconciles``   {lookup}   ``ratatosk.found``
``ratatosk.webhook.answers``   {answer}   ``ratatosk.webhook.route``,
                                          ``http.response.status_code``
``ratatosk.webhook.duplicates``  {delivery}  ``ratatosk.webhook.route``
``ratatosk.webhook.duration``  s          ``ratatosk.webhook.route``,
                                          ``http.response.status_code``
=============================  =========  ============================================

What is recorded: message ids, SIDs, codes, outcomes, attempts, waits. What
never is: the auth token (the port never sees it), a body, and a full phone
number unless ``record_phone_numbers=True`` (by default only the last four
digits). Only this module imports ``opentelemetry``, and only when imported.
"""

from __future__ import annotations

from contextvars import Token
from typing import Final

from opentelemetry import context, metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import Attributes, AttributeValue

from .. import __version__
from ..ports import (
    SENT,
    RetryNotice,
    SendEnd,
    SendObservation,
    WebhookAnswer,
    WebhookObservation,
)

#: The instrumentation scope of every span and instrument.
SCOPE: Final = "ratatosk"
#: Digits of a phone number kept when numbers are masked.
KEPT_DIGITS: Final = 4


def mask_number(address: str) -> str:
    """``whatsapp:+15551234567`` -> ``whatsapp:***4567``: the channel and the last four digits."""
    channel, colon, number = address.rpartition(":")
    digits = "".join(c for c in number if c.isdigit())
    return f"{channel}{colon}***{digits[-KEPT_DIGITS:]}"


class OpenTelemetry:
    """Spans and metrics for sends and webhooks, through OpenTelemetry's API.

    Pass one to ``TwilioWhatsAppConnector(telemetry=...)`` and to
    ``create_webhook_app(telemetry=...)`` (``bootstrap.build_webhook_app``
    takes the connector's). Without providers it uses the global ones, which
    do nothing until the application installs an SDK; tests pass their own.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        record_phone_numbers: bool = False,
    ) -> None:
        self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        self.record_phone_numbers = record_phone_numbers
        self.sends = meter.create_counter(
            "ratatosk.sends", unit="{send}", description="Sends ended, by outcome code"
        )
        self.send_duration = meter.create_histogram(
            "ratatosk.send.duration", unit="s", description="From the call to its result"
        )
        self.retries = meter.create_counter(
            "ratatosk.send.retries", unit="{retry}", description="Create calls tried again"
        )
        self.reconciles = meter.create_counter(
            "ratatosk.send.reconciles",
            unit="{lookup}",
            description="Lost answers looked up at Twilio, found or not",
        )
        self.webhook_answers = meter.create_counter(
            "ratatosk.webhook.answers", unit="{answer}", description="Webhook answers by status"
        )
        self.webhook_duplicates = meter.create_counter(
            "ratatosk.webhook.duplicates",
            unit="{delivery}",
            description="Repeat deliveries answered without calling the handler",
        )
        self.webhook_duration = meter.create_histogram(
            "ratatosk.webhook.duration", unit="s", description="From the request to the answer"
        )

    def __repr__(self) -> str:
        return f"OpenTelemetry(record_phone_numbers={self.record_phone_numbers})"

    def send_started(self, message_id: str) -> SendObservation:
        span = self._tracer.start_span(
            "whatsapp send",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "twilio",
                "messaging.operation.type": "send",
                "ratatosk.message_id": message_id,
            },
        )
        return _SendSpan(self, span, context.attach(trace.set_span_in_context(span)))

    def webhook_received(self, route: str) -> WebhookObservation:
        span = self._tracer.start_span(
            f"whatsapp webhook {route}",
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "twilio",
                "messaging.operation.type": "process",
                "ratatosk.webhook.route": route,
            },
        )
        return _WebhookSpan(self, span, context.attach(trace.set_span_in_context(span)))

    def recipient(self, address: str) -> str:
        return address if self.record_phone_numbers else mask_number(address)


class _SendSpan:
    """One send's span, current from ``send_started`` until ``ended``."""

    __slots__ = ("_otel", "_span", "_token")

    def __init__(self, otel: OpenTelemetry, span: Span, token: Token[Context]):
        self._otel = otel
        self._span = span
        self._token = token

    def retrying(self, notice: RetryNotice) -> None:
        event: dict[str, AttributeValue] = {
            "ratatosk.attempt": notice.attempt,
            "ratatosk.failure": notice.failure,
            "ratatosk.wait_seconds": notice.wait,
        }
        counted: dict[str, AttributeValue]
        if notice.http_status is None:
            counted = {"error.type": "transport"}
        else:
            counted = {"http.response.status_code": notice.http_status}
            if notice.provider_code is not None:
                counted["twilio.error_code"] = notice.provider_code
        self._span.add_event("retry", {**event, **counted})
        self._otel.retries.add(1, counted)

    def reconciled(self, sid: str | None, why: str) -> None:
        found = sid is not None
        event: dict[str, AttributeValue] = {"ratatosk.found": found, "ratatosk.why": why}
        if sid is not None:
            event["twilio.message_sid"] = sid
        self._span.add_event("reconcile", event)
        self._otel.reconciles.add(1, {"ratatosk.found": found})

    def ended(self, end: SendEnd) -> None:
        span = self._span
        try:
            attributes: dict[str, AttributeValue] = {
                "ratatosk.outcome": end.outcome,
                "ratatosk.attempts": end.attempts,
                "ratatosk.reconciled": end.reconciled,
                "ratatosk.replayed": end.replayed,
            }
            if end.sid is not None:
                attributes["twilio.message_sid"] = end.sid
            if end.provider_code is not None:
                attributes["twilio.error_code"] = end.provider_code
            if end.to is not None:
                attributes["messaging.destination.name"] = self._otel.recipient(end.to)
            span.set_attributes(attributes)
            if end.outcome != SENT:
                span.set_status(Status(StatusCode.ERROR, end.outcome))
            counted: Attributes = {"ratatosk.outcome": end.outcome}
            self._otel.sends.add(1, counted)
            self._otel.send_duration.record(end.duration, counted)
        finally:
            span.end()
            context.detach(self._token)


class _WebhookSpan:
    """One delivery's span, current while the gate and the handler run."""

    __slots__ = ("_otel", "_span", "_token")

    def __init__(self, otel: OpenTelemetry, span: Span, token: Token[Context]):
        self._otel = otel
        self._span = span
        self._token = token

    def answered(self, answer: WebhookAnswer) -> None:
        span = self._span
        try:
            span.set_attribute("http.response.status_code", answer.status)
            span.set_attribute("ratatosk.duplicate", answer.duplicate)
            if answer.sid is not None:
                span.set_attribute("twilio.message_sid", answer.sid)
            if answer.status >= 500:
                span.set_status(Status(StatusCode.ERROR, f"answered {answer.status}"))
            route = {"ratatosk.webhook.route": answer.route}
            counted: Attributes = {**route, "http.response.status_code": answer.status}
            self._otel.webhook_answers.add(1, counted)
            self._otel.webhook_duration.record(answer.duration, counted)
            if answer.duplicate:
                self._otel.webhook_duplicates.add(1, route)
        finally:
            span.end()
            context.detach(self._token)


__all__ = ["SCOPE", "OpenTelemetry", "mask_number"]
