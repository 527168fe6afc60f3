"""Composition root: settings + environment -> a wired connector.

The only module that chooses adapters (besides the CLI that calls it), and the
only one that reads ``TWILIO_*`` variables, always when asked, never at import.
:func:`complete_plugs` is also what the documented constructor
``TwilioWhatsAppConnector(schema, settings)`` runs at ``initialize``, so the
constructor and :func:`build_connector` choose the same defaults.

State is in memory unless ``RedisUrl`` (``REDIS_URL``) is set: then every
state port (rate limiter, send ledger, template cache, conversation windows,
status timelines and the webhook server's deduplicator) is plugged to Redis
at once. redis-py is imported only then, so the in-memory default never needs it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web

from .adapters.asgi import AsgiWebhookApp, create_asgi_webhook_app
from .adapters.clock import SystemClock
from .adapters.memory import (
    InMemoryConversationWindows,
    InMemoryRateLimiter,
    InMemorySendLedger,
    InMemoryStatusTracker,
)
from .adapters.memory.outbound_queue import InMemoryOutboundQueue
from .adapters.templates import ContentApiTemplateCatalog, StaticTemplateCatalog
from .adapters.twilio_http import Http11MessagingApi
from .adapters.webhook_core import WebhookCore
from .adapters.webhook_server import MessageHandler, StatusHandler, webhook_app
from .adapters.worker import QueueWorker, WorkerSettings
from .domain.settings import ConnectionSettings
from .domain.status import ConnectorState
from .emulator.model import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from .ports import (
    Clock,
    ConversationWindow,
    Deduplicator,
    HasClock,
    HasTemplateCatalog,
    MessagingApi,
    OutboundQueue,
    Telemetry,
    TemplateCatalog,
)
from .twilio.assembly import Plugs
from .twilio.connector import TwilioWhatsAppConnector
from .twilio.outbox import Outbox
from .twilio.resilience import SendPolicy
from .twilio.schema import TwilioChannelSchemas, setting_pairs
from .twilio.send import RetryHook, lease_for

if TYPE_CHECKING:
    from .adapters.redis import RedisStores

#: Environment variable -> settings parameter.
ENVIRONMENT: Mapping[str, str] = {
    "TWILIO_ACCOUNT_SID": "AccountSid",
    "TWILIO_AUTH_TOKEN": "AuthToken",
    "TWILIO_WHATSAPP_FROM": "FromNumber",
    "TWILIO_API_BASE_URL": "ApiBaseUrl",
    "TWILIO_CONTENT_API_BASE_URL": "ContentApiBaseUrl",
    "TWILIO_MESSAGING_SERVICE_SID": "MessagingServiceSid",
    "TWILIO_STATUS_CALLBACK": "StatusCallback",
    "TWILIO_WEBHOOK_URL": "WebhookUrl",
    "TWILIO_TEMPLATES": "Templates",
    "RATATOSK_WINDOW_GUARD": "ConversationWindowGuard",
    "REDIS_URL": "RedisUrl",
}


def settings_from_env(
    environ: Mapping[str, str] | None = None, base: ConnectionSettings | None = None
) -> ConnectionSettings:
    """Settings from ``TWILIO_*`` variables laid over ``base`` (blank variables ignored).

    A parameter the schema declares sensitive (``AuthToken``, ``RedisUrl``) is
    kept as a ``Secret``.
    """
    env = os.environ if environ is None else environ
    settings = base or ConnectionSettings()
    schema = TwilioChannelSchemas.TWILIO_WHATSAPP
    for variable, parameter in ENVIRONMENT.items():
        value = env.get(variable, "").strip()
        if value:
            spec = schema.parameter(parameter)
            sensitive = spec is not None and spec.sensitive
            settings = settings.set_parameter(parameter, value, sensitive=sensitive)
    return settings


def redis_url(settings: ConnectionSettings) -> str | None:
    """``RedisUrl`` (a Secret or plain text), or None: state stays in memory."""
    url = settings.get_secret("RedisUrl")
    return url.reveal().strip() if url is not None else None


def open_redis(url: str) -> RedisStores:
    """Every Redis adapter on one new client for ``url``; close it with ``close()``.

    Imports redis-py here, not at module import: without the ``redis`` extra
    the package works in memory and fails only when Redis is asked for.
    """
    try:
        from .adapters.redis import RedisStores  # noqa: PLC0415 - redis-py only when asked for
    except ImportError as exc:  # pragma: no cover - the extra is part of the dev install
        raise RuntimeError("RedisUrl needs redis-py: pip install 'ratatosk-twilio[redis]'") from exc
    return RedisStores.from_url(url)


def sender_rates(settings: ConnectionSettings) -> dict[str, float]:
    """``SenderRates``: the senders that have a rate of their own, for every limiter."""
    return {k: float(v) for k, v in setting_pairs(settings, "SenderRates").items()}


def redis_plugs(
    stores: RedisStores, policy: SendPolicy, rates: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """The state plugs a connector takes from ``stores`` (no limiter when the policy has none);
    ``rates`` are the senders' own rates (``SenderRates``)."""
    limiter = None
    if policy.rate_per_sender is not None:
        limiter = stores.rate_limiter(policy.rate_per_sender, policy.burst, rates=rates)
    return {
        "rate_limiter": limiter,
        "send_ledger": stores.send_ledger(lease=lease_for(policy)),
        "status_tracker": stores.status_tracker(),
        "template_cache": stores.template_cache(),
        "conversation_window": stores.conversation_windows(),
    }


