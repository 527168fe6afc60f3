"""Both webhook apps served for real on loopback behind one interface, for one suite of cases.

``aiohttp`` is ``create_webhook_app`` on aiohttp's server; ``asgi`` is
``create_asgi_webhook_app`` under uvicorn; ``own`` is the core on the
package's own HTTP/1.1 server (``ratatosk serve``'s). Uvicorn serves from the test's own
event loop, on a socket bound to a free loopback port, so a test's handlers
and the test share asyncio objects (events that hold a handler back) as they
do with aiohttp. :class:`Uvicorn` runs ``python -m uvicorn`` in a process of its
own, as a deployment does (the bootstrap app's lifespan, the README's recipes).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import queue
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import uvicorn

from ratatosk.adapters import http11_server
from ratatosk.adapters.asgi import create_asgi_webhook_app
from ratatosk.adapters.http_server import start_server
from ratatosk.adapters.webhook_core import WebhookCore, WebhookReceiver, WebhookStats
from ratatosk.adapters.webhook_server import STATS, create_webhook_app

KINDS = ("aiohttp", "asgi", "own")


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
    """``create_webhook_app``, ``create_asgi_webhook_app`` or the core with ``options``, served."""
    if kind == "own":
        core = WebhookCore(receiver, **options)
        server = await http11_server.serve_webhooks(core)
        return Served(server.url, core.stats, server.close)
    if kind == "aiohttp":
        app = create_webhook_app(receiver, **options)
        running = await start_server(app, access_log=False)
        return Served(running.url, app[STATS], running.close)
    if kind != "asgi":
        raise ValueError(kind)
    asgi = create_asgi_webhook_app(receiver, **options)
    url, stop = await serve_asgi(asgi)
    return Served(url, asgi.stats, stop)


class Uvicorn:
    """``python -m uvicorn ARGUMENTS`` (port 0: a free one); stdout lines arrive on a queue.

    ``url`` is where it listens, read from its log; empty when it stopped first.
    """

    def __init__(self, arguments: list[str], app_dir: Path, environ: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", *arguments, "--app-dir", str(app_dir)),
                *("--lifespan", "on", "--no-access-log"),
            ],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        assert self.process.stdout is not None
        self._readers = [threading.Thread(target=self._pump, daemon=True)]
        self._readers[0].start()
        self.url = self._listening()

    def _pump(self) -> None:
        for line in self.process.stdout or ():
            self.lines.put(line)

    def _listening(self) -> str:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            if found:
                rest = threading.Thread(
                    target=lambda: self.stderr.extend(self.process.stderr or ()), daemon=True
                )
                rest.start()
                self._readers.append(rest)
                return found.group(1)
        self.process.wait(30)
        return ""  # it stopped before listening: the caller reads stderr

    def close(self) -> None:
        """Kill it if it still runs; wait for it and its readers; close the pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)
        for reader in self._readers:
            reader.join(30)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def next_event(self) -> dict[str, Any]:
        return dict(json.loads(self.lines.get(timeout=60)))  # a hang guard

    def stop(self) -> tuple[int, list[dict[str, Any]]]:
        """SIGTERM (uvicorn shuts down gracefully, lifespan included); the code and last events."""
        self.process.terminate()
        code = self.process.wait(30)
        self._readers[0].join(30)
        events = []
        while not self.lines.empty():
            events.append(json.loads(self.lines.get_nowait()))
        return code, events


def http_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """One POST from a plain blocking client (a process under test is the server)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=30)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def post_json(url: str, data: dict[str, Any]) -> dict[str, Any]:
    """POST ``data`` as JSON (the emulator's control API, say) and read a JSON answer."""
    status, body = http_post(url, json.dumps(data).encode(), {"Content-Type": "application/json"})
    assert status == 200, body
    return dict(json.loads(body))
