"""Starting an aiohttp app (adapters layer): the one start-up of ``serve``, the emulator, the demo.

aiohttp's defaults suit a server behind a proxy that polices clients, not one
that faces them: an idle connection stays open for an hour (3,630 s), and
every malformed request is logged as an ERROR with a traceback that quotes
the bad header. :func:`start_server` changes both:

* ``idle_timeout`` (5 s) closes a connection that has not delivered a whole
  request within that time, from the moment it opens or from its last
  answer. aiohttp runs one timer for both cases (its keep-alive timer also
  runs while the headers arrive), so the same bound covers idle keep-alive
  connections and headers sent slowly or half-way. A body that is slow once
  its headers are in is the webhook gate's ``body_timeout``.
* malformed requests (bad request line, oversized or invalid headers) are
  logged by ``ratatosk.http`` as one WARNING line naming the error's type,
  at most ``MALFORMED_LOG_BURST`` a minute, with a count of those left out.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .log_budget import LogBudget

#: Enough for any client that means to send a request; far below aiohttp's hour.
DEFAULT_IDLE_TIMEOUT: Final = 5.0
MALFORMED_LOG_BURST: Final = 5
MALFORMED_LOG_PERIOD: Final = 60.0

log = logging.getLogger("ratatosk.http")


class _BriefMalformedRequests(logging.Filter):
    """Turns aiohttp's traceback for a malformed request into one short, rate-limited line.

    Other errors pass untouched: a failure in our own code keeps its traceback.
    """

    def __init__(
        self, burst: int, period: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._budget = LogBudget(burst, period, monotonic)

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        notes = self._budget.admit()
        if notes is None:
            return False
        record.msg = "refused a malformed HTTP request from %s (%s, HTTP %s)%s"
        record.args = (
            _remote_of(record),
            type(error).__name__,
            error.code,
            "".join("; " + note for note in notes),
        )
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _remote_of(record: logging.LogRecord) -> str:
    args = record.args if isinstance(record.args, tuple) else ()
    return str(args[0])[:64] if args else "?"


_BRIEF: Final = _BriefMalformedRequests(MALFORMED_LOG_BURST, MALFORMED_LOG_PERIOD)


class RunningServer:
    """A started app: its ``url`` and ``port``, and ``await close()`` to stop it."""

    def __init__(self, runner: web.AppRunner, url: str, port: int) -> None:
        self.runner = runner
        self.url = url
        self.port = port

    async def close(self) -> None:
        await self.runner.cleanup()

    def __repr__(self) -> str:
        return f"RunningServer(url={self.url!r})"


async def start_server(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    sock: socket.socket | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    shutdown_timeout: float = 5.0,
    access_log: bool = True,
) -> RunningServer:
    """Serve ``app`` on ``host:port`` (0: a free port) or on a bound ``sock``.

    ``shutdown_timeout`` bounds how long a stop waits for requests in
    progress, so Ctrl-C does not hang for aiohttp's minute.
    """
    if idle_timeout <= 0:
        raise ValueError("idle_timeout must be positive")
    log.addFilter(_BRIEF)  # once: the same filter object is not added twice
    options: dict[str, Any] = {
        "keepalive_timeout": idle_timeout,
        "shutdown_timeout": shutdown_timeout,
        "logger": log,
    }
    if not access_log:
        options["access_log"] = None
    runner = web.AppRunner(app, **options)
    await runner.setup()
    try:
        site: web.BaseSite = (
            web.SockSite(runner, sock) if sock is not None else web.TCPSite(runner, host, port)
        )
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else str(bound_host)
    return RunningServer(runner, f"http://{shown}:{bound_port}", int(bound_port))


async def wait_for_stop_signal() -> None:
    """Return on SIGINT or SIGTERM.

    Explicit handlers, because a server started in the background may have
    inherited an ignored SIGINT, and ``asyncio.run``'s KeyboardInterrupt would
    skip the clean shutdown.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "LogBudget",
    "RunningServer",
    "start_server",
    "wait_for_stop_signal",
]
