"""Process helpers shared by the orchestrator and its workers (Linux /proc)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import socket
import subprocess
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loops() -> list[str]:
    """The event loops to measure: asyncio's, and uvloop's when it is installed."""
    return ["asyncio", "uvloop"] if importlib.util.find_spec("uvloop") else ["asyncio"]


def run_on(loop: str, main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the named loop (``"asyncio"`` or ``"uvloop"``)."""
    factory = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    elif loop != "asyncio":
        raise ValueError(f"unknown event loop {loop!r}")
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far."""
    user, system = cpu_split(pid)
    return user + system


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU of process ``pid`` so far, apart."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def wait_for_port(port: int, process: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")
