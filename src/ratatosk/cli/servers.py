"""``ratatosk serve`` and ``ratatosk emulator``: long-running servers on loopback."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..adapters.http_server import start_server, wait_for_stop_signal
from ..adapters.webhook_server import DEFAULT_PREFIX
from ..bootstrap import (
    build_connector,
    build_webhook_app,
    emulator_account,
    open_redis,
    redis_url,
    settings_from_env,
)
from ..domain.result import ReceiveResult, StatusUpdate
from ..domain.schema import is_absolute_http_url
from ..emulator.app import DEFAULT_AUTH_TOKEN, RunningEmulator, serve_emulator
from ..ports import StateStoreError
from ..twilio.schema import is_redis_url
from .output import EXIT_OK, EXIT_USAGE, Output, describe_status, message_json, status_json

if TYPE_CHECKING:
    from ..adapters.redis import RedisStores


def serve(args: argparse.Namespace, out: Output) -> int:
    """Run the webhook server until interrupted, printing every verified event."""
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
    return asyncio.run(_serve(args, out))


def _is_public_base(url: str) -> bool:
    if not is_absolute_http_url(url):
        return False
    parts = urlsplit(url)
    return "@" not in parts.netloc and not parts.query and not parts.fragment and "?" not in url


async def _serve(args: argparse.Namespace, out: Output) -> int:
    """With ``--redis`` (or ``REDIS_URL``) every state port and the deduplicator share Redis."""
    url = args.redis or redis_url(settings_from_env())
    state = open_redis(url) if url and is_redis_url(url) else None
    try:
        return await _serve_with(args, out, state)
    finally:
        if state is not None:
            await state.close()


async def _serve_with(args: argparse.Namespace, out: Output, state: RedisStores | None) -> int:
    connector = build_connector(redis=state)
    initialized = await connector.initialize()
    if initialized.error is not None:
        return out.failure(initialized.error)
    public_url = args.public_url or f"http://{args.host}:{args.port}"

    async def on_message(received: ReceiveResult) -> None:
        for item in message_json(received):
            out.emit(
                "message", f"message {item['sid']} from {item['from']}: {item['content']}", **item
            )

    async def on_status(update: StatusUpdate) -> None:
        out.emit("status", describe_status(update), **status_json(update))

    app = build_webhook_app(
        connector,
        public_url=public_url,
        on_message=on_message,
        on_status=on_status,
        trust_forwarded=args.trust_forwarded,
        dedup=state.deduplicator() if state is not None else None,
    )
    server = await start_server(app, args.host, args.port)
    shared = f"Redis at {state.where}" if state is not None else "in memory"
    out.emit(
        "listening",
        f"webhooks on http://{args.host}:{args.port}{DEFAULT_PREFIX} (public {public_url}; "
        f"state {shared})",
        url=public_url,
        state=shared,
    )
    if state is not None:
        try:
            await state.ping()
        except StateStoreError as exc:
            out.emit("warning", f"{exc}; webhooks are answered 503 until it answers")
    try:
        await wait_for_stop_signal()
        out.emit("stopped", "stopping: closing connections")
    finally:
        await server.close()
        await connector.shutdown()
    return EXIT_OK


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
    shown = token if token == DEFAULT_AUTH_TOKEN else "(from your environment, not shown)"

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
    return EXIT_OK
