"""``ratatosk serve --workers N``: N webhook processes on one port, kept alive (adr/0023).

Each worker is ``python -m ratatosk serve`` itself, binding the port with
``SO_REUSEPORT``, so Linux spreads new connections over the workers' listening
sockets and no process sits in the request path. The supervisor only starts
them, restarts one that dies, and stops them all on SIGTERM or SIGINT:

* It first binds the port itself (``SO_REUSEPORT``, never listening): a port
  in use fails before any worker starts, and ``--port 0`` becomes one real
  port that every worker then binds.
* Two pipes per worker. The worker writes one byte on the *ready* pipe once
  it listens; EOF there before that byte means it failed to start (bad
  settings fail every worker alike, so the supervisor stops, it does not
  loop). The supervisor never writes on the *lifeline*; a worker stops
  gracefully at its EOF, so workers never outlive a supervisor killed with
  SIGKILL.
* To stop a worker the supervisor closes its end of the lifeline, the same
  request as its own death; the worker closes its server (within its
  ``shutdown_timeout``) and exits 0, or is killed after ``STOP_GRACE``
  seconds. One request, not a lifeline and a SIGTERM: a second request
  arriving as a worker finishes could find the default SIGTERM action back
  in place and kill it.
* Workers ignore SIGINT: a Ctrl-C at the terminal reaches the whole process
  group, and the supervisor alone acts on it. A SIGTERM sent to a worker
  directly (systemd signals the whole group) stops it gracefully too.
* A worker that dies after it was ready is restarted; one that keeps dying
  within ``QUICK_DEATH`` seconds waits longer each time (up to ``MAX_BACKOFF``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from typing import Final

import attrs

from ..adapters.webhook_server import DEFAULT_PREFIX
from .loop import loop_name
from .loop import run as run_loop
from .output import EXIT_FAILED, EXIT_OK, Output

#: Seconds a worker has to stop once asked before it is killed.
STOP_GRACE: Final = 15.0
#: Seconds a starting worker has to listen.
START_TIMEOUT: Final = 60.0
#: A worker that dies sooner than this after starting is restarted with a growing delay.
QUICK_DEATH: Final = 5.0
FIRST_BACKOFF: Final = 0.5
MAX_BACKOFF: Final = 10.0


def reuse_port_balances() -> bool:
    """True where ``SO_REUSEPORT`` spreads connections over listening sockets (Linux 3.9+)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT``, not yet listening."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def tell_ready(fd: int) -> None:
    """A worker's "I listen" to its supervisor (one byte, then the pipe is closed)."""
    with contextlib.suppress(OSError):  # a supervisor already gone: the lifeline stops us
        os.write(fd, b"r")
    os.close(fd)


@attrs.define
class _Worker:
    slot: int
    process: asyncio.subprocess.Process
    lifeline: int  # the supervisor's write end; closing it asks the worker to stop
    started: float

    @property
    def pid(self) -> int:
        return self.process.pid


def cannot_listen(out: Output, host: str, port: int, exc: OSError) -> int:
    """Say a server cannot take its address (in use, not ours to bind), coded; exit 1."""
    # The system's words for the errno: asyncio wraps them in a sentence of its own.
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    out.emit(
        "error",
        f"error: cannot listen on {host}:{port}: {reason}",
        error={"code": "ADDRESS_UNAVAILABLE", "message": reason},
    )
    return EXIT_FAILED


def supervise(args: argparse.Namespace, out: Output, *, redis: str | None) -> int:
    """Run ``args.workers`` workers on one port until SIGTERM or SIGINT; 0 when all stopped."""
    try:
        holder = reuse_port_socket(args.host, args.port)
    except OSError as exc:
        return cannot_listen(out, args.host, args.port, exc)
    with holder:
        port = int(holder.getsockname()[1])
        return run_loop(_Supervisor(args, out, port, redis).run())