def complete_plugs(plugs: Plugs, settings: ConnectionSettings, policy: SendPolicy) -> Plugs:
    """Every adapter the caller left out, chosen from the settings; in memory by default.

    * transport: the REST client on the package's own HTTP/1.1 client (ADR 0026;
      pass ``AiohttpMessagingApi.from_settings(settings)`` as the transport for aiohttp's);
    * clock: a simulated Twilio's own clock (``FakeTwilio``), else the system clock,
      so tests with the fake never wait on real time unless they ask to;
    * template catalog: ``Templates`` (static), else the transport's own (the
      Content API, or the fake's templates);
    * rate limiter (unless ``SendPolicy.rate_per_sender`` is None), send
      ledger, and with ``ConversationWindowGuard`` the window store: in memory;
    * with ``RedisUrl``, those, the template cache and the status tracker in
      Redis instead, on one client the connector closes at shutdown; the
      windows are then recorded always, so a guard on another process sees
      who wrote to this one.
    """
    url = redis_url(settings)
    if url is not None and _lacks_state(plugs, policy):
        stores = open_redis(url)
        shared = redis_plugs(stores, policy, sender_rates(settings))
        plugs = attrs.evolve(
            plugs,
            **{name: plug for name, plug in shared.items() if getattr(plugs, name) is None},
            closers=(*plugs.closers, stores.close),
        )
    transport = plugs.transport or Http11MessagingApi.from_settings(settings)
    clock = plugs.clock
    if clock is None:
        clock = transport.clock if isinstance(transport, HasClock) else SystemClock()
    catalog = plugs.template_catalog or template_catalog_for(settings, transport)
    limiter = plugs.rate_limiter
    if limiter is None and policy.rate_per_sender is not None:
        limiter = InMemoryRateLimiter(
            policy.rate_per_sender, policy.burst, clock.monotonic, rates=sender_rates(settings)
        )
    windows = plugs.conversation_window
    if windows is None and settings.get_bool("ConversationWindowGuard"):
        windows = InMemoryConversationWindows()
    return attrs.evolve(
        plugs,
        transport=transport,
        clock=clock,
        template_catalog=catalog,
        rate_limiter=limiter,
        send_ledger=plugs.send_ledger
        or InMemorySendLedger(clock.monotonic, lease=lease_for(policy)),
        status_tracker=plugs.status_tracker or InMemoryStatusTracker(),
        conversation_window=windows,
    )


def _lacks_state(plugs: Plugs, policy: SendPolicy) -> bool:
    wants_limiter = plugs.rate_limiter is None and policy.rate_per_sender is not None
    return wants_limiter or None in (
        plugs.send_ledger,
        plugs.status_tracker,
        plugs.template_cache,
        plugs.conversation_window,
    )


def template_catalog_for(
    settings: ConnectionSettings, transport: MessagingApi | None = None
) -> TemplateCatalog | None:
    """``Templates`` (static), else the transport's own, else (no transport) the Content API's.

    A transport of the caller's that cannot read templates gets no catalog:
    names then fail with MISSING_CONTENT_SID rather than a lookup elsewhere.
    """
    static = settings.get_string("Templates")
    if static:
        return StaticTemplateCatalog.parse(static)
    if isinstance(transport, HasTemplateCatalog):
        return transport.template_catalog()
    if transport is None and settings.get_string("AccountSid") and settings.get_secret("AuthToken"):
        return ContentApiTemplateCatalog.from_settings(settings)  # its own session per read
    return None


