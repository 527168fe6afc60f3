"""``TwilioWhatsAppConnector``: the application service users call (connector layer).

It orchestrates pure decisions (``outbound``, ``wire``) and ports (messaging
API, template catalog, signature validator, clock); it never touches sockets
itself. Expected failures come back as ``ConnectorResult`` values with the
documented codes; misuse (wrong types, an operation before ``initialize``)
raises.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import logging
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import attrs

from ..domain.endpoint import parse_whatsapp_number
from ..domain.errors import MessagingErrorCodes
from ..domain.message import Message
from ..domain.result import (
    ConnectorError,
    ConnectorException,
    ConnectorResult,
    ConnectorStatus,
    HealthReport,
    ReceiveResult,
    SendResult,
    StatusUpdate,
)
from ..domain.schema import Capability, ChannelSchema, FieldError, validate_settings
from ..domain.settings import ConnectionSettings
from ..domain.source import MessageSource
from ..domain.status import ConnectorState
from ..ports import (
    AccountResource,
    ApiError,
    Clock,
    ConversationWindow,
    CreateMessageRequest,
    MessageQuery,
    MessageResource,
    MessagingApi,
    SignatureValidator,
    TemplateCatalog,
    TemplateLookupError,
    TransportError,
)
from . import wire
from .errors import TwilioErrorCodes, error, map_provider_code
from .outbound import SendConfig, SendPlan, check_template, plan_send
from .resilience import Outcome, SendPolicy, TokenBucket, classify, find_sent
from .schema import MESSAGE_SID_PATTERN
from .signature import TwilioSignatureValidator
from .window import business_of, check_window, is_free_form

log = logging.getLogger("ratatosk.twilio")

T = TypeVar("T")

#: Loaded by name so this layer never imports aiohttp; see adr/0011.
DEFAULT_TRANSPORT: Final = "ratatosk.adapters.twilio_http:AiohttpMessagingApi"
DEFAULT_WINDOWS: Final = "ratatosk.adapters.conversation_window:InMemoryConversationWindows"
DEFAULT_BATCH_CONCURRENCY: Final = 50
_MESSAGE_SID: Final = re.compile(MESSAGE_SID_PATTERN)
_CLAIMED_MAX: Final = 10_000


class _UtcClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class TwilioWhatsAppConnector:
    """Send and receive WhatsApp messages through Twilio.

    ``transport``, ``signature_validator``, ``template_catalog`` and ``clock``
    are the ports; leave ``transport`` out for the real HTTP adapter, or pass
    ``ratatosk.testing.FakeTwilio()`` in tests.
    """

    def __init__(
        self,
        schema: ChannelSchema,
        settings: ConnectionSettings,
        *,
        transport: MessagingApi | None = None,
        signature_validator: SignatureValidator | None = None,
        template_catalog: TemplateCatalog | None = None,
        clock: Clock | None = None,
        batch_concurrency: int = DEFAULT_BATCH_CONCURRENCY,
        owns_transport: bool | None = None,
        send_policy: SendPolicy | None = None,
        rng: random.Random | None = None,
        conversation_window: ConversationWindow | None = None,
    ) -> None:
        if not isinstance(schema, ChannelSchema):
            raise TypeError(
                "schema must be a ChannelSchema, e.g. TwilioChannelSchemas.TWILIO_WHATSAPP"
            )
        if not isinstance(settings, ConnectionSettings):
            raise TypeError("settings must be a ConnectionSettings")
        if batch_concurrency < 1:
            raise ValueError("batch_concurrency must be at least 1")
        self.schema: Final = schema
        self._settings = settings
        self._transport = transport
        # We close what we opened; a transport the caller passed is the caller's.
        self._owns_transport = transport is None if owns_transport is None else owns_transport
        self._validator = signature_validator
        self._catalog = template_catalog
        self._windows = conversation_window
        self._window_guard = False
        self._clock: Clock = clock or _UtcClock()
        self._batch_concurrency = batch_concurrency
        self._policy = send_policy or SendPolicy()
        self._rng = rng or random.Random()
        self._in_flight = asyncio.Semaphore(self._policy.max_in_flight)
        self._buckets: dict[str, TokenBucket] = {}
        self._claimed: dict[str, None] = {}  # insertion-ordered, bounded: SIDs already reported
        self._state = ConnectorState.UNINITIALIZED
        self._config = SendConfig()
        self._account_sid: str | None = None
        self._started_at: dt.datetime | None = None
        self._last_error: ConnectorError | None = None

    def __repr__(self) -> str:
        return (
            f"TwilioWhatsAppConnector(channel={self.schema.channel!r}, "
            f"account_sid={self._account_sid!r}, state={self._state.value!r})"
        )

    # --- lifecycle ------------------------------------------------------------------

    @property
    def state(self) -> ConnectorState:
        return self._state

    @property
    def settings(self) -> ConnectionSettings:
        return self._settings

    @property
    def signature_validator(self) -> SignatureValidator:
        """The validator for this account's webhooks (ready after ``initialize``)."""
        if self._validator is None:
            raise RuntimeError("the signature validator exists after initialize()")
        return self._validator

    async def initialize(self) -> ConnectorResult[None]:
        """Validate settings and plug the transport; the connector is Ready afterwards.

        Codes: MISSING_CREDENTIALS (AccountSid or AuthToken blank),
        INVALID_CONNECTION_SETTINGS (every other bad field, all listed).
        """
        if self._state is ConnectorState.READY:
            return ConnectorResult.success(None)
        self._state = ConnectorState.INITIALIZING
        problem = self._check_settings()
        if problem is not None:
            self._state = ConnectorState.ERROR
            self._last_error = problem
            return ConnectorResult.failure(problem)
        settings = self._settings
        self._account_sid = settings.get_string("AccountSid")
        token = settings.get_secret("AuthToken")
        assert token is not None
        self._config = SendConfig(
            default_from=settings.get_string("FromNumber"),
            messaging_service_sid=settings.get_string("MessagingServiceSid"),
            status_callback=settings.get_string("StatusCallback"),
            strict_numbers=settings.get_bool("StrictNumbers"),
        )
        if self._validator is None:
            self._validator = TwilioSignatureValidator(token)
        if self._transport is None:
            self._transport = _load_default_transport(settings)
        self._window_guard = settings.get_bool("ConversationWindowGuard")
        if self._window_guard and self._windows is None:
            self._windows = _load_default(DEFAULT_WINDOWS)()
        self._started_at = self._clock.now()
        self._state = ConnectorState.READY
        return ConnectorResult.success(None)

    def _check_settings(self) -> ConnectorError | None:
        problems = list(validate_settings(self.schema, self._settings))
        from_number = self._settings.get_string("FromNumber")
        strict = self._settings.get_bool("StrictNumbers")
        if from_number is not None and not parse_whatsapp_number(from_number, strict=strict).ok:
            plan = " valid in its numbering plan" if strict else ""
            problems.append(FieldError("FromNumber", f"is not a whatsapp:+E164 number{plan}"))
        if not problems:
            return None
        fields = {p.field: p.message for p in problems}
        creds = {self.schema.authentication.principal, self.schema.authentication.credential}
        missing = [f for f, m in fields.items() if f in creds and m == "is required"]
        code = (
            MessagingErrorCodes.MISSING_CREDENTIALS
            if missing
            else TwilioErrorCodes.INVALID_CONNECTION_SETTINGS
        )
        text = "; ".join(f"{f} {m}" for f, m in fields.items())
        return error(code, f"connection settings are not usable: {text}", fields=fields)

    async def test_connection(self) -> ConnectorResult[AccountResource]:
        """Fetch the account: proves the credentials and the network path.

        Codes: INVALID_CREDENTIALS (Twilio said 401), CONNECTION_FAILED.
        """
        api = self._ready()
        try:
            answer = await api.fetch_account()
        except TransportError as exc:
            return ConnectorResult.failure(
                error(MessagingErrorCodes.CONNECTION_FAILED, f"Twilio unreachable: {exc}")
            )
        if isinstance(answer, ApiError):
            code = (
                MessagingErrorCodes.INVALID_CREDENTIALS
                if answer.status == 401
                else MessagingErrorCodes.CONNECTION_FAILED
            )
            return ConnectorResult.failure(_api_failure(code, "account check failed", answer))
        return ConnectorResult.success(answer)

    async def shutdown(self) -> None:
        """Close what the connector opened; safe to call twice."""
        if self._state in {ConnectorState.SHUTDOWN, ConnectorState.SHUTTING_DOWN}:
            return
        self._state = ConnectorState.SHUTTING_DOWN
        try:
            if self._transport is not None and self._owns_transport:
                await self._transport.close()
        finally:
            self._state = ConnectorState.SHUTDOWN

    async def __aenter__(self) -> Self:
        (await self.initialize()).unwrap()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    def _ready(self) -> MessagingApi:
        if self._state is not ConnectorState.READY or self._transport is None:
            raise RuntimeError(
                f"connector is {self._state.value}: await initialize() (or use 'async with') first"
            )
        return self._transport

    def _refuse(self, capability: Capability) -> ConnectorError | None:
        if self.schema.supports(capability):
            return None
        return error(
            MessagingErrorCodes.UNSUPPORTED_OPERATION,
            f"the {self.schema.channel} schema in use does not declare {capability.name}",
            capability=capability.name,
        )

    # --- sending ----------------------------------------------------------------------

    async def send_message(self, message: Message) -> ConnectorResult[SendResult]:
        """Send one message; nothing reaches Twilio unless every local check passes.

        Codes: UNSUPPORTED_OPERATION, UNSUPPORTED_CONTENT_TYPE, INVALID_MESSAGE,
        INVALID_RECIPIENT, INVALID_WHATSAPP_NUMBER, INVALID_SENDER,
        MISSING_FROM_NUMBER, MISSING_CONTENT_SID, TEMPLATE_NOT_APPROVED,
        TEMPLATE_LOOKUP_FAILED, RATE_LIMITED, INVALID_CREDENTIALS,
        SEND_MESSAGE_FAILED (Twilio refused, its code kept as provider_code),
        SEND_WHATSAPP_MESSAGE_FAILED (no usable answer from Twilio),
        SEND_OUTCOME_UNKNOWN (the answer was lost and reconciling found nothing),
        OUTSIDE_CONVERSATION_WINDOW (free-form send refused by the window guard).
        """
        api = self._ready()
        refused = self._refuse(Capability.SEND_MESSAGES)
        if refused is not None:
            return ConnectorResult.failure(refused)
        plan = plan_send(self.schema, self._config, message)
        if isinstance(plan, ConnectorError):
            return ConnectorResult.failure(plan)
        if self._window_guard and is_free_form(plan):
            assert self._windows is not None
            wanted = plan.request
            last = await self._windows.last_inbound(wanted.to, business_of(wanted))
            closed = check_window(wanted, last, self._clock.now())
            if closed is not None:
                return ConnectorResult.failure(closed)
        request = await self._resolve_template(plan)
        if isinstance(request, ConnectorError):
            return ConnectorResult.failure(request)
        answer = await self._create(api, request)
        if isinstance(answer, ConnectorError):
            return ConnectorResult.failure(
                attrs.evolve(answer, details={**answer.details, "message_id": message.id})
            )
        return ConnectorResult.success(self._send_result(message, answer))

    async def send_batch(
        self, messages: Iterable[Message], *, max_concurrency: int | None = None
    ) -> tuple[ConnectorResult[SendResult], ...]:
        """Send many messages concurrently; one result per message, in input order.

        A failure (even an unexpected exception) fails only its own message.
        """
        self._ready()
        items = list(messages)
        limit = asyncio.Semaphore(max_concurrency or self._batch_concurrency)

        async def one(message: Message) -> ConnectorResult[SendResult]:
            async with limit:
                try:
                    return await self.send_message(message)
                except (TypeError, ValueError) as exc:
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

        return tuple(await asyncio.gather(*(one(m) for m in items)))

    async def _resolve_template(self, plan: SendPlan) -> CreateMessageRequest | ConnectorError:
        template = plan.template
        if template is None:
            return plan.request
        if self._catalog is None:
            return error(
                TwilioErrorCodes.MISSING_CONTENT_SID,
                f"template {template.template_id!r} is not a Content SID (HX...) and no "
                "template catalog is configured to resolve names",
                template=template.template_id,
            )
        try:
            info = await self._catalog.find(template.template_id, template.language)
        except TemplateLookupError as exc:
            return error(
                TwilioErrorCodes.TEMPLATE_LOOKUP_FAILED,
                f"could not look up template {template.template_id!r}: {exc}",
            )
        if info is None:
            return error(
                TwilioErrorCodes.MISSING_CONTENT_SID,
                f"no Content SID for template {template.template_id!r}",
                template=template.template_id,
            )
        refused = check_template(info, template)
        if refused is not None:
            return refused
        return attrs.evolve(plan.request, content_sid=info.sid)

    async def _create(
        self, api: MessagingApi, request: CreateMessageRequest
    ) -> MessageResource | ConnectorError:
        """Create with the send policy: throttle, bounded retries, reconcile when unsure."""
        policy = self._policy.retry
        loop = asyncio.get_running_loop()
        deadline = loop.time() + policy.deadline
        started = self._clock.now()
        attempt = 0
        while True:
            attempt += 1
            # Every attempt is a request Twilio counts, retries included.
            await self._throttle(request, loop.time)
            failure: ApiError | TransportError
            try:
                async with self._in_flight, asyncio.timeout_at(deadline):
                    answer = await api.create_message(request)
            except TransportError as exc:
                failure = exc
            except TimeoutError:
                failure = TransportError("send deadline passed", maybe_delivered=True)
            else:
                if not isinstance(answer, ApiError):
                    self._claim(answer.sid)
                    return answer
                failure = answer
            outcome = classify(failure)
            if outcome is Outcome.RECONCILE and self._policy.reconcile:
                return await self._reconcile(api, request, started, failure, attempt)
            if outcome is Outcome.RETRY and attempt < policy.max_attempts:
                if (
                    isinstance(failure, ApiError)
                    and failure.status >= 500
                    and self._policy.reconcile
                ):
                    # A 503 is retried, but Twilio's 5xx are ambiguous: look before resending.
                    created = await self._find_created(api, request, started)
                    if created is not None:
                        return created
                hint = failure.retry_after if isinstance(failure, ApiError) else None
                wait = policy.delay(attempt, hint, self._rng)
                if loop.time() + wait < deadline:
                    log.info(
                        "send attempt %d failed (%s); retrying in %.2fs",
                        attempt,
                        _why(failure),
                        wait,
                    )
                    await asyncio.sleep(wait)
                    continue
            return _send_failure(failure, attempt)

    async def _throttle(self, request: CreateMessageRequest, now: Callable[[], float]) -> None:
        rate = self._policy.rate_per_sender
        if rate is None:
            return
        key = request.from_ or request.messaging_service_sid or ""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate=rate, burst=self._policy.burst)
        wait = bucket.reserve(now())
        if wait > 0:
            await asyncio.sleep(wait)

    def _claim(self, sid: str) -> None:
        self._claimed[sid] = None
        if len(self._claimed) > _CLAIMED_MAX:
            del self._claimed[next(iter(self._claimed))]

    async def _reconcile(
        self,
        api: MessagingApi,
        request: CreateMessageRequest,
        started: dt.datetime,
        failure: ApiError | TransportError,
        attempts: int,
    ) -> MessageResource | ConnectorError:
        """After an ambiguous failure, find out whether Twilio created the message."""
        found = await self._find_created(api, request, started)
        if found is not None:
            return found
        return error(
            TwilioErrorCodes.SEND_OUTCOME_UNKNOWN,
            f"Twilio may or may not have accepted the message ({_why(failure)}); it was not "
            "resent and was not found among the recipient's recent messages; "
            "check before resending",
            provider_code=failure.code if isinstance(failure, ApiError) else None,
            to=request.to,
            sender=request.from_ or request.messaging_service_sid,
            attempted_at=started.isoformat(),
            attempts=attempts,
        )

    async def _find_created(
        self, api: MessagingApi, request: CreateMessageRequest, started: dt.datetime
    ) -> MessageResource | None:
        """The message Twilio created for ``request`` since ``started``, if it can be seen."""
        query = MessageQuery(
            to=request.to,
            from_=request.from_,
            date_sent_after=(started - dt.timedelta(days=1)).date(),
            page_size=200,  # newest first: a busy recipient still fits in one page
        )
        for _ in range(2):
            try:
                page = await api.list_messages(query)
            except TransportError:
                continue
            if isinstance(page, ApiError):
                return None
            found = find_sent(
                request, page.messages, not_before=started, claimed=self._claimed.keys()
            )
            if found is not None:
                log.info("ambiguous send reconciled: Twilio has %s", found.sid)
                self._claim(found.sid)
            return found
        return None

    def _send_result(self, message: Message, resource: MessageResource) -> SendResult:
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
        }
        return SendResult(
            message_id=message.id,
            provider_message_id=resource.sid,
            status=wire.map_status(resource.status),
            timestamp=resource.date_created or self._clock.now(),
            data={k: v for k, v in data.items() if v is not None},
        )

    # --- status -----------------------------------------------------------------------

    async def get_message_status(self, message_sid: str) -> ConnectorResult[StatusUpdate]:
        """Ask Twilio where a message is.

        Codes: STATUS_QUERY_FAILED (not a message SID), WHATSAPP_STATUS_QUERY_FAILED
        (Twilio refused or could not be reached; its code kept), UNSUPPORTED_OPERATION.
        """
        api = self._ready()
        refused = self._refuse(Capability.MESSAGE_STATUS_QUERY)
        if refused is not None:
            return ConnectorResult.failure(refused)
        if not isinstance(message_sid, str) or not _MESSAGE_SID.fullmatch(message_sid):
            return ConnectorResult.failure(
                error(
                    TwilioErrorCodes.STATUS_QUERY_FAILED,
                    f"{str(message_sid)[:40]!r} is not a Twilio message SID (SM/MM + 32 hex)",
                )
            )
        try:
            answer = await api.fetch_message(message_sid)
        except TransportError as exc:
            return ConnectorResult.failure(
                error(TwilioErrorCodes.WHATSAPP_STATUS_QUERY_FAILED, f"Twilio unreachable: {exc}")
            )
        if isinstance(answer, ApiError):
            return ConnectorResult.failure(
                _api_failure(
                    TwilioErrorCodes.WHATSAPP_STATUS_QUERY_FAILED, "status query failed", answer
                )
            )
        data: dict[str, Any] = {
            "twilio_status": answer.status,
            "num_segments": answer.num_segments,
            "price": answer.price,
            "price_unit": answer.price_unit,
            "to": answer.to,
            "from": answer.from_,
        }
        return ConnectorResult.success(
            StatusUpdate(
                message_id=answer.sid,
                status=wire.map_status(answer.status),
                timestamp=answer.date_updated or answer.date_created or self._clock.now(),
                error_code=answer.error_code,
                error_message=answer.error_message,
                data={k: v for k, v in data.items() if v is not None},
            )
        )

    # --- receiving --------------------------------------------------------------------

    async def receive_messages(self, source: MessageSource) -> ConnectorResult[ReceiveResult]:
        """Parse an inbound-message webhook into typed messages.

        Codes: INVALID_WEBHOOK_DATA (a field Twilio always sends is missing),
        RECEIVE_MESSAGE_FAILED (the body cannot be read), UNSUPPORTED_CONTENT_TYPE.
        Signatures are checked by the webhook server, or by :meth:`validate_signature`.
        """
        self._ready()
        refused = self._refuse(Capability.RECEIVE_MESSAGES)
        if refused is not None:
            return ConnectorResult.failure(refused)
        if not isinstance(source, MessageSource):
            raise TypeError("receive_messages takes a MessageSource")
        received = wire.decode_receive(source)
        if self._windows is not None and received.value is not None:
            now = self._clock.now()
            for message in received.value.messages:
                if message.sender is not None and message.receiver is not None:
                    await self._windows.record_inbound(
                        message.sender.address, message.receiver.address, now
                    )
        return received

    async def receive_message_status(self, source: MessageSource) -> ConnectorResult[StatusUpdate]:
        """Parse a status callback. Codes: INVALID_WEBHOOK_DATA, RECEIVE_STATUS_FAILED,
        UNSUPPORTED_CONTENT_TYPE."""
        self._ready()
        refused = self._refuse(Capability.HANDLE_MESSAGE_STATE)
        if refused is not None:
            return ConnectorResult.failure(refused)
        if not isinstance(source, MessageSource):
            raise TypeError("receive_message_status takes a MessageSource")
        return wire.decode_status(source, self._clock.now())

    def validate_signature(
        self, url: str, source: MessageSource, signature: str | None
    ) -> ConnectorResult[None]:
        """Check ``X-Twilio-Signature`` for a webhook you receive yourself.

        ``url`` is the public URL Twilio called. Code: INVALID_SIGNATURE.
        """
        self._ready()
        assert self._validator is not None
        params: Mapping[str, Sequence[str]] | str
        params = source.body if source.format.name == "JSON" else wire.parse_form(source.body)
        if self._validator.validate(url, params, signature):
            return ConnectorResult.success(None)
        return ConnectorResult.failure(
            error(TwilioErrorCodes.INVALID_SIGNATURE, "X-Twilio-Signature does not match")
        )

    # --- status and health --------------------------------------------------------

    async def get_status(self) -> ConnectorResult[ConnectorStatus]:
        """State, uptime and the Twilio account's own status.

        Code: STATUS_ERROR (the account could not be read).
        """
        api = self._ready()
        assert self._started_at is not None
        try:
            account = await api.fetch_account()
        except TransportError as exc:
            return ConnectorResult.failure(
                error(TwilioErrorCodes.STATUS_ERROR, f"account status unavailable: {exc}")
            )
        if isinstance(account, ApiError):
            return ConnectorResult.failure(
                _api_failure(TwilioErrorCodes.STATUS_ERROR, "account status unavailable", account)
            )
        return ConnectorResult.success(
            ConnectorStatus(
                state=self._state,
                channel=self.schema.channel,
                uptime=self._clock.now() - self._started_at,
                data={
                    "account_sid": self._account_sid,
                    "account_status": account.status,
                    "account_name": account.friendly_name,
                    "schema_version": self.schema.version,
                },
            )
        )

    async def get_health(self) -> ConnectorResult[HealthReport]:
        """Healthy only when Ready and Twilio answers an account fetch; lists what is wrong.

        Never fails: an unhealthy connector is a successful report with issues.
        """
        issues: list[str] = []
        started = self._clock.now()
        if self._state is not ConnectorState.READY or self._transport is None:
            issues.append(f"connector is {self._state.value}")
            if self._last_error is not None:
                issues.append(f"{self._last_error.code}: {self._last_error.message}")
        else:
            result = await self.test_connection()
            if result.error is not None:
                issues.append(f"{result.error.code}: {result.error.message}")
        latency = (self._clock.now() - started).total_seconds()
        return ConnectorResult.success(
            HealthReport(
                healthy=not issues,
                state=self._state,
                checked_at=started,
                issues=tuple(issues),
                data={"latency_seconds": latency, "channel": self.schema.channel},
            )
        )


