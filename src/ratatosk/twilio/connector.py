"""``TwilioWhatsAppConnector``: the facade users call (connector layer).

It owns the lifecycle (settings checked once, adapters plugged once), the
capability gates of the schema, and delegation: sending to the send
pipeline (``twilio/send``), decoding to the webhook codec, everything else
to the ports. It never touches sockets itself. Expected failures come back
as ``ConnectorResult`` values with the documented codes; misuse (wrong
types, an operation before ``initialize``) raises.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Final, Literal, Self, overload

from ..domain.content import MediaContent
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
from ..domain.schema import Capability, ChannelSchema
from ..domain.settings import ConnectionSettings
from ..domain.source import MessageSource
from ..domain.status import ConnectorState
from ..ports import (
    AccountResource,
    Clock,
    ConversationWindow,
    MediaFetcher,
    MediaPolicy,
    MessagingApi,
    RateLimiter,
    SendLedger,
    SignatureValidator,
    StatusTimeline,
    StatusTracker,
    Telemetry,
    TemplateCache,
    TemplateCatalog,
)
from . import assembly, inbound, queries, wire
from . import media as media_fetch
from .assembly import Plugs
from .errors import TwilioErrorCodes, error
from .resilience import SendPolicy
from .schema import settings_problem
from .send import Delivery, RetryHook, SendPipeline
from .signature import TwilioSignatureValidator

DEFAULT_BATCH_CONCURRENCY: Final = 50


class TwilioWhatsAppConnector:
    """Send and receive WhatsApp messages through Twilio.

    ``transport``, ``signature_validator``, ``template_catalog`` and ``clock``
    are the ports; leave ``transport`` out for the real HTTP adapter, or pass
    ``ratatosk.testing.FakeTwilio()`` in tests.

    ``telemetry`` watches every send (``ratatosk.adapters.otel.OpenTelemetry``
    for spans and metrics); ``on_retry`` is called with a
    :class:`~ratatosk.ports.RetryNotice` before each retry's wait, a plain
    function or a coroutine function, for watching retries without
    OpenTelemetry. Both are the connector's, not the ``SendPolicy``'s: the
    policy is a value (compared, shared, built from settings) saying how hard
    to try, and a callback is neither a value nor a policy.
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
        rate_limiter: RateLimiter | None = None,
        send_ledger: SendLedger | None = None,
        template_cache: TemplateCache | None = None,
        status_tracker: StatusTracker | None = None,
        telemetry: Telemetry | None = None,
        on_retry: RetryHook | None = None,
    ) -> None:
        if not isinstance(schema, ChannelSchema):
            raise TypeError(
                "schema must be a ChannelSchema, e.g. TwilioChannelSchemas.TWILIO_WHATSAPP"
            )
        if not isinstance(settings, ConnectionSettings):
            raise TypeError("settings must be a ConnectionSettings")
        if batch_concurrency < 1:
            raise ValueError("batch_concurrency must be at least 1")
        if on_retry is not None and not callable(on_retry):
            raise TypeError("on_retry must be a function taking a RetryNotice")
        self.schema: Final = schema
        self._settings = settings
        self._plugs = Plugs(
            transport=transport,
            template_catalog=template_catalog,
            template_cache=template_cache,
            conversation_window=conversation_window,
            rate_limiter=rate_limiter,
            send_ledger=send_ledger,
            status_tracker=status_tracker,
            clock=clock,
        )
        # We close what we opened; a transport the caller passed is the caller's.
        self._owns_transport = transport is None if owns_transport is None else owns_transport
        self._validator = signature_validator
        self._batch_concurrency = batch_concurrency
        self._policy = send_policy or SendPolicy()
        self._rng = rng or random.Random()
        self._telemetry = telemetry
        self._on_retry = on_retry
        self._pipeline: SendPipeline | None = None
        self._state = ConnectorState.UNINITIALIZED
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
    def telemetry(self) -> Telemetry | None:
        """What watches this connector's sends; ``build_webhook_app`` hands it to the server."""
        return self._telemetry

    @property
    def signature_validator(self) -> SignatureValidator:
        """The validator for this account's webhooks (ready after ``initialize``)."""
        if self._validator is None:
            raise RuntimeError("the signature validator exists after initialize()")
        return self._validator

    async def initialize(self) -> ConnectorResult[None]:
        """Validate settings, plug the adapters and build the send pipeline; Ready afterwards.

        Codes: MISSING_CREDENTIALS (AccountSid or AuthToken blank),
        INVALID_CONNECTION_SETTINGS (every other bad field, all listed).
        """
        if self._state is ConnectorState.READY:
            return ConnectorResult.success(None)
        self._state = ConnectorState.INITIALIZING
        problem = settings_problem(self.schema, self._settings)
        if problem is not None:
            self._state = ConnectorState.ERROR
            self._last_error = problem
            return ConnectorResult.failure(problem)
        settings = self._settings
        token = settings.get_secret("AuthToken")
        assert token is not None
        self._account_sid = settings.get_string("AccountSid")
        if self._validator is None:
            self._validator = TwilioSignatureValidator(token)
        self._plugs = plugs = assembly.complete(self._plugs, settings, self._policy)
        assert plugs.clock is not None
        self._pipeline = assembly.send_pipeline(
            self.schema,
            settings,
            plugs,
            self._policy,
            rng=self._rng,
            on_retry=self._on_retry,
            telemetry=self._telemetry,
        )
        self._started_at = plugs.clock.now()
        self._state = ConnectorState.READY
        return ConnectorResult.success(None)

    async def test_connection(self) -> ConnectorResult[AccountResource]:
        """Fetch the account: proves the credentials and the network path.

        Codes: INVALID_CREDENTIALS (Twilio said 401), CONNECTION_FAILED.
        """
        return await queries.account(self._ready())

    async def shutdown(self) -> None:
        """Close what the connector opened; safe to call twice."""
        if self._state in {ConnectorState.SHUTDOWN, ConnectorState.SHUTTING_DOWN}:
            return
        self._state = ConnectorState.SHUTTING_DOWN
        try:
            if self._plugs.transport is not None and self._owns_transport:
                await self._plugs.transport.close()
        finally:
            try:
                for close in self._plugs.closers:
                    await close()
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
        transport = self._plugs.transport
        if self._state is not ConnectorState.READY or transport is None:
            raise RuntimeError(
                f"connector is {self._state.value}: await initialize() (or use 'async with') first"
            )
        return transport

    def _now(self) -> dt.datetime:
        clock = self._plugs.clock  # plugged at initialize(); health may be asked before
        return clock.now() if clock is not None else dt.datetime.now(dt.UTC)

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

        The same ``message.id`` sent twice is sent once: the second call gets
        the first call's result (SEND_IN_PROGRESS while the first is still
        being sent, MESSAGE_ID_REUSED when the content differs).

        Codes: UNSUPPORTED_OPERATION, UNSUPPORTED_CONTENT_TYPE, INVALID_MESSAGE,
        INVALID_RECIPIENT, INVALID_WHATSAPP_NUMBER, INVALID_SENDER,
        MISSING_FROM_NUMBER, MISSING_CONTENT_SID, TEMPLATE_NOT_APPROVED,
        TEMPLATE_LOOKUP_FAILED, RATE_LIMITED, INVALID_CREDENTIALS,
        SEND_MESSAGE_FAILED (Twilio refused, its code kept as provider_code),
        SEND_WHATSAPP_MESSAGE_FAILED (no usable answer from Twilio),
        SEND_OUTCOME_UNKNOWN (the answer was lost and reconciling could not tell),
        OUTSIDE_CONVERSATION_WINDOW (free-form send refused by the window guard),
        SEND_IN_PROGRESS, MESSAGE_ID_REUSED, STATE_STORE_UNAVAILABLE (the shared
        state, Redis, could not be asked: nothing was sent).
        """
        self._ready()
        refused = self._refuse(Capability.SEND_MESSAGES)
        if refused is not None:
            return ConnectorResult.failure(refused)
        assert self._pipeline is not None
        return await self._pipeline.send(message)

    async def recheck_message(
        self, message: Message, *, delivery: Delivery
    ) -> ConnectorResult[SendResult]:
        """Settle a message whose send ended unknown, or whose sending process died.

        By what the send ledger holds for ``message.id``:

        * nothing: an ordinary send, as :meth:`send_message`;
        * a SID: that result again (``replayed``); being sent by a live call:
          SEND_IN_PROGRESS; other content under the id: MESSAGE_ID_REUSED;
        * an unknown outcome (SEND_OUTCOME_UNKNOWN), or a holder whose lease
          ran out (its process died mid-send): look at the recipient's messages
          since the first attempt, by the reconcile's rules. Found: success,
          ``data["rechecked"]`` and ``data["reconciled"]``. Absent:
          ``Delivery.AT_MOST_ONCE`` answers MESSAGE_NOT_SENT and keeps that for
          good; ``Delivery.AT_LEAST_ONCE`` sends it again through the whole
          pipeline (``data["resent"]``), which duplicates a message Twilio
          stored but did not list yet. Cannot tell (list unreadable, a rival
          send's message could be it): SEND_OUTCOME_UNKNOWN again, to recheck later.

        Call it once Twilio's message list has caught up (a minute after the
        send): sooner, a stored message may look absent. The outcome is
        recorded in the ledger like a send's. Codes: those of
        :meth:`send_message`, and MESSAGE_NOT_SENT.
        """
        if not isinstance(delivery, Delivery):
            raise TypeError("delivery must be a Delivery, e.g. Delivery.AT_LEAST_ONCE")
        self._ready()
        refused = self._refuse(Capability.SEND_MESSAGES)
        if refused is not None:
            return ConnectorResult.failure(refused)
        assert self._pipeline is not None
        return await self._pipeline.recheck(message, delivery)

    async def send_batch(
        self, messages: Iterable[Message], *, max_concurrency: int | None = None
    ) -> tuple[ConnectorResult[SendResult], ...]:
        """Send many messages concurrently; one result per message, in input order.

        A failure (even an unexpected exception) fails only its own message.
        """
        self._ready()
        assert self._pipeline is not None
        refused = self._refuse(Capability.SEND_MESSAGES)
        if refused is not None:
            return tuple(ConnectorResult.failure(refused) for _ in messages)
        limit = max_concurrency or self._batch_concurrency
        return await self._pipeline.send_batch(messages, limit)

    # --- status -----------------------------------------------------------------------

    async def get_message_status(
        self, message_sid: str, *, prefer_tracked: bool = False
    ) -> ConnectorResult[StatusUpdate]:
        """Where a message is: Twilio's answer, or with ``prefer_tracked`` the status
        callbacks already received, when there are any (no request; ``data["source"]``
        says which).

        Codes: STATUS_QUERY_FAILED (not a message SID), WHATSAPP_STATUS_QUERY_FAILED
        (Twilio refused or could not be reached; its code kept), UNSUPPORTED_OPERATION.
        """
        api = self._ready()
        refused = self._refuse(Capability.MESSAGE_STATUS_QUERY)
        if refused is not None:
            return ConnectorResult.failure(refused)
        tracker = self._plugs.status_tracker
        if prefer_tracked and tracker is not None and isinstance(message_sid, str):
            timeline = await tracker.timeline(message_sid)
            if timeline is not None:
                return ConnectorResult.success(queries.tracked_status(timeline))
        return await queries.message_status(api, message_sid, self._now())

    async def get_status_timeline(self, message_sid: str) -> StatusTimeline | None:
        """Every status callback received for a message, in arrival order, and the one that
        counts; None when none was received (or no tracker is plugged)."""
        self._ready()
        tracker = self._plugs.status_tracker
        return None if tracker is None else await tracker.timeline(message_sid)

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
        return await inbound.receive(source, self._plugs.conversation_window, self._now())

    async def receive_message_status(self, source: MessageSource) -> ConnectorResult[StatusUpdate]:
        """Parse a status callback and merge it into the message's timeline.

        The update's ``data`` says whether it moved the message forward
        (``advanced``) and what its status now is (``current_status``): a
        ``sent`` arriving after ``read`` is reported, but does not count.
        Codes: INVALID_WEBHOOK_DATA, RECEIVE_STATUS_FAILED, UNSUPPORTED_CONTENT_TYPE.
        """
        self._ready()
        refused = self._refuse(Capability.HANDLE_MESSAGE_STATE)
        if refused is not None:
            return ConnectorResult.failure(refused)
        if not isinstance(source, MessageSource):
            raise TypeError("receive_message_status takes a MessageSource")
        return await inbound.receive_status(source, self._plugs.status_tracker, self._now())

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

    @overload
    async def fetch_media(
        self,
        media: MediaContent | str,
        *,
        policy: MediaPolicy | None = None,
        stream: Literal[False] = False,
    ) -> ConnectorResult[media_fetch.MediaFile]: ...

    @overload
    async def fetch_media(
        self, media: MediaContent | str, *, policy: MediaPolicy | None = None, stream: Literal[True]
    ) -> ConnectorResult[media_fetch.MediaStream]: ...

    async def fetch_media(
        self, media: MediaContent | str, *, policy: MediaPolicy | None = None, stream: bool = False
    ) -> ConnectorResult[media_fetch.MediaFile] | ConnectorResult[media_fetch.MediaStream]:
        """The bytes of an inbound message's media (``MediaUrlN``), by the rules of ``media``.

        The account's credentials go only to the configured API origin; the
        CDN redirect is followed without them, to ``policy.allowed_hosts``
        only (Twilio's media hosts by default). ``stream=True`` gives a
        :class:`~ratatosk.twilio.media.MediaStream` to iterate instead of a
        :class:`~ratatosk.twilio.media.MediaFile`.

        Codes: MEDIA_URL_NOT_ALLOWED, MEDIA_REDIRECT_NOT_ALLOWED, MEDIA_TOO_LARGE,
        MEDIA_FETCH_TIMEOUT, MEDIA_FETCH_FAILED, UNSUPPORTED_OPERATION (the
        transport cannot fetch media).
        """
        transport = self._ready()
        if not isinstance(transport, MediaFetcher):
            return ConnectorResult.failure(
                error(MessagingErrorCodes.UNSUPPORTED_OPERATION, "the transport cannot fetch media")
            )
        rules = policy or MediaPolicy()
        if stream:
            return await media_fetch.open_stream(transport, media, rules)
        return await media_fetch.read_whole(transport, media, rules)

    # --- status and health --------------------------------------------------------

    async def get_status(self) -> ConnectorResult[ConnectorStatus]:
        """State, uptime and the Twilio account's own status.

        Code: STATUS_ERROR (the account could not be read).
        """
        api = self._ready()
        started_at = self._started_at
        assert started_at is not None
        return await queries.connector_status(
            api,
            state=self._state,
            schema=self.schema,
            account_sid=self._account_sid,
            uptime=lambda: self._now() - started_at,
        )

    async def get_health(self) -> ConnectorResult[HealthReport]:
        """Healthy only when Ready and Twilio answers an account fetch; lists what is wrong.

        Never fails: an unhealthy connector is a successful report with issues.
        """
        ready = self._state is ConnectorState.READY and self._plugs.transport is not None
        return await queries.health(
            self._plugs.transport if ready else None,
            state=self._state,
            channel=self.schema.channel,
            last_error=self._last_error,
            now=self._now,
        )


__all__ = ["ConnectorException", "Plugs", "TwilioWhatsAppConnector"]
