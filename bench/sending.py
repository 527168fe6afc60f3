"""The send clients, run against the canned responder or the emulator (their own process).

Every client sends the same form for message ``i`` (same recipient, sender
and body). The asyncio clients keep exactly ``concurrency`` requests in
flight (that many coroutines pull from one iterator) and are measured
*interleaved* in one worker process: batch after batch, in rotating order,
each batch timed alone (wall clock, ``time.process_time``, the emulator's
CPU). On a shared machine the background load drifts; interleaving at batch
granularity makes every client see the same drift. The synchronous client
(one request at a time) runs in its own worker process. Imports, session
set-up and a warm-up are never timed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlencode

from procs import cpu_seconds

SENDER = "whatsapp:+14155238886"
WARMUP_OFFSET = 9_000_000  # warm-up recipients never repeat a measured one
REPEAT = "connector_200_recipients"
ON_AIOHTTP = "connector_aiohttp"  # the connector on the aiohttp transport (the default before)
ASYNC_CLIENTS = ("connector", "twilio_async", "raw_aiohttp", REPEAT, ON_AIOHTTP)
CLIENTS = ("connector", "twilio_sync", "twilio_async", "raw_aiohttp", REPEAT, ON_AIOHTTP)

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


def server_cpu(options: dict[str, Any]) -> Callable[[], float]:
    """How to read the server's CPU: the responder's own probe, else ``/proc`` (the emulator)."""
    if options.get("server") == "responder":
        from responder import cpu_probe

        url = options["url"]
        return lambda: cpu_probe(url)
    pid = options["server_pid"]
    return lambda: cpu_seconds(pid)


class Meter:
    """Wall clock, this process's CPU (total, user, system) and the server's CPU."""

    def __init__(self, server_cpu: Callable[[], float]) -> None:
        self.server_cpu = server_cpu
        self.totals = {
            "count": 0,
            "seconds": 0.0,
            "cpu_seconds": 0.0,
            "user_seconds": 0.0,
            "system_seconds": 0.0,
            "server_cpu_seconds": 0.0,
            "failures": 0,
        }
        self.batch_cpu_us: list[float] = []

    @contextlib.contextmanager
    def batch(self, count: int) -> Iterator[dict[str, int]]:
        outcome = {"failures": 0}
        times, server = os.times(), self.server_cpu()
        cpu, wall = time.process_time(), time.perf_counter()
        yield outcome
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        now = os.times()
        self.totals["count"] += count
        self.totals["seconds"] += wall
        self.totals["cpu_seconds"] += cpu
        self.totals["user_seconds"] += now.user - times.user
        self.totals["system_seconds"] += now.system - times.system
        self.totals["server_cpu_seconds"] += self.server_cpu() - server
        self.totals["failures"] += outcome["failures"]
        self.batch_cpu_us.append(cpu / count * 1e6)

    def result(self) -> dict[str, Any]:
        return {**self.totals, "batch_cpu_us": self.batch_cpu_us}


# --- the clients ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def connector(
    url: str, sid: str, token: str, *, recipients: int | None = None, aiohttp: bool = False
) -> AsyncIterator[Send]:
    """This connector; ``recipients``: cycle through that many numbers (validated once).

    ``aiohttp``: on the aiohttp transport instead of the default (its own HTTP/1.1 client).
    """
    from ratatosk import ConnectionSettings, MessageBuilder
    from ratatosk.adapters.twilio_http import AiohttpMessagingApi
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
    transport = AiohttpMessagingApi.from_settings(settings) if aiohttp else None
    opened = TwilioWhatsAppConnector(schema, settings, send_policy=policy, transport=transport)
    async with contextlib.AsyncExitStack() as stack:
        if transport is not None:  # the caller's transport: the connector leaves it open
            stack.push_async_callback(transport.close)
        client = await stack.enter_async_context(opened)

        async def send(i: int) -> bool:
            to = recipient(i if recipients is None else i % recipients)
            message = MessageBuilder().from_phone(SENDER).to_phone(to).with_text(body(i)).build()
            result = await client.send_message(message)
            return result.successful

        yield send


@contextlib.asynccontextmanager
async def twilio_async(url: str, sid: str, token: str) -> AsyncIterator[Send]:
    """The official client with its asyncio HTTP client (``create_async``)."""
    from twilio.http.async_http_client import AsyncTwilioHttpClient
    from twilio.rest import Client

    http = AsyncTwilioHttpClient()
    client = Client(sid, token, http_client=http)
    client.api.base_url = url  # Messages live on the api domain; no per-call rewriting
    try:

        async def send(i: int) -> bool:
            message = await client.messages.create_async(
                to=recipient(i), from_=SENDER, body=body(i)
            )
            return bool(message.sid)

        yield send
    finally:
        await http.close()


@contextlib.asynccontextmanager
async def raw_aiohttp(url: str, sid: str, token: str) -> AsyncIterator[Send]:
    """The floor: a bare aiohttp POST of the same form, Basic auth precomputed."""
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

        yield send
    finally:
        await session.close()


def open_client(
    name: str, url: str, sid: str, token: str
) -> contextlib.AbstractAsyncContextManager[Send]:
    if name == REPEAT:
        return connector(url, sid, token, recipients=200)
    if name == ON_AIOHTTP:
        return connector(url, sid, token, aiohttp=True)
    opener = {"connector": connector, "twilio_async": twilio_async, "raw_aiohttp": raw_aiohttp}
    return opener[name](url, sid, token)


# --- runs ---------------------------------------------------------------------------------


async def interleaved(
    url: str, sid: str, token: str, options: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """The asyncio clients, ``rounds`` batches each, in rotating order, in this process."""
    names: list[str] = list(options["clients"])
    batch, rounds = options["batch"], options["rounds"]
    concurrency, reader = options["concurrency"], server_cpu(options)
    meters = {name: Meter(reader) for name in names}
    async with contextlib.AsyncExitStack() as stack:
        sends: dict[str, Send] = {}
        for name in names:
            sends[name] = await stack.enter_async_context(open_client(name, url, sid, token))
        for name in names:
            await _loop(sends[name], WARMUP_OFFSET, options["warmup"], concurrency)
        for round_ in range(rounds):
            shift = round_ % len(names)
            order = names[shift:] + names[:shift]
            if round_ % 2:
                order.reverse()
            for name in order:
                with meters[name].batch(batch) as outcome:
                    start = round_ * batch  # every client sends the same messages
                    outcome["failures"] = await _loop(sends[name], start, batch, concurrency)
    return {name: meter.result() for name, meter in meters.items()}


def twilio_sync(url: str, sid: str, token: str, options: dict[str, Any]) -> dict[str, Any]:
    """The official client, synchronous (requests), one message at a time."""
    from twilio.rest import Client

    client = Client(sid, token)
    client.api.base_url = url

    def send(i: int) -> bool:
        message = client.messages.create(to=recipient(i), from_=SENDER, body=body(i))
        return bool(message.sid)

    for i in range(WARMUP_OFFSET, WARMUP_OFFSET + options["warmup"]):
        send(i)
    meter = Meter(server_cpu(options))
    with meter.batch(options["count"]) as outcome:
        outcome["failures"] = sum(0 if send(i) else 1 for i in range(options["count"]))
    return meter.result()


async def single(name: str, url: str, sid: str, token: str, options: dict[str, Any]) -> None:
    """One asyncio client alone (for profiling): warm-up, then ``count`` messages."""
    async with open_client(name, url, sid, token) as send:
        await _loop(send, WARMUP_OFFSET, options["warmup"], options["concurrency"])
        await _loop(send, 0, options["count"], options["concurrency"])