def _why(failure: ApiError | TransportError) -> str:
    if isinstance(failure, TransportError):
        return str(failure)
    return f"HTTP {failure.status}, Twilio {failure.code}"


def _send_failure(failure: ApiError | TransportError, attempts: int) -> ConnectorError:
    if isinstance(failure, TransportError):
        return error(
            TwilioErrorCodes.SEND_WHATSAPP_MESSAGE_FAILED,
            f"no usable answer from Twilio: {failure}",
            maybe_delivered=failure.maybe_delivered,
            attempts=attempts,
        )
    code = map_provider_code(failure.code, failure.status)
    return attrs.evolve(
        _api_failure(code, "Twilio refused the message", failure),
        details={**_api_failure(code, "", failure).details, "attempts": attempts},
    )


def _api_failure(code: str, what: str, answer: ApiError) -> ConnectorError:
    return error(
        code,
        f"{what}: {answer.message} (Twilio {answer.code or answer.status})",
        provider_code=answer.code,
        http_status=answer.status,
        more_info=answer.more_info,
        retry_after=answer.retry_after,
    )


def _load_default(reference: str) -> Any:
    """An adapter class found by name, so this layer never imports the adapters layer."""
    module_name, _, attr = reference.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _load_default_transport(settings: ConnectionSettings) -> MessagingApi:
    """The real HTTP adapter (see adr/0011): importing this module never imports aiohttp."""
    api: MessagingApi = _load_default(DEFAULT_TRANSPORT).from_settings(settings)
    return api


__all__ = ["ConnectorException", "TwilioWhatsAppConnector"]
