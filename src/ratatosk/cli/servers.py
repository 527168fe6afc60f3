"""``ratatosk serve`` and ``ratatosk emulator``: long-running servers on loopback."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..adapters.http11_server import serve_webhooks
from ..adapters.webhook_core import DEFAULT_PREFIX
from ..bootstrap import (
    build_connector,
    build_webhook_core,
    emulator_account,
    open_redis,
    redis_url,
    settings_from_env,
)
from ..domain.result import ReceiveResult, StatusUpdate
from ..domain.schema import is_absolute_http_url
from ..emulator.app import DEFAULT_AUTH_TOKEN, CannotListen, RunningEmulator, serve_emulator
from ..ports import StateStoreError
from ..twilio.schema import is_redis_url
from . import supervisor
from .loop import loop_name
from .loop import run as run_loop
from .output import (
    EXIT_OK,
    EXIT_USAGE,
    Output,
    describe_content,
    describe_status,
    message_json,
    status_json,
)

if TYPE_CHECKING:
    from ..adapters.redis import RedisStores


def serve(args: argparse.Namespace, out: Output) -> int:
    """Run the webhook server until interrupted, printing every verified event.

    ``--workers N`` (N > 1) runs N worker processes on one port under a
    supervisor (``cli/supervisor.py``, adr/0023); a worker is this same
    function, started by the supervisor with ``--worker-fds``.
    """
    if args.public_url is not None and not _is_public_base(args.public_url):
        # Twilio signs the URL it calls: a base that cannot be one fails every webhook with 403.
        out.emit(
            "usage",
            "error: --public-url must be the absolute http(s) URL Twilio calls "
            "(https://host[:port][/path], no user, query or fragment)",
        )
        return EXIT_USAGE
    if args.redis is not None and not is_redis_url(args.redis):
        out.emit(
            "usage",
            "error: --redis must be a redis:// or rediss:// URL "
            "(redis://[:password@]host[:port][/db])",
        )
        return EXIT_USAGE
    if args.workers < 1:
        out.emit("usage", "error: --workers must be 1 or more")
        return EXIT_USAGE
    if args.worker_fds is not None:
        fds = _worker_fds(args.worker_fds)
        if fds is None:
            out.emit("usage", "error: --worker-fds is for the supervisor's workers only")
            return EXIT_USAGE
        return run_loop(_serve(args, out, worker=fds))
    if args.workers > 1:
        if not supervisor.reuse_port_balances():
            out.emit(
                "usage",
                "error: --workers needs Linux (SO_REUSEPORT spreads connections over the "
                "workers); elsewhere run one serve per port behind a proxy",
            )
            return EXIT_USAGE
        return supervisor.supervise(args, out, redis=_wanted_redis(args))
    return run_loop(_serve(args, out))


def _worker_fds(value: str) -> tuple[int, int] | None:
    """``READY,LIFELINE``: the pipe to say "listening" on, and the one whose EOF means stop."""
    ready, _, lifeline = value.partition(",")
    if not (ready.isdigit() and lifeline.isdigit()):
        return None
    return int(ready), int(lifeline)


def _is_public_base(url: str) -> bool:
    if not is_absolute_http_url(url):
        return False
    parts = urlsplit(url)
    return "@" not in parts.netloc and not parts.query and not parts.fragment and "?" not in url


def _wanted_redis(args: argparse.Namespace) -> str | None:
    url: str | None = args.redis or redis_url(settings_from_env())
    return url if url and is_redis_url(url) else None


async def _serve(
    args: argparse.Namespace, out: Output, worker: tuple[int, int] | None = None
) -> int:
    """With ``--redis`` (or ``REDIS_URL``) every state port and the deduplicator share Redis."""
    url = _wanted_redis(args)
    state = open_redis(url) if url is not None else None
    try:
        return await _serve_with(args, out, state, worker)
    finally:
        if state is not None:
            await state.close()


async def _serve_with(
    args: argparse.Namespace,
    out: Output,
    state: RedisStores | None,
    worker: tuple[int, int] | None,
) -> int:
    connector = build_connector(redis=state)
    initialized = await connector.initialize()
    if initialized.error is not None:
        await connector.shutdown()
        return out.failure(initialized.error)
    public_url = args.public_url or f"http://{args.host}:{args.port}"
    # A worker's events name it, so a reader of the merged output can tell them apart.
    tag: dict[str, Any] = {"worker": os.getpid()} if worker is not None else {}

    async def on_message(received: ReceiveResult) -> None:
        for message, item in zip(received.messages, message_json(received), strict=True):
            out.emit(
                "message",
                f"message {item['sid']} from {item['from']}: {describe_content(message.content)}",
                **item,
                **tag,
            )

    async def on_status(update: StatusUpdate) -> None:
        out.emit("status", describe_status(update), **status_json(update), **tag)

    core = build_webhook_core(
        connector,
        public_url=public_url,
        on_message=on_message,
        on_status=on_status,
        trust_forwarded=args.trust_forwarded,
        dedup=state.deduplicator() if state is not None else None,
    )
    # Stop requests are caught from before the server starts until it has closed: a second
    # one (a SIGTERM to every process of a group) cannot cut the graceful stop short.
    async with _stop_requests(worker[1] if worker is not None else None) as stop:
        try:
            if worker is not None:
                sock = supervisor.reuse_port_socket(args.host, args.port)
                server = await serve_webhooks(core, sock=sock)
            else:
                server = await serve_webhooks(core, args.host, args.port)
        except OSError as exc:  # the address is taken, or not ours to bind
            await connector.shutdown()
            return supervisor.cannot_listen(out, args.host, args.port, exc)
        except BaseException:
            await connector.shutdown()
            raise
        try:
            shared = f"Redis at {state.where}" if state is not None else "in memory"
            if worker is None:
                public = (
                    f"public URL from trusted X-Forwarded-Proto/-Host, else {public_url}"
                    if args.trust_forwarded
                    else f"public {public_url}"
                )
                out.emit(
                    "listening",
                    f"webhooks on http://{args.host}:{server.port}{DEFAULT_PREFIX} "
                    f"({public}; state {shared}; {loop_name()} loop)",
                    url=public_url,
                    trust_forwarded=args.trust_forwarded,
                    state=shared,
                    loop=loop_name(),
                )
            else:
                supervisor.tell_ready(worker[0])
            if state is not None:
                try:
                    await state.ping()
                except StateStoreError as exc:
                    out.emit("warning", f"{exc}; webhooks are answered 503 until it answers")
            await stop.wait()
            if worker is None:
                out.emit("stopped", "stopping: closing connections")
        finally:
            await server.close()
            await connector.shutdown()
    return EXIT_OK


@contextlib.asynccontextmanager
async def _stop_requests(lifeline: int | None) -> AsyncIterator[asyncio.Event]:
    """An event set by SIGINT, SIGTERM or, for a worker, its supervisor's end of the lifeline.

    A supervisor that dies (even by SIGKILL) closes its end of the pipe, so a
    worker never outlives it by more than its own graceful stop.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
    if lifeline is not None:
        # A worker: a terminal's Ctrl-C reaches the whole group, and the supervisor stops
        # every worker in order (the lifeline), so the worker itself leaves SIGINT alone.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signals = (signal.SIGTERM,)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)

    def supervisor_gone() -> None:
        assert lifeline is not None
        loop.remove_reader(lifeline)  # EOF stays readable: read it once
        stop.set()

    if lifeline is not None:
        loop.add_reader(lifeline, supervisor_gone)
    try:
        yield stop
    finally:
        if lifeline is not None:
            loop.remove_reader(lifeline)
        for signum in signals:
            loop.remove_signal_handler(signum)
        if lifeline is not None:  # a worker on its way out: a late SIGTERM must not kill it
            signal.signal(signal.SIGTERM, signal.SIG_IGN)


