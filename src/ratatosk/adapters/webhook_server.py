"""The webhook gate as an aiohttp app (adapters layer), to mount in an aiohttp application.

``ratatosk serve`` runs the same gate on the package's own server
(:mod:`ratatosk.adapters.http11_server`, ADR 0027); this app is for an
aiohttp application of your own.

``create_webhook_app`` builds an aiohttp application with two routes:

* ``POST {prefix}`` - inbound WhatsApp messages -> ``on_message(ReceiveResult)``
* ``POST {prefix}/status`` - status callbacks -> ``on_status(StatusUpdate)``

and ``GET /healthz``. What every request goes through (size, media type,
signature, decoding, deduplication, the handler, the TwiML answer) is
:mod:`ratatosk.adapters.webhook_core`, shared with the ASGI app
(:mod:`ratatosk.adapters.asgi`); this module only hands it aiohttp's request
and turns its :class:`~ratatosk.adapters.webhook_core.Reply` into a response.
aiohttp enforces ``max_body_bytes`` while it reads (``client_max_size``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from ..ports import Deduplicator, SignatureValidator, Telemetry
from .webhook_core import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_FIELDS,
    DEFAULT_PREFIX,
    HEALTHY,
    HEALTHZ_PATH,
    IDEMPOTENCY_HEADER,
    REFUSAL_LOG_BURST,
    SIGNATURE_HEADER,
    BodyTooLarge,
    MessageHandler,
    Reply,
    Route,
    StatusHandler,
    WebhookCore,
    WebhookReceiver,
    WebhookStats,
)

STATS: Final = web.AppKey("ratatosk.webhook_stats", WebhookStats)


class _AiohttpIncoming:
    """aiohttp's request as the core's :class:`~ratatosk.adapters.webhook_core.Incoming`."""

    __slots__ = ("_request",)

    def __init__(self, request: web.Request) -> None:
        self._request = request

    @property
    def content_length(self) -> int | None:
        return self._request.content_length

    @property
    def body_ready(self) -> bool:
        return self._request.content.is_eof()

    async def read(self) -> bytes:
        try:
            return await self._request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BodyTooLarge from None

    def header(self, name: str) -> str | None:
        return self._request.headers.get(name)

    def header_values(self, name: str) -> list[str]:
        return self._request.headers.getall(name, [])

    @property
    def target(self) -> str:
        return self._request.raw_path

    def origin(self) -> str:
        return f"{self._request.scheme}://{self._request.host}"


def _response(reply: Reply) -> web.Response:
    return web.Response(status=reply.status, body=reply.body, headers=reply.headers)


def _handler(
    core: WebhookCore, route: Route[Any]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        return _response(await core.answer(route, _AiohttpIncoming(request)))

    return handle


async def _healthz(_: web.Request) -> web.Response:
    return _response(HEALTHY)


def create_webhook_app(
    receiver: WebhookReceiver,
    *,
    validator: SignatureValidator,
    public_url: str | None = None,
    on_message: MessageHandler | None = None,
    on_status: StatusHandler | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    max_fields: int = DEFAULT_MAX_FIELDS,
    body_timeout: float = 10.0,
    trust_forwarded: bool = False,
    dedup: Deduplicator | None = None,
    in_flight_wait: float = 10.0,
    max_handler_attempts: int = 3,
    path_prefix: str = DEFAULT_PREFIX,
    telemetry: Telemetry | None = None,
) -> web.Application:
    """An aiohttp app that verifies Twilio's webhooks and hands typed events to you.

    ``public_url`` is the scheme and host Twilio calls (``https://example.com``,
    or with a path the proxy strips); the signature covers the full URL, so it
    must match what is configured at Twilio. Without it the request's own Host
    is used, which is right only when nothing rewrites it. ``trust_forwarded``
    takes ``X-Forwarded-Proto``/``-Host`` instead: enable it only behind a proxy
    that sets them. ``dedup`` is the store of deliveries (in memory by default;
    a shared one when several servers receive), and ``in_flight_wait`` how long
    a repeat waits for the first delivery's handler before it is answered 503.
    After ``max_handler_attempts`` failures of the handler on one event, the
    event is given up (logged, and later deliveries answered 200).
    ``telemetry`` is told of every answer (route, status, duplicate or not,
    duration); the handler runs inside that observation (an OpenTelemetry
    span is current while it runs).
    """
    return webhook_app(
        WebhookCore(
            receiver,
            validator=validator,
            public_url=public_url,
            on_message=on_message,
            on_status=on_status,
            max_body_bytes=max_body_bytes,
            max_fields=max_fields,
            body_timeout=body_timeout,
            trust_forwarded=trust_forwarded,
            dedup=dedup,
            in_flight_wait=in_flight_wait,
            max_handler_attempts=max_handler_attempts,
            path_prefix=path_prefix,
            telemetry=telemetry,
        )
    )


def webhook_app(core: WebhookCore) -> web.Application:
    """An aiohttp app answering with ``core`` (closed when the app shuts down)."""
    app = web.Application(client_max_size=core.max_body_bytes)
    app[STATS] = core.stats

    async def close_core(_: web.Application) -> None:
        await core.close()

    # on_shutdown runs before on_cleanup, where a user's hooks close the store the core uses.
    app.on_shutdown.append(close_core)
    for path, route in core.routes.items():
        app.router.add_post(path, _handler(core, route))
    app.router.add_get(HEALTHZ_PATH, _healthz)
    return app


__all__ = [
    "DEFAULT_PREFIX",
    "IDEMPOTENCY_HEADER",
    "REFUSAL_LOG_BURST",
    "SIGNATURE_HEADER",
    "STATS",
    "MessageHandler",
    "StatusHandler",
    "WebhookReceiver",
    "WebhookStats",
    "create_webhook_app",
    "webhook_app",
]