class _Supervisor:
    def __init__(self, args: argparse.Namespace, out: Output, port: int, redis: str | None) -> None:
        self._args = args
        self._out = out
        self._port = port
        self._redis = redis
        self._workers: dict[int, _Worker] = {}
        self._stop = asyncio.Event()
        self._backoff: dict[int, float] = {}

    def _command(self, ready: int, lifeline: int) -> list[str]:
        args = self._args
        command = [sys.executable, "-m", "ratatosk", "serve", "--host", args.host]
        command += ["--port", str(self._port), "--worker-fds", f"{ready},{lifeline}"]
        if args.public_url:
            command += ["--public-url", args.public_url]
        if args.trust_forwarded:
            command.append("--trust-forwarded")
        if args.redis:
            command += ["--redis", args.redis]
        if getattr(args, "json", False):
            command.append("--json")
        return command

    async def _start(self, slot: int) -> _Worker | None:
        """Start worker ``slot`` and wait until it listens; None when it died first."""
        ready_r, ready_w = os.pipe()
        life_r, life_w = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *self._command(ready_w, life_r),
                pass_fds=(ready_w, life_r),
            )
        except BaseException:
            for fd in (ready_r, life_w):
                os.close(fd)
            raise
        finally:
            os.close(ready_w)
            os.close(life_r)
        worker = _Worker(slot, process, life_w, time.monotonic())
        self._workers[slot] = worker
        loop = asyncio.get_running_loop()
        said: asyncio.Future[bool] = loop.create_future()

        def readable() -> None:
            loop.remove_reader(ready_r)
            try:
                data = os.read(ready_r, 1)
            except OSError:
                data = b""
            if not said.done():
                said.set_result(data == b"r")

        loop.add_reader(ready_r, readable)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                listening = await said
        except TimeoutError:
            listening = False
        finally:
            loop.remove_reader(ready_r)
            os.close(ready_r)
        if not listening:
            await self._reap(worker)
            return None
        return worker

    async def _reap(self, worker: _Worker) -> int:
        """Stop ``worker`` (its lifeline closed, SIGKILL after the grace); forget it; its status."""
        with contextlib.suppress(OSError):
            os.close(worker.lifeline)
        if worker.process.returncode is None:
            try:
                async with asyncio.timeout(STOP_GRACE):
                    await worker.process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
                await worker.process.wait()
                self._workers.pop(worker.slot, None)
                return -int(signal.SIGKILL)
        self._workers.pop(worker.slot, None)
        return int(worker.process.returncode or 0)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for signum in signals:
            loop.add_signal_handler(signum, self._stop.set)
        try:
            return await self._run()
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)

    async def _run(self) -> int:
        args, out = self._args, self._out
        # One worker first: settings that cannot work fail it alone, and are reported once.
        first = await self._start(0)
        if first is None:
            return EXIT_FAILED
        rest = await asyncio.gather(*(self._start(slot) for slot in range(1, args.workers)))
        if any(worker is None for worker in rest):
            await self._stop_all()
            return EXIT_FAILED
        public_url = args.public_url or f"http://{args.host}:{self._port}"
        pids = [worker.pid for worker in self._workers.values()]
        state = "shared through Redis" if self._redis else "in memory, per worker"
        public = (
            f"public URL from trusted X-Forwarded-Proto/-Host, else {public_url}"
            if args.trust_forwarded
            else f"public {public_url}"
        )
        out.emit(
            "listening",
            f"webhooks on http://{args.host}:{self._port}{DEFAULT_PREFIX} "
            f"({public}; {args.workers} workers, pids "
            f"{', '.join(map(str, pids))}; state {state}; {loop_name()} loop)",
            url=public_url,
            trust_forwarded=args.trust_forwarded,
            port=self._port,
            workers=pids,
            state=state,
            loop=loop_name(),
        )
        if not self._redis:
            warning = (
                "without Redis each worker deduplicates and tracks windows on its own: a "
                "Twilio retry that reaches another worker is handled twice (use --redis URL)"
            )
            out.emit("warning", warning, message=warning)
        while not self._stop.is_set():
            exited = await self._next_exit()
            if exited is None:
                break
            await self._restart(exited)
        out.emit("stopped", f"stopping {len(self._workers)} workers")
        return await self._stop_all()

    async def _next_exit(self) -> _Worker | None:
        """The next worker to exit, or None when a stop is asked for first."""
        waits = {
            asyncio.ensure_future(worker.process.wait()): worker
            for worker in self._workers.values()
        }
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            done, _ = await asyncio.wait([*waits, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [*waits, stop]:
                task.cancel()
        if stop in done:
            return None
        return next(waits[task] for task in done if task in waits)

    async def _restart(self, worker: _Worker) -> None:
        code = await self._reap(worker)
        lived = time.monotonic() - worker.started
        delay = 0.0
        if lived < QUICK_DEATH:
            delay = min(self._backoff.get(worker.slot, FIRST_BACKOFF / 2) * 2, MAX_BACKOFF)
            self._backoff[worker.slot] = delay
        else:
            self._backoff.pop(worker.slot, None)
        how = f"signal {-code}" if code < 0 else f"status {code}"
        while not self._stop.is_set():
            if delay:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
                if self._stop.is_set():
                    return
            fresh = await self._start(worker.slot)
            if fresh is not None:
                self._out.emit(
                    "restarted",
                    f"worker {worker.pid} exited ({how}) after {lived:.1f} s; "
                    f"worker {fresh.pid} took its place",
                    exited=worker.pid,
                    returncode=code,
                    worker=fresh.pid,
                )
                return
            delay = min(max(delay, FIRST_BACKOFF) * 2, MAX_BACKOFF)

    async def _stop_all(self) -> int:
        """Stop every worker at once; EXIT_OK when each stopped by itself with status 0."""
        codes = await asyncio.gather(*(self._reap(w) for w in list(self._workers.values())))
        return EXIT_OK if all(code == 0 for code in codes) else EXIT_FAILED


__all__ = ["reuse_port_balances", "reuse_port_socket", "supervise", "tell_ready"]
