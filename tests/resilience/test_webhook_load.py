"""The webhook server under load and under attack, on loopback.

Load: thousands of correctly signed deliveries, 100 in flight, 10% of them
repeated the ways Twilio repeats (same ``I-Twilio-Idempotency-Token``, or no
token and the same MessageSid / MessageSid + MessageStatus): no 5xx, and
every event reaches its handler exactly once.

Attack: forged, unsigned, replayed-with-a-changed-body, wrong-URL and
wrong-token deliveries are refused with 403 before any handler runs;
oversize bodies and too many fields get 413; a client that trickles its body
gets 408 (or the connection closed) while the server keeps serving others; a
handler that raises gets 500 and Twilio's redelivery is handled.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import pytest
from aiohttp import web
from resilience_support import ALL_CODES, record_figures, serve_app

from ratatosk import ConnectionSettings, ReceiveResult, StatusUpdate
from ratatosk.adapters.webhook_server import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    STATS,
    create_webhook_app,
)
from ratatosk.emulator.model import inbound_form, status_callback_params
from ratatosk.testing import FakeTwilio
from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector
from ratatosk.twilio.signature import body_sha256, compute_signature

ACCOUNT = "AC" + "4b" * 16
TOKEN = "webhook-load-token-31415926535897"
PUBLIC = "https://hooks.example.com"
PATH = "/webhooks/twilio/whatsapp"
STATUS_PATH = PATH + "/status"
BUSINESS = "whatsapp:+14155238886"
FORM = "application/x-www-form-urlencoded"
TOKEN_STATUSES = ("sent", "delivered", "read")
TOKENLESS_STATUSES = ("accepted", "queued", "failed", "undelivered")


class Handlers:
    """Records every event the server hands over; can be told to fail once per key."""

    def __init__(self) -> None:
        self.events: Counter[str] = Counter()
        self.calls = 0
        self.fail_once: set[str] = set()

    async def on_message(self, received: ReceiveResult) -> None:
        self.calls += 1
        for message in received.messages:
            await self._record(f"message:{message.id}")

    async def on_status(self, update: StatusUpdate) -> None:
        self.calls += 1
        await self._record(f"status:{update.message_id}:{update.data['twilio_status']}")

    async def _record(self, key: str) -> None:
        if key in self.fail_once:
            self.fail_once.discard(key)
            raise RuntimeError("the handler's database is down")
        if hash(key) % 4 == 0:
            await asyncio.sleep(0.001)  # some handlers do I/O: keep deliveries overlapping
        self.events[key] += 1


class Hooks:
    """A running webhook server and a client that signs like Twilio."""

    def __init__(self, url: str, app: web.Application, handlers: Handlers) -> None:
        self.url = url
        self.app = app
        self.handlers = handlers

    @property
    def stats(self) -> Any:
        return self.app[STATS]

    @staticmethod
    def sign(path: str, form: dict[str, str], token: str = TOKEN, base: str = PUBLIC) -> str:
        return compute_signature(token, base + path, form)

    async def post(
        self,
        session: aiohttp.ClientSession,
        path: str,
        body: bytes | str,
        headers: dict[str, str],
    ) -> tuple[int, str]:
        async with session.post(self.url + path, data=body, headers=headers) as response:
            return response.status, await response.text()

    async def post_form(
        self,
        session: aiohttp.ClientSession,
        path: str,
        form: dict[str, str],
        *,
        token: str | None = None,
        signature: str | None = None,
    ) -> tuple[int, str]:
        headers = {"Content-Type": FORM, SIGNATURE_HEADER: signature or self.sign(path, form)}
        if token is not None:
            headers[IDEMPOTENCY_HEADER] = token
        return await self.post(session, path, urlencode(form), headers)


async def start_hooks(**options: Any) -> tuple[Hooks, web.AppRunner, TwilioWhatsAppConnector]:
    settings = (
        ConnectionSettings().set_parameter("AccountSid", ACCOUNT).set_parameter("AuthToken", TOKEN)
    )
    connector = TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP, settings, transport=FakeTwilio(ACCOUNT, TOKEN)
    )
    (await connector.initialize()).unwrap()
    handlers = Handlers()
    app = create_webhook_app(
        connector,
        validator=connector.signature_validator,
        public_url=PUBLIC,
        on_message=handlers.on_message,
        on_status=handlers.on_status,
        **options,
    )
    runner, url = await serve_app(app)
    return Hooks(url, app, handlers), runner, connector


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    server, runner, connector = await start_hooks(body_timeout=0.3, max_body_bytes=16 * 1024)
    yield server
    await runner.cleanup()
    await connector.shutdown()


def customer(n: int) -> str:
    return f"whatsapp:+1555{n % 10_000_000:07d}"


def sid(n: int) -> str:
    return f"SM{n:032x}"


# --- load ------------------------------------------------------------------------------------


Delivery = tuple[str, dict[str, str], str | None]  # path, form, idempotency token


def deliveries(count: int, rng: random.Random) -> tuple[list[Delivery], set[str], int]:
    """``count`` deliveries, 10% of them repeats; the distinct event keys; the repeat count."""
    repeats = count // 10
    unique: list[Delivery] = []
    keys: set[str] = set()
    for n in range(count - repeats):
        kind = n % 4
        with_token = kind < 2
        token = str(uuid.UUID(int=rng.getrandbits(128), version=4)) if with_token else None
        if kind in {0, 2}:
            form = inbound_form(
                sid=sid(n),
                account_sid=ACCOUNT,
                from_=customer(n),
                to=BUSINESS,
                body=f"hello {n} {'é' * (n % 3)}",
                profile_name=f"Customer {n}",
            )
            unique.append((PATH, form, token))
            keys.add(f"message:{sid(n)}")
        else:
            # Several statuses of one message are distinct events, even two statuses
            # the kernel maps alike (accepted and queued, failed and undelivered).
            m = n // 4
            if with_token:
                message, status = sid(2**64 + m // 3), TOKEN_STATUSES[m % 3]
            else:
                message, status = sid(2**65 + m // 4), TOKENLESS_STATUSES[m % 4]
            params = status_callback_params(
                sid=message,
                account_sid=ACCOUNT,
                from_=BUSINESS,
                to=customer(n),
                status=status,
                channel_install_sid="XE" + "0" * 32,
            )
            unique.append((STATUS_PATH, params, token))
            keys.add(f"status:{message}:{status}")
    assert len(keys) == len(unique)
    copies = [unique[rng.randrange(len(unique))] for _ in range(count - len(unique))]
    everything = unique + copies
    rng.shuffle(everything)
    return everything, keys, len(copies)


async def webhooks_under_load(count: int, in_flight: int = 100) -> dict[str, Any]:
    server, runner, connector = await start_hooks()
    rng = random.Random(count)
    planned, keys, repeats = deliveries(count, rng)
    answers: Counter[int] = Counter()
    active = peak = 0
    gate = asyncio.Semaphore(in_flight)

    async def deliver(session: aiohttp.ClientSession, item: Delivery) -> None:
        nonlocal active, peak
        path, form, token = item
        async with gate:
            active += 1
            peak = max(peak, active)
            try:
                status, _ = await server.post_form(session, path, form, token=token)
            finally:
                active -= 1
        answers[status] += 1

    began = time.monotonic()
    try:
        limits = aiohttp.TCPConnector(limit=in_flight)
        async with aiohttp.ClientSession(connector=limits) as session:
            await asyncio.gather(*(deliver(session, item) for item in planned))
    finally:
        elapsed = time.monotonic() - began
        await runner.cleanup()
        await connector.shutdown()
    handled = server.handlers.events
    assert sum(n for status, n in answers.items() if status >= 500) == 0
    assert answers == Counter({200: count})
    assert set(handled) == keys  # every event handled...
    assert max(handled.values()) == 1  # ...exactly once
    assert server.stats.handled == len(keys)
    assert server.stats.duplicates == repeats
    assert peak == in_flight
    return {
        "deliveries": count,
        "distinct_events": len(keys),
        "repeated_deliveries": repeats,
        "peak_in_flight": peak,
        "answers": {str(k): v for k, v in answers.items()},
        "server_errors": 0,
        "handled_twice": sum(1 for n in handled.values() if n > 1),
        "elapsed_seconds": round(elapsed, 1),
        "deliveries_per_second": round(count / elapsed),
    }


async def test_webhooks_under_load_small() -> None:
    """500 signed deliveries, 100 in flight, 10% repeated: each event handled once, no 5xx."""
    await webhooks_under_load(500)


@pytest.mark.slow
async def test_webhooks_under_load_soak() -> None:
    record_figures("webhooks_under_load", **await webhooks_under_load(10_000))


# --- attack -----------------------------------------------------------------------------------


def inbound(n: int) -> dict[str, str]:
    return inbound_form(sid=sid(n), account_sid=ACCOUNT, from_=customer(n), to=BUSINESS, body="hi")


def status_form(n: int, status: str = "delivered") -> dict[str, str]:
    return status_callback_params(
        sid=sid(n),
        account_sid=ACCOUNT,
        from_=BUSINESS,
        to=customer(n),
        status=status,
        channel_install_sid="XE" + "0" * 32,
    )


Forgery = Callable[[str, dict[str, str]], tuple[str, dict[str, str]]]


def _forged(path: str, form: dict[str, str]) -> tuple[str, dict[str, str]]:
    fake = base64.b64encode(random.Random(path).randbytes(20)).decode()
    return urlencode(form), {SIGNATURE_HEADER: fake}


def _unsigned(path: str, form: dict[str, str]) -> tuple[str, dict[str, str]]:
    return urlencode(form), {}


def _blank_signature(path: str, form: dict[str, str]) -> tuple[str, dict[str, str]]:
    return urlencode(form), {SIGNATURE_HEADER: ""}


def _changed_body(path: str, form: dict[str, str]) -> tuple[str, dict[str, str]]:
    signature = Hooks.sign(path, form)
    changed = dict(form)
    changed["From" if "Body" in form else "MessageStatus"] = (
        "whatsapp:+15550009999" if "Body" in form else "read"
    )
    return urlencode(changed), {SIGNATURE_HEADER: signature}


def _added_field(path: str, form: dict[str, str]) -> tuple[str, dict[str, str]]:
    signature = Hooks.sign(path, form)
    return urlencode({**form, "Extra": "1"}), {SIGNATURE_HEADER: signature}


def _wrong_url(path: str, form: dict[str, str]) -> tuple[str, dict[str, str]]:
    return urlencode(form), {SIGNATURE_HEADER: Hooks.sign(path, form, base="https://evil.example")}


def _wrong_path(path: str, form: dict[str, str]) -> tuple[str, dict[str, str]]:
    other = STATUS_PATH if path == PATH else PATH
    return urlencode(form), {SIGNATURE_HEADER: Hooks.sign(other, form)}


def _wrong_token(path: str, form: dict[str, str]) -> tuple[str, dict[str, str]]:
    signature = Hooks.sign(path, form, token="webhook-load-token-31415926535898")
    return urlencode(form), {SIGNATURE_HEADER: signature}


FORGERIES: dict[str, Forgery] = {
    "forged": _forged,
    "unsigned": _unsigned,
    "blank signature": _blank_signature,
    "replayed with a changed body": _changed_body,
    "replayed with an added field": _added_field,
    "wrong URL": _wrong_url,
    "wrong path": _wrong_path,
    "wrong token": _wrong_token,
}


@pytest.mark.parametrize("path", [PATH, STATUS_PATH])
@pytest.mark.parametrize("attack", sorted(FORGERIES))
async def test_forgeries_are_403_and_never_reach_a_handler(
    hooks: Hooks, attack: str, path: str
) -> None:
    form = inbound(1) if path == PATH else status_form(1)
    body, headers = FORGERIES[attack](path, form)
    async with aiohttp.ClientSession() as session:
        status, text = await hooks.post(session, path, body, {"Content-Type": FORM, **headers})
        # The genuine delivery still goes through afterwards: nothing was claimed.
        genuine, _ = await hooks.post_form(session, path, form, token="t-1")
    assert status == 403
    assert json.loads(text)["code"] == "INVALID_SIGNATURE"
    assert hooks.stats.refused_signature == 1
    assert genuine == 200
    assert hooks.handlers.calls == 1


async def test_json_webhook_replayed_with_changed_body_is_403(hooks: Hooks) -> None:
    body = json.dumps({"MessageSid": sid(2), "From": customer(2), "To": BUSINESS, "Body": "a"})
    url = f"{PUBLIC}{PATH}?bodySHA256={body_sha256(body)}"
    signature = compute_signature(TOKEN, url, {})
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature}
    query = urlsplit(url).query
    async with aiohttp.ClientSession() as session:
        bad, _ = await hooks.post(session, f"{PATH}?{query}", body.replace('"a"', '"b"'), headers)
        good, _ = await hooks.post(session, f"{PATH}?{query}", body, headers)
    assert (bad, good) == (403, 200)
    assert hooks.handlers.calls == 1


async def test_oversize_body_is_413(hooks: Hooks) -> None:
    form = inbound(3) | {"Body": "x" * 20_000}
    async with aiohttp.ClientSession() as session:
        status, text = await hooks.post_form(session, PATH, form)

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the server must count
            for _ in range(40):
                yield b"Body=" + b"y" * 1000 + b"&"

        headers = {"Content-Type": FORM, SIGNATURE_HEADER: "x"}
        streamed, _ = await hooks.post(session, PATH, chunks(), headers)  # type: ignore[arg-type]
    assert status == 413
    assert json.loads(text)["code"] == "INVALID_WEBHOOK_DATA"
    assert "x" * 50 not in text
    assert streamed == 413
    assert hooks.handlers.calls == 0


async def test_too_many_fields_is_413(hooks: Hooks) -> None:
    form = inbound(4) | {f"F{n}": "" for n in range(250)}
    async with aiohttp.ClientSession() as session:
        status, text = await hooks.post_form(session, PATH, form)
    assert status == 413
    assert json.loads(text)["code"] == "INVALID_WEBHOOK_DATA"
    assert hooks.handlers.calls == 0


async def test_slow_client_gets_408_and_the_server_keeps_serving(hooks: Hooks) -> None:
    """Headers at once, then the body one byte per 50 ms against a 0.3 s body timeout."""
    form = inbound(5)
    body = urlencode(form).encode()
    signature = Hooks.sign(PATH, form)
    host, port = urlsplit(hooks.url).hostname, urlsplit(hooks.url).port
    reader, writer = await asyncio.open_connection(host, port)
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {FORM}\r\n"
        f"Content-Length: {len(body)}\r\n{SIGNATURE_HEADER}: {signature}\r\n\r\n"
    )
    writer.write(head.encode())
    await writer.drain()

    async def trickle() -> bytes:
        # Never the whole body: 20 bytes in a second, well past the timeout.
        for byte in body[:20]:
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.sleep(0.05)
        return await asyncio.wait_for(reader.read(4096), timeout=5)

    began = time.monotonic()
    slow = asyncio.create_task(trickle())
    async with aiohttp.ClientSession() as session:
        # While the slow client holds its connection, others are served promptly.
        status, _ = await hooks.post_form(session, STATUS_PATH, status_form(6), token="t-6")
        served_in = time.monotonic() - began
        answer = await slow
        after, _ = await hooks.post_form(session, STATUS_PATH, status_form(7), token="t-7")
    writer.close()
    assert status == 200
    assert served_in < 0.3
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert time.monotonic() - began < 3.0
    assert after == 200
    assert hooks.stats.timeouts == 1
    assert f"message:{sid(5)}" not in hooks.handlers.events


async def test_handler_failure_is_500_and_the_redelivery_is_handled(hooks: Hooks) -> None:
    form = inbound(8)
    hooks.handlers.fail_once.add(f"message:{sid(8)}")
    async with aiohttp.ClientSession() as session:
        first, text = await hooks.post_form(session, PATH, form, token="t-8")
        again, _ = await hooks.post_form(session, PATH, form, token="t-8")
        third, _ = await hooks.post_form(session, PATH, form, token="t-8")
    assert first == 500
    assert "database" not in text  # the handler's exception text is not echoed
    assert (again, third) == (200, 200)
    assert hooks.handlers.events[f"message:{sid(8)}"] == 1
    assert hooks.stats.handler_errors == 1
    assert hooks.stats.handled == 1
    assert hooks.stats.duplicates == 1


async def test_refusals_carry_catalogued_codes(hooks: Hooks) -> None:
    """Every refusal above is JSON with a code from the catalogs (or the handler's own)."""
    cases: list[tuple[str, bytes | str, dict[str, str]]] = [
        (PATH, "MessageSid=x", {"Content-Type": FORM}),
        (PATH, "<xml/>", {"Content-Type": "text/xml"}),
        (PATH, "x" * 20_000, {"Content-Type": FORM}),
    ]
    async with aiohttp.ClientSession() as session:
        for path, body, headers in cases:
            status, text = await hooks.post(session, path, body, headers)
            assert 400 <= status < 500
            assert json.loads(text)["code"] in ALL_CODES
