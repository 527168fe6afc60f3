"""The Twilio behaviour model behind a real aiohttp server on loopback (emulator layer).

The HTTP face of :class:`~ratatosk.emulator.model.TwilioModel`, for the demo,
the contract tests and the benchmarks; it is never in the connector's path.
It serves Twilio's paths (Messages v2010 and, on the same host, Content v1,
which Twilio serves from ``content.twilio.com``) behind HTTP Basic auth,
answers Twilio's JSON and legacy error shape, serves the media of the inbound
messages it simulates (the Media URL behind Basic auth redirects, as
Twilio's does, to a second loopback origin that serves the bytes without
auth: the emulator's "CDN"), acts out the faults the model
decides (429/503 with ``Retry-After``, 500, dropped connections, slow
answers), and POSTs signed status callbacks from a background task with one
shared ``ClientSession``, retrying a connection failure once with the same
``I-Twilio-Idempotency-Token``.

Control endpoints under ``/_emulator/`` (no auth; loopback tooling only):
``POST /_emulator/inbound`` sends a signed inbound message to a webhook and
returns its answer, ``GET /_emulator/messages`` dumps the store,
``GET /_emulator/deliveries`` lists callback deliveries, ``POST
/_emulator/status`` forces a status and ``POST /_emulator/fail_next`` scripts
an error.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import parse_qsl

from aiohttp import web

from ..adapters.http_server import RunningServer, start_server, wait_for_stop_signal
from .callbacks import (
    MODEL_KEY,
    STATE_KEY,
    Delivery,
    EmulatorState,
    lifecycle,
    send_inbound,
)
from .control import inbound_fields, register_control_routes
from .model import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    FaultPlan,
    Reply,
    TwilioModel,
    error_body,
)

PREFIX: Final = "/2010-04-01/Accounts"
CDN_FALLBACK: Final = "/_emulator/cdn"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_model(
    account_sid: str = DEFAULT_ACCOUNT_SID,
    auth_token: str = DEFAULT_AUTH_TOKEN,
    *,
    step_delay: float = 0.2,
    seed: int | None = None,
    rate_429: float = 0.0,
    rate_500: float = 0.0,
    rate_503: float = 0.0,
    rate_reset_before: float = 0.0,
    rate_reset_after: float = 0.0,
    rate_slow: float = 0.0,
    retry_after: float | None = 1.0,
    slow_seconds: float = 2.0,
    **model_options: Any,
) -> TwilioModel:
    """A real-time model: system clock, ``step_delay`` seconds per status, fault rates."""
    plan = FaultPlan(
        throttle=rate_429,
        server_error=rate_500,
        unavailable=rate_503,
        reset_before_store=rate_reset_before,
        reset_after_store=rate_reset_after,
        slow=rate_slow,
        retry_after=retry_after,
        slow_seconds=slow_seconds,
    )
    return TwilioModel(
        account_sid,
        auth_token,
        rng=random.Random(seed),
        step_seconds=step_delay,
        faults=plan,
        **model_options,
    )


def create_emulator_app(
    model: TwilioModel,
    *,
    callback_delay: float = 0.02,
    callback_retries: int = 1,
    public_base_url: str | None = None,
) -> web.Application:
    """An aiohttp app serving ``model``; ``callback_delay`` is the status tick in seconds."""
    app = web.Application(middlewares=[_twilio_edge])
    app[MODEL_KEY] = model
    app[STATE_KEY] = EmulatorState(
        callback_delay=callback_delay,
        callback_retries=callback_retries,
        public_base_url=public_base_url.rstrip("/") if public_base_url else None,
    )
    app.router.add_post(f"{PREFIX}/{{AccountSid}}/Messages.json", _create_message)
    app.router.add_get(f"{PREFIX}/{{AccountSid}}/Messages.json", _list_messages)
    app.router.add_get(f"{PREFIX}/{{AccountSid}}/Messages/{{Sid}}.json", _fetch_message)
    app.router.add_get(f"{PREFIX}/{{Sid}}.json", _fetch_account)
    app.router.add_get(
        f"{PREFIX}/{{AccountSid}}/Messages/{{MessageSid}}/Media/{{MediaSid}}", _fetch_media
    )
    # The CDN, on this origin too, for an app served without its second origin.
    app.router.add_get(f"{CDN_FALLBACK}/{{AccountSid}}/{{Key}}", _cdn_media)
    app.router.add_get("/v1/Content", _list_content)
    app.router.add_get("/v1/ContentAndApprovals", _list_content)
    app.router.add_get("/v1/Content/{Sid}", _fetch_content)
    app.router.add_get("/v1/Content/{Sid}/ApprovalRequests", _fetch_content)
    register_control_routes(app)
    app.cleanup_ctx.append(lifecycle)
    return app


# --- the Twilio edge: auth, unknown paths, replies ---------------------------------------


def json_reply(reply: Reply) -> web.Response:
    if reply.body is None:
        return web.Response(status=reply.status, headers=dict(reply.headers))
    return web.json_response(reply.body, status=reply.status, headers=dict(reply.headers))


def _credentials(request: web.Request) -> tuple[str, str]:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    username, _, password = decoded.partition(":")
    return username, password


@web.middleware
async def _twilio_edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/_emulator/"):
        return await handler(request)
    model = request.app[MODEL_KEY]
    username, password = _credentials(request)
    info = request.match_info
    if "AccountSid" in info:
        account_sid = info["AccountSid"]
    elif "Sid" in info and request.path.startswith(PREFIX):
        account_sid = info["Sid"]  # fetch account
    else:
        account_sid = username  # Content API and unknown paths: any valid credentials
    denied = model.authenticate(account_sid, username, password)
    if denied is not None:
        response = json_reply(denied)
        response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
        return response
    missing = info.http_exception
    if isinstance(missing, web.HTTPMethodNotAllowed):
        return web.json_response(error_body(20004, "Method not allowed", 405), status=405)
    if missing is not None:
        body = error_body(20404, f"The requested resource {request.path} was not found", 404)
        return web.json_response(body, status=404)
    return await handler(request)


async def _act_out(request: web.Request, reply: Reply) -> web.StreamResponse:
    """Answer ``reply``, after its delay; a reset closes the connection instead."""
    if reply.delay > 0:
        await asyncio.sleep(reply.delay)
    if reply.reset is not None:
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=500)  # never reaches the client: the socket is gone
    return json_reply(reply)


def _query(request: web.Request) -> dict[str, str]:
    """Query parameters, first value each, with ``+`` read as a space."""
    pairs = parse_qsl(request.query_string, keep_blank_values=True)
    result: dict[str, str] = {}
    for key, value in pairs:
        result.setdefault(key, value)
    return result


async def _create_message(request: web.Request) -> web.StreamResponse:
    raw = await request.text()
    form = parse_qsl(raw, keep_blank_values=True)  # repeated keys kept, '+' is a space
    reply = request.app[MODEL_KEY].create_message(request.match_info["AccountSid"], form)
    return await _act_out(request, reply)


async def _list_messages(request: web.Request) -> web.StreamResponse:
    reply = request.app[MODEL_KEY].list_messages(request.match_info["AccountSid"], _query(request))
    return json_reply(reply)


async def _fetch_message(request: web.Request) -> web.StreamResponse:
    info = request.match_info
    return json_reply(request.app[MODEL_KEY].fetch_message(info["AccountSid"], info["Sid"]))


async def _fetch_account(request: web.Request) -> web.StreamResponse:
    return json_reply(request.app[MODEL_KEY].fetch_account(request.match_info["Sid"]))


async def _fetch_media(request: web.Request) -> web.StreamResponse:
    info, state = request.match_info, request.app[STATE_KEY]
    cdn = state.media_base_url or _base_url(request) + CDN_FALLBACK
    reply = request.app[MODEL_KEY].fetch_media(
        info["AccountSid"], info["MessageSid"], info["MediaSid"], cdn_base=cdn
    )
    return json_reply(reply)


async def _cdn_media(request: web.Request) -> web.StreamResponse:
    """The bytes behind a CDN URL, without auth: the key in the path is the secret."""
    info = request.match_info
    media = request.app[MODEL_KEY].cdn_media(info["AccountSid"], info["Key"])
    if media is None:
        return web.Response(status=404, text="Not Found")
    return web.Response(body=media.data, headers={"Content-Type": media.content_type})


def create_media_cdn_app(model: TwilioModel) -> web.Application:
    """The emulator's second origin: stored media at ``/{AccountSid}/{key}``, no auth."""
    app = web.Application()
    app[MODEL_KEY] = model
    app.router.add_get("/{AccountSid}/{Key}", _cdn_media)
    return app