def emulator(args: argparse.Namespace, out: Output) -> int:
    """Run the Twilio emulator until interrupted."""
    from_env = emulator_account()
    account_sid = args.account_sid or from_env[0]
    token = args.auth_token or from_env[1]
    faults: dict[str, Any] = {
        "rate_429": args.fault_429,
        "rate_500": args.fault_500,
        "rate_503": args.fault_503,
        "rate_reset_before": args.fault_reset_before,
        "rate_reset_after": args.fault_reset_after,
        "rate_slow": args.fault_slow,
    }
    if token == DEFAULT_AUTH_TOKEN:
        shown = token
    elif args.auth_token:
        shown = "(given with --auth-token, not shown)"
    else:
        shown = "(from your environment, not shown)"

    def banner(running: RunningEmulator) -> None:
        media = running.media_host
        out.emit(
            "emulator",
            f"Twilio emulator on {running.url}\n"
            f"  account {account_sid}\n  auth token {shown}\n"
            f"  media CDN {running.media_url} "
            f"(fetch_media: MediaPolicy(allowed_hosts=('{media}',)))",
            url=running.url,
            account_sid=account_sid,
            media_url=running.media_url,
        )

    try:
        serve_emulator(
            host=args.host,
            port=args.port,
            account_sid=account_sid,
            auth_token=token,
            step_delay=args.step_delay,
            seed=args.seed,
            media_port=args.media_port,
            on_start=banner,
            **faults,
        )
    except CannotListen as exc:
        return supervisor.cannot_listen(out, exc.host, exc.port, exc.error)
    return EXIT_OK
