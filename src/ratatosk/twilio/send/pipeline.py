"""The send pipeline: one message in, one result out, every stage in its place.

::

    idempotency (ledger)  a message id already sent answers its first outcome; an id
                          whose holder died, or (recheck) whose outcome stayed unknown,
                          is looked at again (recheck)
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
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Final

import attrs

from ...domain.content import TemplateContent
from ...domain.errors import MessagingErrorCodes
from ...domain.message import Message
from ...domain.result import ConnectorError, ConnectorResult, SendResult
from ...domain.schema import ChannelSchema
from ...ports import (
    SENT,
    ApiError,
    Clock,
    CreateMessageRequest,
    LedgerEntry,
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
from ..errors import TwilioErrorCodes, error, map_provider_code
from ..outbound import SendConfig, SendPlan, plan_send
from ..provider_errors import guidance, provider_error
from ..resilience import SendPolicy
from .call import CallTwilio
from .guard import WindowGuard
from .recheck import Delivery, Recheck, Settled
from .reconcile import Finder, Reconcile
from .records import fingerprint, record_of, replay
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
    sent_result,
)
from .templates import TemplateResolver
from .throttle import Throttle

log = logging.getLogger("ratatosk.twilio")

#: What ``begin`` answers when this call holds the id.
_HELD: Final = frozenset({LedgerState.NEW, LedgerState.ABANDONED, LedgerState.REOPENED})
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
    """Sends one message through the stages; what ``send_message`` and
    ``recheck_message`` delegate to.

    ``telemetry`` watches each send (start, retries, reconciles, end). Whether
    there is any is decided once, here: without it ``send`` is the bare send,
    with no check, no wrapper and nothing allocated for telemetry per send.
    """

    def __init__(
        self,
        schema: ChannelSchema,
        config: SendConfig,
        *,
        api: MessagingApi,
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
        self._recheck = Recheck(Finder(api, ledger, clock), ledger, clock, deadline)
        #: Sends one message: the bare send, or the send watched by ``telemetry``.
        self.send: Callable[[Message], Awaitable[ConnectorResult[SendResult]]] = (
            self._send if telemetry is None else self._send_observed
        )

    async def recheck(self, message: Message, delivery: Delivery) -> ConnectorResult[SendResult]:
        """Send ``message``, or look again at an unknown or abandoned one (see ``recheck``)."""
        if self._telemetry is None:
            return await self._send(message, None, delivery)
        return await self._send_observed(message, delivery)

    async def _send_observed(
        self, message: Message, delivery: Delivery | None = None
    ) -> ConnectorResult[SendResult]:
        """The send, told to telemetry: started, then ended with its outcome (or interruption)."""
        assert self._telemetry is not None
        started = self._clock.monotonic()
        message_id = str(getattr(message, "id", ""))
        try:
            observation = self._telemetry.send_started(message_id)
        except Exception:
            log.exception("telemetry raised; the send goes on unwatched")
            return await self._send(message, None, delivery)
        try:
            result = await self._send(message, observation, delivery)
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
        self,
        message: Message,
        observation: SendObservation | None = None,
        delivery: Delivery | None = None,
    ) -> ConnectorResult[SendResult]:
        """Take the id in the ledger, then send it, or settle it when Twilio may have it.

        ``delivery`` None: ``send_message``; a :class:`Delivery`: ``recheck_message``,
        which also takes back an id whose outcome was left unsettled.
        """
        plan = plan_send(self._schema, self._config, message)
        if isinstance(plan, ConnectorError):
            return ConnectorResult.failure(plan)
        try:
            entry = await self._ledger.begin(
                message.id, fingerprint(plan), at=self._clock.now(), reopen=delivery is not None
            )
        except StateStoreError as exc:
            return ConnectorResult.failure(_store_unavailable(message.id, exc))
        if entry.state is LedgerState.DONE and entry.outcome is not None:
            return replay(message.id, entry.outcome)
        if entry.state not in _HELD:
            return ConnectorResult.failure(_busy(message.id, entry.state))
        # This call holds the id now. Kept if it stops before deciding: nothing for a
        # new id (nothing was sent), the id still unsettled for one Twilio may have.
        kept = (
            None
            if entry.state is LedgerState.NEW
            else self._recheck.undecided(
                message.id, entry, "the recheck stopped before it could tell"
            )
        )
        outcome, settled = (None, True) if kept is None else (kept.outcome, False)
        traces: list[SendTrace] = []  # filled once Twilio is asked to create the message
        try:
            if entry.state is LedgerState.NEW:
                result = await self._send_planned(message, plan, traces, observation)
                outcome, settled = record_of(result)
            else:
                done = await self._settle_held(
                    message, plan, entry, delivery, traces=traces, observation=observation
                )
                result, outcome, settled = done.result, done.outcome, done.settled
        except StateStoreError as exc:  # raised only before Twilio was asked (see below)
            result = ConnectorResult.failure(_store_unavailable(message.id, exc))
        except BaseException:
            if any(t.attempts for t in traces):  # cancelled mid-create: Twilio may have it
                outcome, settled = {"error": _cancelled(message.id).to_dict()}, False
            raise
        finally:
            await self._finish(message.id, outcome, settled)
        return result

    async def _settle_held(
        self,
        message: Message,
        plan: SendPlan,
        entry: LedgerEntry,
        delivery: Delivery | None,
        *,
        traces: list[SendTrace],
        observation: SendObservation | None,
    ) -> Settled:
        """An id Twilio may have (its holder died, or its outcome stayed unknown): look again."""
        prepared = await self._prepare(message, plan)
        if isinstance(prepared, ConnectorError):
            return self._recheck.undecided(
                message.id, entry, f"{prepared.code}: {prepared.message}"
            )
        request, fallback = prepared

        async def resend() -> ConnectorResult[SendResult]:
            return await self._ask_twilio(message, request, fallback, traces, observation)

        return await self._recheck.settle(
            message.id, request, entry, delivery, resend=resend, observation=observation
        )

    async def _finish(
        self, message_id: str, outcome: Mapping[str, object] | None, settled: bool
    ) -> None:
        """Record the outcome; a store that fails now leaves the id held, never resent.

        Held until its lease runs out; then a later send finds it ABANDONED and looks again.
        """
        try:
            await self._ledger.finish(message_id, outcome, settled=settled)
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
        if self._guard is None and plan.template is None:  # nothing to prepare: the usual send
            return await self._ask_twilio(message, plan.request, None, traces, observation)
        prepared = await self._prepare(message, plan)
        if isinstance(prepared, ConnectorError):
            return ConnectorResult.failure(prepared)
        request, fallback = prepared
        return await self._ask_twilio(message, request, fallback, traces, observation)

    async def _prepare(
        self, message: Message, plan: SendPlan
    ) -> tuple[CreateMessageRequest, tuple[str, str] | None] | ConnectorError:
        """The request Twilio is sent (window guard, template names resolved), or the refusal.

        Also the ``(template, refusal code)`` when the window guard made it a fallback.
        """
        fallback: tuple[str, str] | None = None
        if self._guard is not None:
            closed = await self._guard.check(plan)
            if closed is not None:
                replanned = self._fall_back(message, closed)
                if isinstance(replanned, ConnectorError):
                    return replanned
                fallback = (_template_of(message), closed.code)
                plan = replanned
        request = await self._templates.resolve(plan)
        if isinstance(request, ConnectorError):
            if fallback is not None:
                request = request.with_details(fallback_template=fallback[0])
            return request
        return request, fallback

    async def _ask_twilio(
        self,
        message: Message,
        request: CreateMessageRequest,
        fallback: tuple[str, str] | None,
        traces: list[SendTrace],
        observation: SendObservation | None,
    ) -> ConnectorResult[SendResult]:
        """Ask Twilio to create the message, through the create stages, in its lane."""
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
            return ConnectorResult.success(sent_result(message.id, answer, trace, self._clock.now))
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
