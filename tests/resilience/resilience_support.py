"""Helpers of the resilience suite: servers on loopback, the code catalogs, figures.

Each test module has a small unmarked version (part of ``make test``) and a
``@pytest.mark.slow`` version with the full figures (``make soak``). The slow
versions call :func:`record_figures`; ``conftest.py`` prints the figures at the
end of the run under "ratatosk resilience figures", which is where
``docs/reliability.md`` takes its numbers from.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import threading
import time
from typing import Any

from aiohttp import web

from ratatosk.domain.errors import MessagingErrorCodes, catalog
from ratatosk.emulator.app import RunningEmulator, start_emulator
from ratatosk.twilio.errors import TwilioErrorCodes

#: Every code a result may carry: the kernel's catalog and Twilio's.
ALL_CODES = catalog(MessagingErrorCodes) | catalog(TwilioErrorCodes)

_FIGURES: dict[str, dict[str, Any]] = {}


def record_figures(name: str, **values: Any) -> None:
    """Keep a run's figures for the end-of-session summary (merged by name)."""
    _FIGURES.setdefault(name, {}).update(values)


def figures_lines() -> list[str]:
    return [
        f"{name}: {json.dumps(values, sort_keys=True, default=str)}"
        for name, values in _FIGURES.items()
    ]


async def serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    """Run ``app`` on 127.0.0.1 on a free port; returns the runner and its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


class LoopThread:
    """An event loop on a thread of its own, for code that calls ``asyncio.run`` itself."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def emulator_in_thread(thread: LoopThread, **options: Any) -> RunningEmulator:
    """An emulator served from ``thread``'s loop (close it with ``thread.run(e.close())``)."""
    running: RunningEmulator = thread.run(start_emulator(**options))
    return running


def free_port() -> int:
    """A port nothing listens on right now (for a server started in another process)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Return once ``process`` accepts connections on ``port``; raise if it died first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port}") from None
            time.sleep(0.05)


def stop_process(process: subprocess.Popen[bytes]) -> tuple[str, str]:
    """SIGTERM, then its stdout and stderr; killed (and the test failed) if it hangs."""
    process.send_signal(signal.SIGTERM)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return out.decode(errors="replace"), err.decode(errors="replace")
