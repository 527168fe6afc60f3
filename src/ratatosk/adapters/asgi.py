"""The webhook server as a plain ASGI application (adapters layer), for any ASGI server.

FastAPI, Starlette, Litestar and Django (ASGI) applications mount it, and
uvicorn or hypercorn serve it alone. ASGI is a calling convention, not a
library: nothing is imported for it. What a request goes through is
:mod:`ratatosk.adapters.webhook_core`, the same core the aiohttp server
(:mod:`ratatosk.adapters.webhook_server`) runs, so both give the same answers,
limits and refusals; this module reads the ASGI request into it and sends
its :class:`~ratatosk.adapters.webhook_core.Reply` back.

* **HTTP only.** A WebSocket is closed at its handshake (the server answers
  403); any other scope type raises, as the ASGI spec asks.
* **Mounted under a prefix** (``root_path``), routes are matched below the
  prefix and the signed URL keeps it: Twilio called the full path.
* **Lifespan** events are acknowledged, running ``on_startup`` and
  ``on_shutdown`` when given (``bootstrap.build_asgi_webhook_app`` makes
  them initialise and close the connector). A framework that mounts the app
  does not forward them: its own lifespan does that work.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

from ..ports import Deduplicator, SignatureValidator, Telemetry
from .webhook_core import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_FIELDS,
    DEFAULT_PREFIX,
    BodyTooLarge,
    MessageHandler,
    Reply,
    StatusHandler,
    WebhookCore,
    WebhookReceiver,
    WebhookStats,
)

#: The ASGI types, as Starlette and the spec spell them, so the app type-checks where mounted.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Hook = Callable[[], Awaitable[None]]

log = logging.getLogger("ratatosk.webhooks")

#: Characters left as they are when a path has to be re-encoded (no raw_path given).
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


class _ClientGone(Exception):
    """The client disconnected before its body arrived: nobody to answer."""


class _AsgiIncoming:
    """An ASGI HTTP request as the core's :class:`~ratatosk.adapters.webhook_core.Incoming`."""

    __slots__ = ("_limit", "_receive", "_scope")

    def __init__(self, scope: Scope, receive: Receive, limit: int) -> None:
        self._scope = scope
        self._receive = receive
        self._limit = limit

    @property
    def content_length(self) -> int | None:
        declared = self.header("Content-Length")
        if declared is None:
            return None
        try:
            return int(declared)
        except ValueError:
            return None

    @property
    def body_ready(self) -> bool:
        return False  # unknown until the first receive(): the read runs under body_timeout

    async def read(self) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limit:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def header(self, name: str) -> str | None:
        key = name.lower().encode("latin-1")
        for header, value in self._scope["headers"]:
            if header.lower() == key:
                return str(value.decode("latin-1"))
        return None

    def header_values(self, name: str) -> list[str]:
        key = name.lower().encode("latin-1")
        return [
            value.decode("latin-1")
            for header, value in self._scope["headers"]
            if header.lower() == key
        ]

    @property
    def target(self) -> str:
        """The full path as sent, with the mount prefix, and the query.

        Servers differ on whether ``path`` and ``raw_path`` include
        ``root_path`` (uvicorn and Starlette's mounts include it, older
        servers do not): the prefix is added only where it is missing.
        """
        scope = self._scope
        root = scope.get("root_path", "")
        raw = scope.get("raw_path")
        if raw is not None:
            path = raw.decode("latin-1")
            if root and not _under(path, quote(root, safe=_PATH_SAFE)):
                path = quote(root, safe=_PATH_SAFE) + path
        else:
            full = scope["path"]
            if root and not _under(full, root):
                full = root + full
            path = quote(full, safe=_PATH_SAFE)
        query = scope.get("query_string", b"")
        return f"{path}?{query.decode('latin-1')}" if query else path

    def origin(self) -> str:
        scheme = self._scope.get("scheme", "http")
        host = self.header("Host")
        if host is None:
            server = self._scope.get("server")
            host = f"{server[0]}:{server[1]}" if server else "localhost"
        return f"{scheme}://{host}"


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def route_path(scope: Scope) -> str:
    """The request's path below the prefix the app is mounted at (``root_path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and _under(path, root):
        return path[len(root.rstrip("/")) :] or "/"
    return path


class AsgiWebhookApp:
    """The webhook routes as an ASGI application; build it with :func:`create_asgi_webhook_app`.

    ``stats`` counts what it answered, as ``app[STATS]`` does for the aiohttp app.
    """

    def __init__(
        self, core: WebhookCore, *, on_startup: Hook | None = None, on_shutdown: Hook | None = None
    ) -> None:
        self._core = core
        self._on_startup = on_startup
        self._on_shutdown = on_shutdown

    @property
    def stats(self) -> WebhookStats:
        return self._core.stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await receive()  # websocket.connect; closing now makes the server answer 403
            await send({"type": "websocket.close", "code": 1008})
        else:
            raise ValueError(f"the webhook app serves HTTP, not {kind!r}")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        found = self._core.dispatch(method, route_path(scope))
        if isinstance(found, Reply):
            await _send(send, found, head=method == "HEAD")
            return
        incoming = _AsgiIncoming(scope, receive, self._core.max_body_bytes)
        try:
            reply = await self._core.answer(found, incoming)
        except _ClientGone:
            return
        await _send(send, reply)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self._on_startup is not None:
                        await self._on_startup()
                except Exception as exc:
                    log.exception("the webhook app could not start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self._core.close()  # first: the hooks may close the store it uses
                    if self._on_shutdown is not None:
                        await self._on_shutdown()
                except Exception as exc:
                    log.exception("the webhook app did not shut down cleanly")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _send(send: Send, reply: Reply, *, head: bool = False) -> None:
    await send(
        {"type": "http.response.start", "status": reply.status, "headers": reply.raw_headers}
    )
    await send({"type": "http.response.body", "body": b"" if head else reply.body})


def create_asgi_webhook_app(
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
    on_startup: Hook | None = None,
    on_shutdown: Hook | None = None,
) -> AsgiWebhookApp:
    """An ASGI app that verifies Twilio's webhooks and hands typed events to you.

    The parameters are ``create_webhook_app``'s, with the same meaning and
    defaults (``public_url``: the scheme and host Twilio calls; any
    ``root_path`` the app is mounted under is part of the signed path), plus
    ``on_startup`` and ``on_shutdown``, run on the ASGI lifespan events when
    a server sends them. Without ``public_url`` the URL is built from the
    scheme the ASGI server reports and the ``Host`` header.
    """
    core = WebhookCore(
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
    return AsgiWebhookApp(core, on_startup=on_startup, on_shutdown=on_shutdown)


__all__ = ["AsgiWebhookApp", "create_asgi_webhook_app", "route_path"]
