"""Webhook ingestion: the package's webhook server versus a bare aiohttp handler.

Both run in a worker process with the same aiohttp runner (no access log) on
a loopback port and answer the same empty TwiML. The package's server does
its whole job per request (size and media-type gates, signature check,
decoding into a typed message, deduplication, the handler); the bare handler
only reads the body. The load (signed, realistic inbound-message forms with
distinct SIDs and idempotency tokens) is built once, before timing.
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
    if kind == "ratatosk":
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

        app = create_webhook_app(
            connector,
            validator=connector.signature_validator,
            public_url=PUBLIC_URL,
            on_message=on_message,
        )
    else:

        async def bare(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(text=TwiML.EMPTY, content_type=TwiML.CONTENT_TYPE)

        app = web.Application()
        app.router.add_post(PATH, bare)
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


def serve(kind: str, port: int, sid: str, token: str) -> None:
    """Serve until stdin closes (the parent's signal to stop)."""
    asyncio.run(_serve(kind, port, sid, token))


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
