"""Both webhook apps served for real on loopback behind one interface, for one suite of cases.

``aiohttp`` is ``create_webhook_app`` on aiohttp's server; ``asgi`` is
``create_asgi_webhook_app`` under uvicorn. Uvicorn serves from the test's own
event loop, on a socket bound to a free loopback port, so a test's handlers
and the test share asyncio objects (events that hold a handler back) as they
do with aiohttp. A uvicorn in its own process is tests/integration/test_asgi_app.py's.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import uvicorn

from ratatosk.adapters.asgi import create_asgi_webhook_app
from ratatosk.adapters.http_server import start_server
from ratatosk.adapters.webhook_core import WebhookReceiver, WebhookStats
from ratatosk.adapters.webhook_server import STATS, create_webhook_app

KINDS = ("aiohttp", "asgi")


@attrs.frozen
class Served:
    """A webhook app being served: its origin, its counters, and how to stop it."""

    url: str
    stats: WebhookStats
    close: Callable[[], Awaitable[None]]


async def serve_asgi(
    app: Any, *, lifespan: str = "on", **options: Any
) -> tuple[str, Callable[[], Awaitable[None]]]:
    """Serve any ASGI app under uvicorn on a free loopback port; its URL and a stop.

    ``options`` go to ``uvicorn.Config`` (``root_path``, say).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan=lifespan,
        log_config=None,  # the test process's logging stays as pytest set it
        log_level=logging.WARNING,
        access_log=False,
        ws="none",
        http="h11",
        timeout_graceful_shutdown=5,
        **options,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():  # a hang guard, not a timing assertion
        await asyncio.sleep(0.01)
    if task.done():
        sock.close()
        await task
        raise RuntimeError("uvicorn did not start")

    async def stop() -> None:
        server.should_exit = True
        try:
            await task
        finally:
            sock.close()

    return f"http://127.0.0.1:{port}", stop


async def serve_webhooks(kind: str, receiver: WebhookReceiver, **options: Any) -> Served:
    """``create_webhook_app`` or ``create_asgi_webhook_app`` with ``options``, served."""
    if kind == "aiohttp":
        app = create_webhook_app(receiver, **options)
        running = await start_server(app, access_log=False)
        return Served(running.url, app[STATS], running.close)
    if kind != "asgi":
        raise ValueError(kind)
    asgi = create_asgi_webhook_app(receiver, **options)
    url, stop = await serve_asgi(asgi)
    return Served(url, asgi.stats, stop)