def build_connector(
    settings: ConnectionSettings | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    transport: MessagingApi | None = None,
    template_catalog: TemplateCatalog | None = None,
    clock: Clock | None = None,
    send_policy: SendPolicy | None = None,
    conversation_window: ConversationWindow | None = None,
    redis: RedisStores | None = None,
    telemetry: Telemetry | None = None,
    on_retry: RetryHook | None = None,
) -> TwilioWhatsAppConnector:
    """A connector from settings laid over ``TWILIO_*`` variables; not yet initialised.

    ``redis``: state adapters on stores the caller opened (and closes), so a
    process shares one client between the connector and its webhook server
    or queue. Whatever is not given is chosen by :func:`complete_plugs` at
    ``initialize`` (Redis of its own when ``RedisUrl`` is set).
    """
    resolved = settings_from_env(environ, settings)
    shared = {}
    if redis is not None:
        shared = redis_plugs(redis, send_policy or SendPolicy(), sender_rates(resolved))
    if conversation_window is not None:
        shared["conversation_window"] = conversation_window
    return TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP,
        resolved,
        transport=transport,
        template_catalog=template_catalog,
        clock=clock,
        send_policy=send_policy,
        telemetry=telemetry,
        on_retry=on_retry,
        **shared,
    )


def build_webhook_core(
    connector: TwilioWhatsAppConnector,
    *,
    public_url: str | None = None,
    on_message: MessageHandler | None = None,
    on_status: StatusHandler | None = None,
    trust_forwarded: bool = False,
    dedup: Deduplicator | None = None,
    telemetry: Telemetry | None = None,
) -> WebhookCore:
    """The webhook gate for an initialised connector, with its signature validator.

    ``dedup`` defaults to the in-memory store; several server processes need
    a shared one behind the ``Deduplicator`` port. ``telemetry`` defaults to
    the connector's, so one ``OpenTelemetry()`` watches sends and webhooks.
    Serve it with ``ratatosk.adapters.http11_server.serve_webhooks`` (the
    package's own HTTP/1.1 server, adr/0027, what ``ratatosk serve`` runs),
    or mount it in aiohttp with :func:`build_webhook_app`.
    """
    return WebhookCore(
        connector,
        validator=connector.signature_validator,
        public_url=public_url,
        on_message=on_message,
        on_status=on_status,
        trust_forwarded=trust_forwarded,
        dedup=dedup,
        telemetry=telemetry if telemetry is not None else connector.telemetry,
    )


def build_webhook_app(
    connector: TwilioWhatsAppConnector,
    *,
    public_url: str | None = None,
    on_message: MessageHandler | None = None,
    on_status: StatusHandler | None = None,
    trust_forwarded: bool = False,
    dedup: Deduplicator | None = None,
    telemetry: Telemetry | None = None,
) -> web.Application:
    """:func:`build_webhook_core` as an aiohttp app, for an aiohttp application of your own."""
    return webhook_app(
        build_webhook_core(
            connector,
            public_url=public_url,
            on_message=on_message,
            on_status=on_status,
            trust_forwarded=trust_forwarded,
            dedup=dedup,
            telemetry=telemetry,
        )
    )


class _ValidatorOf:
    """The connector's signature validator, looked up per request.

    It exists once the connector is initialised; an ASGI app is usually built
    at import time, before its server's lifespan (or the framework's) runs
    ``initialize``.
    """

    __slots__ = ("_connector",)

    def __init__(self, connector: TwilioWhatsAppConnector) -> None:
        self._connector = connector

    def validate(
        self, url: str, params: Mapping[str, Sequence[str]] | str, signature: str | None
    ) -> bool:
        return self._connector.signature_validator.validate(url, params, signature)


