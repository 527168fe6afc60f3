"""Webhook ingestion: the package's server, the handler a user writes with the SDK, the floor.

Three servers, each in a worker process with the same aiohttp runner (no
access log) on a loopback port, answering the same empty TwiML:

* ``ratatosk``: ``create_webhook_app`` doing its whole job per request (size
  and media-type gates, signature check, decoding into a typed message,
  deduplication, the handler);
* ``twilio_sdk``: what a user writes with the official SDK instead: an
  aiohttp handler that does ``await request.post()``, checks
  ``X-Twilio-Signature`` with ``twilio.request_validator.RequestValidator``
  on the public URL (403 when it does not match), and answers empty TwiML;
* ``bare_aiohttp``: the floor, a handler that only reads the body.

The load (signed, realistic inbound-message forms with distinct SIDs and
idempotency tokens) is built once, before timing.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

PATH = "/webhooks/twilio/whatsapp"
PUBLIC_URL = "https://hooks.example.com"  # what Twilio would have signed


async def start(kind: str, port: int, sid: str, token: str) -> Callable[[], Awaitable[None]]:
    """Start server ``kind`` on ``port``; returns the coroutine function that stops it."""
    from aiohttp import web

    from ratatosk import ConnectionSettings
    from ratatosk.adapters.webhook_server import create_webhook_app
    from ratatosk.domain.result import ReceiveResult
    from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector
    from ratatosk.twilio.twiml import TwiML

    connector = None
    if kind in ("ratatosk", "ratatosk_aiohttp"):
        settings = (
            ConnectionSettings()
            .set_parameter("AccountSid", sid)
            .set_parameter("AuthToken", token)
            .set_parameter("ApiBaseUrl", "http://127.0.0.1:9")  # never called: receive only
        )
        connector = TwilioWhatsAppConnector(TwilioChannelSchemas.TWILIO_WHATSAPP, settings)
        (await connector.initialize()).unwrap()
        received = 0

        async def on_message(result: ReceiveResult) -> None:
            nonlocal received
            received += len(result.messages)

        if kind == "ratatosk":  # what ratatosk serve runs: the package's own HTTP/1.1 server
            from ratatosk.adapters.http11_server import serve_webhooks
            from ratatosk.adapters.webhook_core import WebhookCore

            core = WebhookCore(
                connector,
                validator=connector.signature_validator,
                public_url=PUBLIC_URL,
                on_message=on_message,
            )
            server = await serve_webhooks(core, "127.0.0.1", port)

            async def stop_own() -> None:
                await server.close()
                await connector.shutdown()  # type: ignore[union-attr]

            return stop_own
        app = create_webhook_app(
            connector,
            validator=connector.signature_validator,
            public_url=PUBLIC_URL,
            on_message=on_message,
        )
    elif kind == "twilio_sdk":
        from twilio.request_validator import RequestValidator

        validator = RequestValidator(token)
        url = PUBLIC_URL + PATH

        async def sdk_written(request: web.Request) -> web.Response:
            form = await request.post()
            signature = request.headers.get("X-Twilio-Signature", "")
            if not validator.validate(url, dict(form), signature):
                return web.Response(status=403)
            return web.Response(text=TwiML.EMPTY, content_type=TwiML.CONTENT_TYPE)

        app = web.Application()
        app.router.add_post(PATH, sdk_written)
    elif kind == "bare_aiohttp":

        async def bare(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(text=TwiML.EMPTY, content_type=TwiML.CONTENT_TYPE)

        app = web.Application()
        app.router.add_post(PATH, bare)
    else:
        raise ValueError(f"unknown webhook server {kind!r}")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    async def stop() -> None:
        await runner.cleanup()
        if connector is not None:
            await connector.shutdown()

    return stop


async def _serve(kind: str, port: int, sid: str, token: str) -> None:
    stop = await start(kind, port, sid, token)
    print("ready", flush=True)
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await stop()


def serve(kind: str, port: int, sid: str, token: str, loop: str = "asyncio") -> None:
    """Serve until stdin closes (the parent's signal to stop), on ``loop``."""
    from procs import run_on

    run_on(loop, _serve(kind, port, sid, token))


def build_requests(sid: str, token: str, count: int, start: int = 0) -> list[bytes]:
    """``count`` signed inbound-message webhooks as raw HTTP requests."""
    from loadgen import post_request
    from ratatosk.testing import FakeTwilio

    fake = FakeTwilio(sid, token, seed=1)
    url = PUBLIC_URL + PATH
    requests = []
    for i in range(start, start + count):
        form, signature = fake.inbound_message_body(
            url,
            f"whatsapp:+1555{i % 10_000_000:07d}",
            "whatsapp:+14155238886",
            f"Hi, where is my order {i}?",
            profile_name=f"Customer {i}",
        )
        headers = [
            ("X-Twilio-Signature", signature),
            ("I-Twilio-Idempotency-Token", f"bench-{i:08d}"),
            ("User-Agent", "TwilioProxy/1.1"),
        ]
        requests.append(post_request("127.0.0.1", PATH, form, headers))
    return requests