def _base_url(request: web.Request) -> str:
    configured = request.app[STATE_KEY].public_base_url
    return configured or f"{request.scheme}://{request.host}"


async def _list_content(request: web.Request) -> web.StreamResponse:
    model, query = request.app[MODEL_KEY], _query(request)
    size, page = query.get("PageSize", "50"), query.get("Page", "0")
    if not (size.isdigit() and page.isdigit()):
        return web.json_response(
            error_body(20001, "PageSize and Page are integers", 400), status=400
        )
    options: dict[str, Any] = {
        "page": int(page),
        "account_sid": _credentials(request)[0],
        "base_url": _base_url(request),
    }
    if request.path.endswith("ContentAndApprovals"):
        reply = model.list_content_and_approvals(int(size), query.get("PageToken"), **options)
    else:
        reply = model.list_content(int(size), query.get("PageToken"), **options)
    return json_reply(reply)


async def _fetch_content(request: web.Request) -> web.StreamResponse:
    model, sid = request.app[MODEL_KEY], request.match_info["Sid"]
    owner, base = _credentials(request)[0], _base_url(request)
    if request.path.endswith("/ApprovalRequests"):
        return json_reply(model.fetch_approval(sid, account_sid=owner, base_url=base))
    return json_reply(model.fetch_content(sid, account_sid=owner, base_url=base))


