"""The four send clients, each run in a fresh worker process against the emulator.

Every client sends the same form for message ``i`` (same recipient, sender
and body) with the same concurrency pattern: ``concurrency`` coroutines pull
from one shared iterator, so exactly that many requests are in flight. Only
the send loop is timed (wall clock and ``time.process_time``); imports,
session set-up and a short warm-up are not.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlencode

from procs import cpu_seconds

SENDER = "whatsapp:+14155238886"
WARMUP_OFFSET = 9_000_000  # warm-up recipients never repeat a measured one

Send = Callable[[int], Awaitable[bool]]


def recipient(i: int) -> str:
    """A distinct, possible US number per message (no cache helps across messages)."""
    return f"whatsapp:+1555{i % 10_000_000:07d}"


def body(i: int) -> str:
    return f"Your order {i} has shipped and will arrive tomorrow."


async def _loop(send: Send, start: int, count: int, concurrency: int) -> int:
    """Send messages ``start .. start+count`` with ``concurrency`` in flight; failures."""
    pending: Iterator[int] = iter(range(start, start + count))
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for i in pending:
            if not await send(i):
                failures += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


def _result(count: int, failures: int, started: tuple[Any, ...], server_pid: int) -> dict[str, Any]:
    cpu, wall, server, times = started
    now = os.times()
    return {
        "count": count,
        "seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
        "user_seconds": now.user - times.user,
        "system_seconds": now.system - times.system,
        "server_cpu_seconds": cpu_seconds(server_pid) - server,
        "failures": failures,
    }


def _start(server_pid: int) -> tuple[Any, ...]:
    return time.process_time(), time.perf_counter(), cpu_seconds(server_pid), os.times()


async def _measure(send: Send, options: dict[str, Any]) -> dict[str, Any]:
    count, concurrency = options["count"], options["concurrency"]
    await _loop(send, WARMUP_OFFSET, options["warmup"], concurrency)
    started = _start(options["server_pid"])
    failures = await _loop(send, 0, count, concurrency)
    return _result(count, failures, started, options["server_pid"])


# --- 1. this connector ---------------------------------------------------------------


async def connector(
    url: str, sid: str, token: str, options: dict[str, Any], *, recipients: int | None = None
) -> dict[str, Any]:
    """``recipients``: cycle through that many numbers (validated once, then cached)."""
    from ratatosk import ConnectionSettings, MessageBuilder
    from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector
    from ratatosk.twilio.resilience import SendPolicy

    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", sid)
        .set_parameter("AuthToken", token)
        .set_parameter("ApiBaseUrl", url)
    )
    # The per-sender limiter stays in the path, set far above what loopback can reach.
    policy = SendPolicy(rate_per_sender=1e9, burst=1e9)
    schema = TwilioChannelSchemas.TWILIO_WHATSAPP
    async with TwilioWhatsAppConnector(schema, settings, send_policy=policy) as client:

        async def send(i: int) -> bool:
            to = recipient(i if recipients is None else i % recipients)
            message = MessageBuilder().from_phone(SENDER).to_phone(to).with_text(body(i)).build()
            result = await client.send_message(message)
            return result.successful

        return await _measure(send, options)


# --- 2. the official client, synchronous -----------------------------------------------


def twilio_sync(url: str, sid: str, token: str, options: dict[str, Any]) -> dict[str, Any]:
    from twilio.rest import Client

    client = Client(sid, token)
    client.api.base_url = url  # Messages live on the api domain; no per-call rewriting

    def send(i: int) -> bool:
        message = client.messages.create(to=recipient(i), from_=SENDER, body=body(i))
        return bool(message.sid)

    for i in range(WARMUP_OFFSET, WARMUP_OFFSET + options["warmup"]):
        send(i)
    started = _start(options["server_pid"])
    failures = sum(0 if send(i) else 1 for i in range(options["count"]))
    return _result(options["count"], failures, started, options["server_pid"])


# --- 3. the official client, asyncio ---------------------------------------------------


async def twilio_async(url: str, sid: str, token: str, options: dict[str, Any]) -> dict[str, Any]:
    from twilio.http.async_http_client import AsyncTwilioHttpClient
    from twilio.rest import Client

    http = AsyncTwilioHttpClient()
    client = Client(sid, token, http_client=http)
    client.api.base_url = url
    try:

        async def send(i: int) -> bool:
            message = await client.messages.create_async(
                to=recipient(i), from_=SENDER, body=body(i)
            )
            return bool(message.sid)

        return await _measure(send, options)
    finally:
        await http.close()


# --- 4. bare aiohttp: the floor ----------------------------------------------------------


async def raw_aiohttp(url: str, sid: str, token: str, options: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    endpoint = f"{url}/2010-04-01/Accounts/{sid}/Messages.json"
    headers = {
        "Authorization": "Basic " + base64.b64encode(f"{sid}:{token}".encode()).decode("ascii"),
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
    }
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
    try:

        async def send(i: int) -> bool:
            data = urlencode({"To": recipient(i), "From": SENDER, "Body": body(i)}).encode()
            async with session.post(endpoint, data=data, headers=headers) as response:
                await response.read()
                return response.status == 201

        return await _measure(send, options)
    finally:
        await session.close()


def run_client(
    name: str, url: str, sid: str, token: str, options: dict[str, Any]
) -> dict[str, Any]:
    """One measured run of client ``name`` in this process."""
    if name == "twilio_sync":
        return twilio_sync(url, sid, token, options)
    if name == "connector_200_recipients":
        return asyncio.run(connector(url, sid, token, options, recipients=200))
    runners = {"connector": connector, "twilio_async": twilio_async, "raw_aiohttp": raw_aiohttp}
    return asyncio.run(runners[name](url, sid, token, options))


CLIENTS = ("connector", "twilio_sync", "twilio_async", "raw_aiohttp", "connector_200_recipients")