def build_asgi_webhook_app(
    connector: TwilioWhatsAppConnector,
    *,
    public_url: str | None = None,
    on_message: MessageHandler | None = None,
    on_status: StatusHandler | None = None,
    trust_forwarded: bool = False,
    dedup: Deduplicator | None = None,
    telemetry: Telemetry | None = None,
) -> AsgiWebhookApp:
    """:func:`build_webhook_app` as a plain ASGI app, for any ASGI server or framework.

    The connector may still be uninitialised: served alone (``uvicorn
    module:app``), the app initialises it on the lifespan's startup and shuts
    it down on its shutdown, unless it was ready already (then its owner
    closes it). Mounted in a framework, which does not forward lifespan
    events to what it mounts, initialise it in the framework's own lifespan.
    """
    started_here = False

    async def startup() -> None:
        nonlocal started_here
        if connector.state is not ConnectorState.READY:
            (await connector.initialize()).unwrap()
            started_here = True

    async def shutdown() -> None:
        if started_here:
            await connector.shutdown()

    return create_asgi_webhook_app(
        connector,
        validator=_ValidatorOf(connector),
        public_url=public_url,
        on_message=on_message,
        on_status=on_status,
        trust_forwarded=trust_forwarded,
        dedup=dedup,
        telemetry=telemetry if telemetry is not None else connector.telemetry,
        on_startup=startup,
        on_shutdown=shutdown,
    )


def emulator_account(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The account an emulator serves: ``TWILIO_ACCOUNT_SID``/``_AUTH_TOKEN``, else defaults.

    So a shell that points the CLI at the emulator with its own credentials
    gets an emulator that accepts them.
    """
    env = os.environ if environ is None else environ
    account_sid = env.get("TWILIO_ACCOUNT_SID", "").strip() or DEFAULT_ACCOUNT_SID
    token = env.get("TWILIO_AUTH_TOKEN", "").strip() or DEFAULT_AUTH_TOKEN
    return account_sid, token


# --- The durable send queue ---------------------------------------------------------


def build_outbox(
    settings: ConnectionSettings | None = None,
    *,
    redis: RedisStores | None = None,
    queue: OutboundQueue | None = None,
    queue_name: str = "outbound",
    environ: Mapping[str, str] | None = None,
) -> Outbox:
    """An :class:`~ratatosk.twilio.outbox.Outbox` that submits to the workers' queue.

    ``redis``: the queue in Redis on stores the caller opened (and closes),
    the one ``ratatosk worker --redis`` drains. Else ``queue``, else an
    in-memory queue (for one process that also runs a :class:`QueueWorker`).
    Planned by the same settings as the workers' connector (``TWILIO_*``).
    """
    if queue is None:
        queue = (
            redis.outbound_queue(name=queue_name)
            if redis is not None
            else InMemoryOutboundQueue(SystemClock().monotonic)
        )
    return Outbox.from_settings(queue, settings_from_env(environ, settings))


def build_worker(
    redis: RedisStores,
    worker: WorkerSettings,
    settings: ConnectionSettings | None = None,
    *,
    send_policy: SendPolicy | None = None,
    lease: float | None = None,
    visibility_timeout: float = 30.0,
    queue_name: str = "outbound",
    environ: Mapping[str, str] | None = None,
    telemetry: Telemetry | None = None,
) -> QueueWorker:
    """A :class:`QueueWorker` draining the Redis queue through a connector on the same Redis.

    Its connector shares the rate limiter and the send ledger with every
    other worker and process on ``redis``. ``lease`` is how long the ledger
    holds a message a worker is sending, ``lease_for(policy)`` by default: a
    dead worker's message is looked at again once it runs out, so a shorter
    one settles those sooner, and must still outlast the slowest live send.
    The caller initialises ``worker.connector`` and shuts it down; ``redis``
    stays the caller's.
    """
    policy = send_policy or SendPolicy()
    lease = lease_for(policy) if lease is None else lease
    if worker.max_deliveries * visibility_timeout <= lease:
        raise ValueError(
            f"max_deliveries x visibility_timeout ({worker.max_deliveries} x "
            f"{visibility_timeout:g} s) must exceed the ledger's lease ({lease:g} s), or a dead "
            "worker's message is dead-lettered before it can be looked at again"
        )
    resolved = settings_from_env(environ, settings)
    plugs = {
        **redis_plugs(redis, policy, sender_rates(resolved)),
        "send_ledger": redis.send_ledger(lease=lease),
    }
    connector = TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP,
        resolved,
        send_policy=policy,
        telemetry=telemetry,
        **plugs,
    )
    queue = redis.outbound_queue(name=queue_name, visibility_timeout=visibility_timeout)
    return QueueWorker(connector, queue, worker)