# --- running it ---------------------------------------------------------------------------


class RunningEmulator:
    """A started emulator: ``url``, ``media_url``, ``model``, ``inject_inbound``, ``close()``.

    ``media_url`` is the second origin media redirects lead to (allow its
    ``media_host`` in a ``MediaPolicy`` to fetch inbound media from it).
    """

    def __init__(
        self, server: RunningServer, url: str, app: web.Application, cdn: RunningServer
    ) -> None:
        self._server = server
        self._cdn = cdn
        self.url = url
        self.media_url = cdn.url
        self.app = app
        self.model = app[MODEL_KEY]

    @property
    def media_host(self) -> str:
        """``host:port`` of the media origin, as a ``MediaPolicy`` allow-list entry."""
        return self.media_url.split("://", 1)[1]

    @property
    def account_sid(self) -> str:
        return self.model.main_account.sid

    @property
    def auth_token(self) -> str:
        return self.model.main_account.auth_token

    @property
    def deliveries(self) -> list[Delivery]:
        """Status callback deliveries so far, in completion order."""
        return list(self.app[STATE_KEY].deliveries)

    async def inject_inbound(self, url: str, **fields: Any) -> dict[str, Any]:
        """Send a signed inbound message to the webhook ``url`` (fields as :func:`send_inbound`)."""
        return await send_inbound(self.app, url, **inbound_fields(fields))

    async def close(self) -> None:
        try:
            await self._server.close()
        finally:
            await self._cdn.close()

    async def __aenter__(self) -> RunningEmulator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"RunningEmulator(url={self.url!r}, account_sid={self.account_sid!r})"


async def start_emulator(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    model: TwilioModel | None = None,
    callback_delay: float = 0.02,
    public_base_url: str | None = None,
    media_port: int = 0,
    **options: Any,
) -> RunningEmulator:
    """Start the emulator (port 0: a free one); ``options`` go to :func:`build_model`.

    Its media "CDN" listens on ``media_port`` of the same host (0: a free one).

    Raises TypeError when both a ``model`` and model ``options`` are given.
    """
    if model is not None and options:
        raise TypeError(f"pass either a model or model options, not both: {sorted(options)}")
    model = model or build_model(**options)
    app = create_emulator_app(model, callback_delay=callback_delay, public_base_url=public_base_url)
    # Idle connections live longer than the 15 s aiohttp clients keep them, as at
    # Twilio: the client always closes first, so no request meets a closing socket.
    server = await start_server(app, host, port, idle_timeout=75.0, access_log=False)
    try:
        cdn = await start_server(create_media_cdn_app(model), host, media_port, access_log=False)
    except BaseException:
        await server.close()
        raise
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{server.port}"
    state = app[STATE_KEY]
    state.api_base_url = public_base_url.rstrip("/") if public_base_url else url
    state.media_base_url = f"http://{shown}:{cdn.port}"
    return RunningEmulator(server, url, app, cdn)


class CannotListen(Exception):
    """The emulator's address is taken (or not ours to bind): nothing was started."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        super().__init__(f"cannot listen on {host}:{port}: {error}")
        self.host, self.port, self.error = host, port, error


def serve_emulator(
    host: str = "127.0.0.1",
    port: int = 4010,
    *,
    model: TwilioModel | None = None,
    callback_delay: float = 0.05,
    public_base_url: str | None = None,
    media_port: int = 0,
    on_start: Callable[[RunningEmulator], None] | None = None,
    **options: Any,
) -> None:
    """Run the emulator until SIGINT or SIGTERM (the ``ratatosk emulator`` command).

    ``on_start`` is told the running emulator (its URLs and ports) once it listens.
    """

    async def run() -> None:
        try:
            emulator = await start_emulator(
                host,
                port,
                model=model or build_model(**options),
                callback_delay=callback_delay,
                public_base_url=public_base_url,
                media_port=media_port,
            )
        except OSError as exc:
            raise CannotListen(host, port, exc) from exc
        try:
            if on_start is not None:
                on_start(emulator)
            await wait_for_stop_signal()
        finally:
            await emulator.close()

    asyncio.run(run())


__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_AUTH_TOKEN",
    "MODEL_KEY",
    "STATE_KEY",
    "CannotListen",
    "Delivery",
    "EmulatorState",
    "RunningEmulator",
    "build_model",
    "create_emulator_app",
    "create_media_cdn_app",
    "send_inbound",
    "serve_emulator",
    "start_emulator",
]
