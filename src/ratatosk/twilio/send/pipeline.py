"""The send pipeline: one message in, one result out, every stage in its place.

::

    idempotency (ledger)  a message id already sent answers its first outcome
    plan                  pure: every local refusal, before any I/O (outbound.plan_send)
    window guard          free-form outside the 24-hour window refused (optional)
    templates             a name becomes a Content SID (catalog, cache)
    retry                 safe failures are tried again, with back-off
      reconcile           an ambiguous failure is looked up, never blindly resent
        throttle          the sender's rate (shared limiter), a cap on calls in flight
          call            one request to Twilio, bounded by the send's deadline

The create stages wrap one another (see ``stage.CreateStage``);
:func:`create_stages` is where they are put in that order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

import attrs

from ...domain.content import TemplateContent
from ...domain.errors import MessagingErrorCodes
from ...domain.message import Message
from ...domain.result import ConnectorError, ConnectorResult, SendResult
from ...domain.schema import ChannelSchema
from ...domain.status import MessageStatus
from ...ports import (
    SENT,
    ApiError,
    Clock,
    CreateMessageRequest,
    LedgerState,
    MessageResource,
    MessagingApi,
    RateLimiter,
    SendEnd,
    SendLedger,
    SendObservation,
    StateStoreError,
    Telemetry,
    TransportError,
)
from .. import wire
from ..errors import TwilioErrorCodes, error, map_provider_code
from ..outbound import SendConfig, SendPlan, plan_send
from ..provider_errors import guidance, provider_error
from ..resilience import SendPolicy
from .call import CallTwilio
from .guard import WindowGuard
from .reconcile import Reconcile
from .retry import Retry, RetryHook
from .stage import (
    CreateStage,
    OutcomeUnknown,
    SendTrace,
    describe,
    lane_of,
    match_key,
    notify,
    sender_of,
)
from .templates import TemplateResolver
from .throttle import Throttle

log = logging.getLogger("ratatosk.twilio")

#: Properties that belong to the free-form message, not to the template sent instead.
_FREE_FORM_ONLY: Final = frozenset({"caption", "FallbackTemplate"})


def create_stages(
    api: MessagingApi,
    policy: SendPolicy,
    *,
    ledger: SendLedger,
    limiter: RateLimiter | None,
    clock: Clock,
    rng: random.Random,
    on_retry: RetryHook | None = None,
) -> CreateStage:
    """Retry(Reconcile(Throttle(Call(api)))): reconcile left out when the policy says so."""
    stage: CreateStage = CallTwilio(api, clock)
    stage = Throttle(stage, limiter, clock, max_in_flight=policy.max_in_flight)
    if policy.reconcile:
        stage = Reconcile(stage, api, ledger, clock)
    return Retry(stage, policy.retry, clock, rng, on_retry=on_retry)


class SendPipeline:
    """Sends one message through the stages; what ``send_message`` delegates to.

    ``telemetry`` watches each send (start, retries, reconciles, end). Whether
    there is any is decided once, here: without it ``send`` is the bare send,
    with no check, no wrapper and nothing allocated for telemetry per send.
    """

    def __init__(
        self,
        schema: ChannelSchema,
        config: SendConfig,
        *,
        create: CreateStage,
        templates: TemplateResolver,
        ledger: SendLedger,
        clock: Clock,
        deadline: float,
        guard: WindowGuard | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._schema = schema
        self._config = config
        self._create = create
        self._templates = templates
        self._ledger = ledger
        self._clock = clock
        self._deadline = deadline
        self._guard = guard
        self._telemetry = telemetry
        #: Sends one message: the bare send, or the send watched by ``telemetry``.
        self.send: Callable[[Message], Awaitable[ConnectorResult[SendResult]]] = (
            self._send if telemetry is None else self._send_observed
        )

    async def _send_observed(self, message: Message) -> ConnectorResult[SendResult]:
        """The send, told to telemetry: started, then ended with its outcome (or interruption)."""
        assert self._telemetry is not None
        started = self._clock.monotonic()
        message_id = str(getattr(message, "id", ""))
        try:
            observation = self._telemetry.send_started(message_id)
        except Exception:
            log.exception("telemetry raised; the send goes on unwatched")
            return await self._send(message)
        try:
            result = await self._send(message, observation)
        except BaseException as exc:
            outcome = "CANCELLED" if isinstance(exc, asyncio.CancelledError) else "UNEXPECTED_ERROR"
            end = SendEnd(
                message_id=message_id,
                outcome=outcome,
                duration=self._clock.monotonic() - started,
                to=_recipient_of(message),
            )
            notify(observation.ended, end)
            raise
        notify(observation.ended, _end_of(message, result, self._clock.monotonic() - started))
        return result

    async def _send(
        self, message: Message, observation: SendObservation | None = None
    ) -> ConnectorResult[SendResult]:
        plan = plan_send(self._schema, self._config, message)
        if isinstance(plan, ConnectorError):
            return ConnectorResult.failure(plan)
        try:
            entry = await self._ledger.begin(message.id, _fingerprint(plan))
        except StateStoreError as exc:
            return ConnectorResult.failure(_store_unavailable(message.id, exc))
        if entry.outcome is not None:
            return _replay(message.id, entry.outcome)
        if entry.state is not LedgerState.NEW:
            return ConnectorResult.failure(_busy(message.id, entry.state))
        traces: list[SendTrace] = []  # filled by _send_planned once it asks Twilio
        outcome: Mapping[str, object] | None = None
        try:
            result = await self._send_planned(message, plan, traces, observation)
            outcome = _outcome_of(result)
        except StateStoreError as exc:  # raised only before Twilio was asked (see below)
            result = ConnectorResult.failure(_store_unavailable(message.id, exc))
        except BaseException:
            if traces and traces[0].attempts:  # cancelled mid-create: Twilio may have it
                outcome = {"error": _cancelled(message.id).to_dict()}
            raise
        finally:
            await self._finish(message.id, outcome)
        return result

    async def _finish(self, message_id: str, outcome: Mapping[str, object] | None) -> None:
        """Record the outcome; a store that fails now leaves the id in flight, never resent."""
        try:
            await self._ledger.finish(message_id, outcome)
        except StateStoreError as exc:
            log.error("the outcome of message %s could not be recorded: %s", message_id, exc)

    async def send_batch(
        self, messages: Iterable[Message], concurrency: int
    ) -> tuple[ConnectorResult[SendResult], ...]:
        """One result per message, in input order; a failure fails only its own message."""
        limit = asyncio.Semaphore(concurrency)

        async def one(message: Message) -> ConnectorResult[SendResult]:
            async with limit:
                try:
                    return await self.send(message)
                except (TypeError, ValueError, AttributeError) as exc:
                    return ConnectorResult.failure(
                        error(TwilioErrorCodes.INVALID_MESSAGE, f"not a sendable message: {exc}")
                    )
                except Exception as exc:  # a bug in an adapter must not sink the other sends
                    log.exception("unexpected error sending one message of a batch")
                    return ConnectorResult.failure(
                        error(
                            MessagingErrorCodes.SEND_MESSAGE_FAILED,
                            f"unexpected {type(exc).__name__} while sending; see the log",
                            message_id=getattr(message, "id", None),
                        )
                    )

        return tuple(await asyncio.gather(*(one(m) for m in messages)))

    async def _send_planned(
        self,
        message: Message,
        plan: SendPlan,
        traces: list[SendTrace],
        observation: SendObservation | None,
    ) -> ConnectorResult[SendResult]:
        fallback: tuple[str, str] | None = None
        if self._guard is not None:
            closed = await self._guard.check(plan)
            if closed is not None:
                replanned = self._fall_back(message, closed)
                if isinstance(replanned, ConnectorError):
                    return ConnectorResult.failure(replanned)
                fallback = (_template_of(message), closed.code)
                plan = replanned
        request = await self._templates.resolve(plan)
        if isinstance(request, ConnectorError):
            if fallback is not None:
                request = request.with_details(fallback_template=fallback[0])
            return ConnectorResult.failure(request)
        trace = SendTrace(
            send=message.id,
            lane=lane_of(request),
            key=match_key(request),
            started=self._clock.now(),
            deadline=self._clock.monotonic() + self._deadline,
            fallback=fallback,
            observation=observation,
        )
        traces.append(trace)
        # Until Twilio answers, the send may have created a message (cancelled mid-call too).
        answer: MessageResource | ApiError | TransportError | None = None
        await self._ledger.lane_enter(trace.lane, trace.send, trace.key)
        try:
            try:
                answer = await self._create.create(request, trace)
            except TransportError as exc:
                answer = exc
            if isinstance(answer, MessageResource) and not trace.reconciled:
                holder = await self._claim_answered(answer.sid, trace.send)
                if holder is not None:
                    log.error(
                        "Twilio answered message %s with %s, which a reconcile had adopted for "
                        "message %s: two results share one SID",
                        message.id,
                        answer.sid,
                        holder,
                    )
        finally:
            unsettled = answer is None or (
                isinstance(answer, TransportError) and answer.maybe_delivered
            )
            try:
                await self._ledger.lane_leave(trace.lane, trace.send, settled=not unsettled)
            except StateStoreError as exc:  # its lane entry lapses on the store by itself
                log.error("message %s could not leave its lane: %s", message.id, exc)
        if isinstance(answer, MessageResource):
            return ConnectorResult.success(self._result(message, answer, trace))
        failure = _failure(answer, trace, request)
        return ConnectorResult.failure(failure.with_details(message_id=message.id))

    async def _claim_answered(self, sid: str, send: str) -> str | None:
        """Claim the SID Twilio answered; the message is sent whether or not the store answers."""
        try:
            return await self._ledger.claim_sid(sid, send, adopted=False)
        except StateStoreError as exc:
            log.error("message %s was sent as %s, but the SID was not recorded: %s", send, sid, exc)
            return None

    def _fall_back(self, message: Message, closed: ConnectorError) -> SendPlan | ConnectorError:
        """The message's ``FallbackTemplate`` planned instead, or the guard's refusal.

        Only a refusal decided here (the window guard) can fall back: once
        Twilio has accepted a free-form message, its 63016 comes too late.
        """
        template = message.properties.get("FallbackTemplate")
        if not isinstance(template, TemplateContent):
            return closed
        kept = {k: v for k, v in message.properties.items() if k not in _FREE_FORM_ONLY}
        replanned = plan_send(
            self._schema, self._config, attrs.evolve(message, content=template, properties=kept)
        )
        if isinstance(replanned, ConnectorError):
            return replanned.with_details(fallback_template=template.template_id)
        log.info("message %s: window closed, sending its fallback template", message.id)
        return replanned

    def _result(self, message: Message, resource: MessageResource, trace: SendTrace) -> SendResult:
        data: dict[str, Any] = {
            "twilio_status": resource.status,
            "to": resource.to,
            "from": resource.from_,
            "channel": "whatsapp",
            "num_segments": resource.num_segments,
            "num_media": resource.num_media,
            "price": resource.price,
            "price_unit": resource.price_unit,
            "messaging_service_sid": resource.messaging_service_sid,
            **trace.report(),
        }
        return SendResult(
            message_id=message.id,
            provider_message_id=resource.sid,
            status=wire.map_status(resource.status),
            timestamp=resource.date_created or self._clock.now(),
            data={k: v for k, v in data.items() if v is not None},
        )


def _end_of(message: Message, result: ConnectorResult[SendResult], duration: float) -> SendEnd:
    """What telemetry is told of a finished send, read from its result."""
    if result.value is not None:
        sent = result.value
        return SendEnd(
            message_id=message.id,
            outcome=SENT,
            duration=duration,
            sid=sent.provider_message_id,
            to=_recipient_of(message),
            attempts=int(sent.data.get("attempts", 0)),
            reconciled=bool(sent.data.get("reconciled", False)),
            replayed=bool(sent.data.get("replayed", False)),
        )
    failure = result.error
    assert failure is not None
    return SendEnd(
        message_id=message.id,
        outcome=failure.code,
        duration=duration,
        to=_recipient_of(message),
        provider_code=failure.provider_code,
        attempts=int(failure.details.get("attempts", 0)),
        reconciled=bool(failure.details.get("reconciled", False)),
        replayed=bool(failure.details.get("replayed", False)),
    )


def _recipient_of(message: Message) -> str | None:
    receiver = getattr(message, "receiver", None)
    address = getattr(receiver, "address", None)
    return address if isinstance(address, str) else None


def _template_of(message: Message) -> str:
    template = message.properties.get("FallbackTemplate")
    return template.template_id if isinstance(template, TemplateContent) else ""


def _fingerprint(plan: SendPlan) -> str:
    """What makes two sends of one message id 'the same message'."""
    r, template = plan.request, plan.template
    fields = (
        r.to,
        r.from_,
        r.messaging_service_sid,
        r.body,
        r.media_urls,
        r.persistent_action,
        r.content_sid,
        r.content_variables,
        r.status_callback,
        r.validity_period,
        template.template_id if template is not None else None,
        template.language if template is not None else None,
    )
    text = "\x1f".join(map(str, fields))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _failure(
    answer: ApiError | TransportError, trace: SendTrace, request: CreateMessageRequest
) -> ConnectorError:
    if isinstance(answer, OutcomeUnknown):
        cause = answer.cause
        return error(
            TwilioErrorCodes.SEND_OUTCOME_UNKNOWN,
            f"Twilio may or may not have accepted the message ({answer.why}); it was not "
            "resent; check before resending",
            provider_code=cause.code if isinstance(cause, ApiError) else None,
            to=request.to,
            sender=sender_of(request),
            attempted_at=trace.started.isoformat(),
            **trace.report(),
        )
    if isinstance(answer, TransportError):
        return error(
            TwilioErrorCodes.SEND_WHATSAPP_MESSAGE_FAILED,
            f"no usable answer from Twilio: {answer}",
            maybe_delivered=answer.maybe_delivered,
            **trace.report(),
        )
    code = map_provider_code(answer.code, answer.status)
    return api_failure(code, "Twilio refused the message", answer).with_details(**trace.report())


def api_failure(code: str, what: str, answer: ApiError) -> ConnectorError:
    """A coded error from Twilio's answer, keeping its code, status and docs link.

    A code in the provider-error table adds its ``retry`` class and
    ``remediation``, and its meaning stands in for an empty Twilio message.
    """
    row = provider_error(answer.code)
    said = answer.message.strip() or (row.meaning if row is not None else "")
    return error(
        code,
        f"{what}: {said} (Twilio {answer.code or answer.status})",
        provider_code=answer.code,
        http_status=answer.status,
        more_info=answer.more_info,
        retry_after=answer.retry_after,
        **guidance(answer.code),
    )


def _outcome_of(result: ConnectorResult[SendResult]) -> Mapping[str, object] | None:
    """What the ledger keeps for a message id: None when Twilio certainly has nothing."""
    if result.value is not None:
        sent = result.value
        return {
            "sid": sent.provider_message_id,
            "status": sent.status.value,
            "timestamp": sent.timestamp.isoformat(),
            "data": dict(sent.data),
        }
    failure = result.error
    assert failure is not None
    maybe_sent = failure.code == TwilioErrorCodes.SEND_OUTCOME_UNKNOWN or (
        failure.code == TwilioErrorCodes.SEND_WHATSAPP_MESSAGE_FAILED
        and failure.details.get("maybe_delivered") is True
    )
    return {"error": failure.to_dict()} if maybe_sent else None


def _replay(message_id: str, outcome: Mapping[str, Any]) -> ConnectorResult[SendResult]:
    """The first send's outcome, again: the second call of one message id sends nothing."""
    if "error" in outcome:
        first: Mapping[str, Any] = outcome["error"]
        return ConnectorResult.failure(
            ConnectorError(
                code=first["code"],
                message=first["message"],
                domain=first["domain"],
                provider_code=first["provider_code"],
                details={**first["details"], "replayed": True},
            )
        )
    return ConnectorResult.success(
        SendResult(
            message_id=message_id,
            provider_message_id=outcome["sid"],
            status=MessageStatus(outcome["status"]),
            timestamp=dt.datetime.fromisoformat(outcome["timestamp"]),
            data={**outcome["data"], "replayed": True},
        )
    )


def _busy(message_id: str, state: LedgerState) -> ConnectorError:
    if state is LedgerState.IN_FLIGHT:
        return error(
            TwilioErrorCodes.SEND_IN_PROGRESS,
            f"message {message_id!r} is being sent by another call; its result will be "
            "the result of this id",
            message_id=message_id,
        )
    return error(
        TwilioErrorCodes.MESSAGE_ID_REUSED,
        f"message id {message_id!r} was already used for a different message; "
        "give each message its own id",
        message_id=message_id,
    )


def _store_unavailable(message_id: str, exc: StateStoreError) -> ConnectorError:
    return error(
        TwilioErrorCodes.STATE_STORE_UNAVAILABLE,
        "the shared state store (rate limit, send ledger) could not be asked; nothing was "
        f"sent to Twilio; send again later ({exc})",
        message_id=message_id,
    )


def _cancelled(message_id: str) -> ConnectorError:
    return error(
        TwilioErrorCodes.SEND_OUTCOME_UNKNOWN,
        "the send was cancelled while Twilio was being asked; it may have been sent",
        message_id=message_id,
    )


__all__ = ["SendPipeline", "api_failure", "create_stages", "describe"]
