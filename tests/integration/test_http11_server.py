"""The package's own HTTP/1.1 server as a peer on the network meets it: raw bytes on loopback.

tests/integration/test_webhook_server.py proves what the webhooks answer, alike on
all three servers; this module proves the server under ``ratatosk serve`` itself:
what it refuses and that it closes afterwards (a request smuggled past a proxy
lives on framing the two disagree about), chunked bodies, ``100-continue``,
keep-alive and pipelining, its timers, clients that vanish, a graceful stop,
back-pressure against a client that never reads, the budget of its log lines,
and a Hypothesis search for bytes that would crash it. Requests are written
and answers parsed by hand over sockets, so nothing between the test and the
server is lenient on either's behalf. Every wait has a hang guard; nothing is
timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
import socket
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import attrs
import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratatosk import ConnectionSettings, ReceiveResult, TextContent
from ratatosk.adapters.http11_server import (
    MALFORMED_LOG_BURST,
    ServerLimits,
    WebhookServer,
    serve_webhooks,
)
from ratatosk.adapters.webhook_core import WebhookCore
from ratatosk.testing import FakeTwilio
from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector

PUBLIC_URL = "https://hooks.example.test"
PATH = "/webhooks/twilio/whatsapp"
HOST = "hooks.example.test"
CUSTOMER = "whatsapp:+15551234567"
BUSINESS = "whatsapp:+14155238886"
#: A hang guard: how long a wait may last before the test fails instead of hanging.
HANG = 30.0
STATUS_LINE = re.compile(rb"HTTP/1\.1 [1-5]\d\d [ -~]*\r\n")


@attrs.define
class Harness:
    """A served core with a recording handler that can be held back."""

    fake: FakeTwilio
    core: WebhookCore
    server: WebhookServer
    received: list[ReceiveResult]
    hold: asyncio.Event | None

    def signed(self, text: str, path: str = PATH) -> tuple[bytes, str]:
        body, signature = self.fake.inbound_message_body(
            PUBLIC_URL + path, CUSTOMER, BUSINESS, text
        )
        return body.encode("ascii"), signature

    def texts(self) -> list[str]:
        out = []
        for received in self.received:
            for message in received.messages:
                assert isinstance(message.content, TextContent)
                out.append(message.content.text)
        return out


@asynccontextmanager
async def running(
    limits: ServerLimits | None = None, *, hold: asyncio.Event | None = None, **core_options: Any
) -> AsyncIterator[Harness]:
    fake = FakeTwilio()
    settings_ = (
        ConnectionSettings()
        .set_parameter("AccountSid", fake.account_sid)
        .set_parameter("AuthToken", fake.auth_token)
    )
    connector = TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP, settings_, transport=fake
    )
    async with connector:
        received: list[ReceiveResult] = []

        async def on_message(message: ReceiveResult) -> None:
            received.append(message)
            if hold is not None:
                await hold.wait()

        core = WebhookCore(
            connector,
            validator=connector.signature_validator,
            public_url=PUBLIC_URL,
            on_message=on_message,
            **core_options,
        )
        server = await serve_webhooks(core, limits=limits)
        try:
            yield Harness(fake, core, server, received, hold)
        finally:
            await server.close()


def post(
    body: bytes,
    signature: str,
    *,
    path: str = PATH,
    version: str = "HTTP/1.1",
    extra: Sequence[str] = (),
    chunks: Sequence[int] | None = None,
) -> bytes:
    """A signed form POST as bytes; ``extra`` header lines go after the usual ones.

    ``chunks``: the body sent chunked, in pieces of these sizes (and the rest).
    """
    framing = "Transfer-Encoding: chunked" if chunks is not None else f"Content-Length: {len(body)}"
    lines = [
        f"POST {path} {version}",
        f"Host: {HOST}",
        "Content-Type: application/x-www-form-urlencoded",
        f"X-Twilio-Signature: {signature}",
        framing,
        *extra,
    ]
    sent = chunked(body, chunks) if chunks is not None else body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + sent


def chunked(body: bytes, sizes: Sequence[int], *, extensions: bool = True) -> bytes:
    """``body`` in chunks of ``sizes`` (the rest in a last one), with extensions and a trailer."""
    out, at = [], 0
    for index, size in enumerate([*sizes, len(body)]):
        piece = body[at : at + size]
        at += len(piece)
        if piece:
            extension = f";n={index};flag" if extensions else ""
            out.append(f"{len(piece):x}{extension}\r\n".encode() + piece + b"\r\n")
    out.append(b"0\r\nX-Trailer: one\r\nX-Other: two\r\n\r\n")
    return b"".join(out)


@attrs.frozen
class Response:
    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class Client:
    """One raw connection: bytes written as given, answers parsed strictly."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, server: WebhookServer) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, limit=1 << 20)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def head_line(self) -> bytes:
        async with asyncio.timeout(HANG):
            return await self.reader.readuntil(b"\r\n\r\n")

    async def response(self, *, head_only: bool = False) -> Response:
        raw = await self.head_line()
        status_line, *lines = raw[:-4].decode("latin-1").split("\r\n")
        assert STATUS_LINE.fullmatch((status_line + "\r\n").encode("latin-1")), status_line
        headers: dict[str, list[str]] = {}
        for line in lines:
            name, colon, value = line.partition(":")
            assert colon, line
            assert name == name.strip(), line
            headers.setdefault(name.lower(), []).append(value.strip())
        [length] = headers["content-length"]
        body = b""
        if not head_only:
            async with asyncio.timeout(HANG):
                body = await self.reader.readexactly(int(length))
        return Response(int(status_line.split(" ")[1]), headers, body)

    async def closed(self) -> bool:
        """The server closed: EOF (or a reset) before any more bytes."""
        try:
            async with asyncio.timeout(HANG):
                return await self.reader.read(1) == b""
        except ConnectionResetError:
            return True

    async def close(self) -> None:
        self.writer.close()
        with suppress(ConnectionError):
            await self.writer.wait_closed()


@asynccontextmanager
async def connection(server: WebhookServer) -> AsyncIterator[Client]:
    client = await Client.open(server)
    try:
        yield client
    finally:
        await client.close()


async def exchange(server: WebhookServer, data: bytes) -> tuple[Response, bool]:
    """``data`` on a fresh connection: the one answer, and whether the server closed after it."""
    async with connection(server) as client:
        await client.send(data)
        answer = await client.response()
        return answer, await client.closed()


async def assert_still_serving(harness: Harness, text: str) -> None:
    body, signature = harness.signed(text)
    answer, _ = await exchange(harness.server, post(body, signature, extra=["Connection: close"]))
    assert answer.status == 200
    assert text in harness.texts()


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


# -- 1. framing refusals ---------------------------------------------------------------------

GOOD_HEAD = f"POST {PATH} HTTP/1.1\r\nHost: {HOST}\r\n"


def head(*lines: str, request_line: str = f"POST {PATH} HTTP/1.1") -> bytes:
    return ("\r\n".join((request_line, *lines)) + "\r\n\r\n").encode("latin-1")


REFUSALS = {
    "content-length-and-chunked": (
        head(f"Host: {HOST}", "Content-Length: 5", "Transfer-Encoding: chunked") + b"0\r\n\r\n",
        400,
    ),
    "chunked-and-content-length": (
        head(f"Host: {HOST}", "Transfer-Encoding: chunked", "Content-Length: 5") + b"0\r\n\r\n",
        400,
    ),
    "two-differing-lengths": (head(f"Host: {HOST}", "Content-Length: 3", "Content-Length: 4"), 400),
    "differing-lengths-in-one-field": (head(f"Host: {HOST}", "Content-Length: 3, 4"), 400),
    "length-not-digits": (head(f"Host: {HOST}", "Content-Length: abc"), 400),
    "length-signed": (head(f"Host: {HOST}", "Content-Length: +3"), 400),
    "length-negative": (head(f"Host: {HOST}", "Content-Length: -1"), 400),
    "length-unicode-digit": (
        (
            "\r\n".join((f"POST {PATH} HTTP/1.1", f"Host: {HOST}", "Content-Length: ²"))
            + "\r\n\r\n"
        ).encode("utf-8"),
        400,
    ),
    "length-hex": (head(f"Host: {HOST}", "Content-Length: 0x10"), 400),
    "length-empty": (head(f"Host: {HOST}", "Content-Length: "), 400),
    "length-huge": (head(f"Host: {HOST}", "Content-Length: " + "9" * 40), 400),
    "coding-not-chunked": (head(f"Host: {HOST}", "Transfer-Encoding: gzip"), 400),
    "coding-before-chunked": (head(f"Host: {HOST}", "Transfer-Encoding: gzip, chunked"), 501),
    "coding-after-chunked": (head(f"Host: {HOST}", "Transfer-Encoding: chunked, gzip"), 400),
    "coding-in-two-fields": (
        head(f"Host: {HOST}", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"),
        501,
    ),
    "chunked-on-http10": (
        head("Transfer-Encoding: chunked", request_line=f"POST {PATH} HTTP/1.0") + b"0\r\n\r\n",
        400,
    ),
    "no-host": (head("Content-Length: 0"), 400),
    "two-hosts": (head(f"Host: {HOST}", "Host: other.example", "Content-Length: 0"), 400),
    "obs-fold": (head(f"Host: {HOST}", "X-Long: one", " two", "Content-Length: 0"), 400),
    "obs-fold-tab": (head(f"Host: {HOST}", "X-Long: one", "\ttwo", "Content-Length: 0"), 400),
    "space-before-colon": (head(f"Host: {HOST}", "Content-Length : 0"), 400),
    "no-colon": (head(f"Host: {HOST}", "Content-Length 0"), 400),
    "empty-name": (head(f"Host: {HOST}", ": value"), 400),
    "control-in-value": (head(f"Host: {HOST}", "X-Note: a\x01b"), 400),
    "nul-in-value": (head(f"Host: {HOST}", "X-Note: a\x00b"), 400),
    "bare-cr-in-value": (head(f"Host: {HOST}", "X-Note: a\rb"), 400),
    "bare-lf-in-head": (head(f"Host: {HOST}\nX-Note: b"), 400),
    "delete-in-value": (head(f"Host: {HOST}", "X-Note: a\x7fb"), 400),
    "http2": (head(f"Host: {HOST}", request_line=f"POST {PATH} HTTP/2.0"), 505),
    "http12": (head(f"Host: {HOST}", request_line=f"POST {PATH} HTTP/1.2"), 505),
    "http09-style": (head(f"Host: {HOST}", request_line=f"GET {PATH}"), 400),
    "lower-case-version": (head(f"Host: {HOST}", request_line=f"GET {PATH} http/1.1"), 400),
    "garbage-line": (head(f"Host: {HOST}", request_line="\x16\x03\x01 hello there"), 400),
    "two-spaces": (head(f"Host: {HOST}", request_line=f"GET  {PATH} HTTP/1.1"), 400),
    "absolute-target": (
        head(f"Host: {HOST}", request_line=f"GET http://{HOST}{PATH} HTTP/1.1"),
        400,
    ),
    "method-not-token": (head(f"Host: {HOST}", request_line=f"G(T {PATH} HTTP/1.1"), 400),
    "target-with-nul": (head(f"Host: {HOST}", request_line="GET /a%00b HTTP/1.1"), 400),
    "expect-something": (head(f"Host: {HOST}", "Expect: something", "Content-Length: 0"), 417),
    "too-many-fields": (
        head(f"Host: {HOST}", *(f"X-F{n}: v" for n in range(ServerLimits().max_headers))),
        431,
    ),
    "head-too-large": (
        head(f"Host: {HOST}", "X-Big: " + "a" * ServerLimits().max_head_bytes),
        431,
    ),
    "head-too-large-unterminated": (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20_000, 431),
}


@pytest.mark.parametrize(("raw", "status"), REFUSALS.values(), ids=list(REFUSALS))
async def test_a_request_with_unsafe_framing_is_refused_with_a_coded_answer_then_closed(
    raw: bytes, status: int
) -> None:
    async with running() as harness:
        answer, closed = await exchange(harness.server, raw)
        assert answer.status == status
        assert answer.header("Content-Type") == "application/json; charset=utf-8"
        assert answer.json()["code"] == "BAD_HTTP_REQUEST"
        assert answer.header("Connection") == "close"
        assert closed
        assert harness.received == []
        assert harness.core.stats.bad_request == 1


async def test_repeated_identical_content_lengths_are_one_length() -> None:
    async with running() as harness:
        body, signature = harness.signed("twice the same length")
        same = f"Content-Length: {len(body)}"
        for extra in ([same], [f"{same}, {len(body)}"]):
            async with connection(harness.server) as client:
                await client.send(post(body, signature, extra=extra))
                assert (await client.response()).status == 200
        assert harness.texts() == ["twice the same length"]


async def test_after_a_refusal_the_server_serves_the_next_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running() as harness:
        for raw, _ in REFUSALS.values():
            await exchange(harness.server, raw)
        await assert_still_serving(harness, "still here")
    no_errors_logged(caplog)


# -- 2. chunked bodies -----------------------------------------------------------------------


async def test_a_signed_form_sent_chunked_with_extensions_and_trailers_is_handled_once() -> None:
    async with running() as harness:
        body, signature = harness.signed("in pieces")
        async with connection(harness.server) as client:
            await client.send(post(body, signature, chunks=[7, 1, 30]))
            answer = await client.response()
            assert answer.status == 200
            assert answer.header("Connection") is None  # kept alive: the body was all read
            # The same connection carries the next request: the framing was consumed exactly.
            await client.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await client.response()).json() == {"status": "ok"}
        assert harness.texts() == ["in pieces"]


async def test_a_percent_encoded_path_is_routed_decoded_and_signed_as_sent() -> None:
    """Twilio signs the URL as configured; the route is the decoded path (as aiohttp does)."""
    encoded = "/webhooks/twilio/%77hatsapp?tenant=a%20b"
    async with running() as harness:
        body, signature = harness.signed("escaped", path=encoded)
        async with connection(harness.server) as client:
            await client.send(post(body, signature, path=encoded))
            assert (await client.response()).status == 200
            # Signed for the decoded spelling instead: not the URL Twilio called, so refused.
            body, signature = harness.signed(
                "decoded", path="/webhooks/twilio/whatsapp?tenant=a%20b"
            )
            await client.send(post(body, signature, path=encoded))
            assert (await client.response()).status == 403
        assert harness.texts() == ["escaped"]


async def test_a_chunked_body_sent_in_dribs_is_reassembled() -> None:
    async with running() as harness:
        body, signature = harness.signed("slowly, chunk by chunk")
        framed = post(body, signature, chunks=[3, 3, 50])
        async with connection(harness.server) as client:
            for at in range(0, len(framed), 5):  # split inside sizes, CRLFs and trailers
                await client.send(framed[at : at + 5])
                await asyncio.sleep(0)
            assert (await client.response()).status == 200
        assert harness.texts() == ["slowly, chunk by chunk"]


async def test_a_chunked_body_over_the_limit_is_413_and_the_connection_closes() -> None:
    async with running(max_body_bytes=1024) as harness:
        raw = head(f"Host: {HOST}", "Content-Type: application/x-www-form-urlencoded")
        raw = raw[:-2] + b"Transfer-Encoding: chunked\r\n\r\n"
        body = b"".join(b"200\r\n" + b"a" * 0x200 + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"
        answer, closed = await exchange(harness.server, raw + body)
        assert answer.status == 413
        assert answer.header("Connection") == "close"
        assert closed
        assert harness.core.stats.refused_size == 1


MALFORMED_CHUNKS = {
    "size-not-hex": b"zz\r\nabc\r\n0\r\n\r\n",
    "size-negative": b"-3\r\nabc\r\n0\r\n\r\n",
    "size-empty": b"\r\nabc\r\n0\r\n\r\n",
    "size-too-long": b"1" + b"0" * 16 + b"\r\nabc\r\n0\r\n\r\n",
    "no-crlf-after-data": b"3\r\nabcdef\r\n0\r\n\r\n",
    "size-line-endless": b"3" + b";x" * 2000 + b"\r\nabc\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("body", MALFORMED_CHUNKS.values(), ids=list(MALFORMED_CHUNKS))
async def test_malformed_chunk_framing_is_400_and_the_connection_closes(body: bytes) -> None:
    async with running() as harness:
        raw = head(
            f"Host: {HOST}",
            "Content-Type: application/x-www-form-urlencoded",
            "Transfer-Encoding: chunked",
        )
        answer, closed = await exchange(harness.server, raw + body)
        assert answer.status == 400
        assert "code" in answer.json()
        assert answer.header("Connection") == "close"
        assert closed
        assert harness.received == []


# -- 3. Expect: 100-continue -----------------------------------------------------------------


async def test_100_continue_comes_before_the_body_is_sent_then_200() -> None:
    async with running() as harness:
        body, signature = harness.signed("may I?")
        raw = post(body, signature, extra=["Expect: 100-continue"])
        head_part = raw[: -len(body)]
        async with connection(harness.server) as client:
            await client.send(head_part)
            assert await client.head_line() == b"HTTP/1.1 100 Continue\r\n\r\n"
            assert harness.received == []
            await client.send(body)
            assert (await client.response()).status == 200
        assert harness.texts() == ["may I?"]


async def test_100_continue_with_the_body_sent_anyway_is_not_needed() -> None:
    async with running() as harness:
        body, signature = harness.signed("did not wait")
        async with connection(harness.server) as client:
            await client.send(post(body, signature, extra=["Expect: 100-continue"]))
            answer = await client.response()
            assert answer.status == 200  # no 100 before it: the body was already there


async def test_a_declared_length_over_the_limit_gets_413_and_no_100() -> None:
    async with running(max_body_bytes=1024) as harness:
        raw = head(
            f"Host: {HOST}",
            "Content-Type: application/x-www-form-urlencoded",
            "Content-Length: 5000",
            "Expect: 100-continue",
        )
        async with connection(harness.server) as client:
            await client.send(raw)
            answer = await client.response()  # the first status line is the 413, not a 100
            assert answer.status == 413
            assert answer.header("Connection") == "close"
            assert await client.closed()


# -- 4. keep-alive and pipelining ------------------------------------------------------------


async def test_pipelined_requests_in_one_write_are_answered_in_order_on_one_connection() -> None:
    async with running() as harness:
        requests = [harness.signed(text) for text in ("one", "two", "three")]
        forged = post(requests[0][0], "forged")
        healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        raw = b"".join(
            [
                post(*requests[0]),
                forged,
                post(*requests[1]),
                healthz,
                post(*requests[2], chunks=[10]),
            ]
        )
        async with connection(harness.server) as client:
            await client.send(raw)
            answers = [await client.response() for _ in range(5)]
            assert [a.status for a in answers] == [200, 403, 200, 200, 200]
            assert answers[3].json() == {"status": "ok"}
            assert all(a.header("Connection") is None for a in answers)
        assert harness.texts() == ["one", "two", "three"]
        assert len(harness.server.connections) <= 1  # all of it on the one connection


async def test_connection_close_is_answered_with_close_and_the_server_closes() -> None:
    async with running() as harness:
        body, signature = harness.signed("last one")
        answer, closed = await exchange(
            harness.server, post(body, signature, extra=["Connection: close"])
        )
        assert (answer.status, answer.header("Connection")) == (200, "close")
        assert closed


async def test_http10_closes_unless_it_asks_for_keep_alive() -> None:
    async with running() as harness:
        body, signature = harness.signed("old client")
        answer, closed = await exchange(harness.server, post(body, signature, version="HTTP/1.0"))
        assert (answer.status, answer.header("Connection")) == (200, "close")
        assert closed
        kept = post(
            *harness.signed("old client, kept"),
            version="HTTP/1.0",
            extra=["Connection: keep-alive"],
        )
        async with connection(harness.server) as client:
            await client.send(kept)
            answer = await client.response()
            assert (answer.status, answer.header("Connection")) == (200, "keep-alive")
            await client.send(b"GET /healthz HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            assert (await client.response()).json() == {"status": "ok"}
            await client.send(b"GET /healthz HTTP/1.0\r\n\r\n")
            answer = await client.response()
            assert answer.header("Connection") == "close"
            assert await client.closed()
        assert harness.texts() == ["old client", "old client, kept"]


async def test_head_healthz_has_the_headers_and_no_body() -> None:
    async with running() as harness, connection(harness.server) as client:
        await client.send(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await client.response(head_only=True)
        assert answer.status == 200
        assert int(answer.header("Content-Length") or 0) > 0
        # Were a body sent, it would be read as the next answer's status line.
        await client.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await client.response()).json() == {"status": "ok"}


async def test_a_refused_route_with_a_body_keeps_the_connection_when_the_body_is_here() -> None:
    async with running() as harness, connection(harness.server) as client:
        await client.send(b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        answer = await client.response()
        assert answer.status == 404
        assert answer.header("Connection") is None
        await client.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await client.response()).status == 200


# -- 5. timeouts -----------------------------------------------------------------------------


async def test_an_idle_connection_is_closed() -> None:
    async with running(ServerLimits(idle_timeout=0.2)) as harness:
        async with connection(harness.server) as client:
            assert await client.closed()
        async with connection(harness.server) as client:  # idle after an answer, too
            await client.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await client.response()).status == 200
            assert await client.closed()


async def test_a_head_sent_half_way_is_closed_by_the_same_timer() -> None:
    async with (
        running(ServerLimits(idle_timeout=0.2)) as harness,
        connection(harness.server) as client,
    ):
        await client.send(f"POST {PATH} HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ".encode())
        assert await client.closed()


async def test_a_head_dribbled_byte_by_byte_does_not_restart_the_timer() -> None:
    """Each byte arrives well within the timer, the whole head never does: still closed.

    The drip would take 100 s; the hang guard (30 s) fails the test if every
    byte restarted the timer.
    """
    async with (
        running(ServerLimits(idle_timeout=0.3)) as harness,
        connection(harness.server) as client,
    ):
        drip = f"POST {PATH} HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: " + "a" * 10_000

        async def dribble() -> None:
            with suppress(ConnectionError):
                for char in drip:
                    await client.send(char.encode())
                    await asyncio.sleep(0.01)

        task = asyncio.create_task(dribble())
        try:
            assert await client.closed()
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task


async def test_a_body_that_stalls_is_answered_408_and_closed() -> None:
    async with running(body_timeout=0.2) as harness:
        body, signature = harness.signed("stalled")
        raw = post(body, signature)
        async with connection(harness.server) as client:
            await client.send(raw[:-10])
            answer = await client.response()
            assert answer.status == 408
            assert answer.header("Connection") == "close"
            assert await client.closed()
        assert harness.core.stats.timeouts == 1
        assert harness.received == []


async def test_a_chunked_body_that_stalls_is_answered_408() -> None:
    async with running(body_timeout=0.2) as harness:
        body, signature = harness.signed("stalled in chunks")
        raw = post(body, signature, chunks=[5])
        async with connection(harness.server) as client:
            await client.send(raw[: raw.index(b"\r\n\r\n") + 4 + 12])
            answer = await client.response()
            assert (answer.status, answer.header("Connection")) == (408, "close")
            assert await client.closed()


# -- 6. disconnects --------------------------------------------------------------------------


async def test_clients_that_leave_mid_body_or_mid_head_do_not_disturb_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running() as harness:
        body, signature = harness.signed("abandoned")
        raw = post(body, signature)
        for partial in (raw[:-10], raw[:30], raw[: raw.index(b"\r\n\r\n") + 2]):
            client = await Client.open(harness.server)
            await client.send(partial)
            await client.close()
        chunked_raw = post(body, signature, chunks=[5])
        client = await Client.open(harness.server)
        await client.send(chunked_raw[: chunked_raw.index(b"\r\n\r\n") + 24])
        await client.close()
        # A client that half-closes mid-body (shutdown of its writing side) is also gone.
        async with connection(harness.server) as client:
            await client.send(raw[:-10])
            client.writer.write_eof()
            assert await client.closed()
        await assert_still_serving(harness, "next one")
        assert harness.texts() == ["next one"]
    no_errors_logged(caplog)


async def test_a_client_that_leaves_while_its_request_is_handled_does_not_disturb_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hold = asyncio.Event()
    async with running(hold=hold) as harness:
        client = await Client.open(harness.server)
        await client.send(post(*harness.signed("handled after it left")))
        await wait_for(lambda: len(harness.received) == 1)
        await client.close()
        hold.set()  # its answer goes nowhere; the connection is let go
        await wait_for(lambda: not harness.server.connections)
        body, signature = harness.signed("then another")
        answer, _ = await exchange(
            harness.server, post(body, signature, extra=["Connection: close"])
        )
        assert answer.status == 200
        assert harness.texts() == ["handled after it left", "then another"]
    no_errors_logged(caplog)


async def wait_for(condition: Any) -> None:
    async with asyncio.timeout(HANG):
        while not condition():
            await asyncio.sleep(0.01)


# -- 7. graceful close -----------------------------------------------------------------------


async def test_close_answers_the_request_in_flight_closes_idle_ones_and_refuses_new_ones() -> None:
    hold = asyncio.Event()
    async with running(hold=hold) as harness:
        server = harness.server
        busy = await Client.open(server)
        idle = await Client.open(server)
        kept = await Client.open(server)
        try:
            await kept.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await kept.response()).status == 200  # idle, between two requests
            await busy.send(post(*harness.signed("in flight")))
            await wait_for(lambda: len(harness.received) == 1)

            closing = asyncio.create_task(server.close())
            await wait_for(lambda: server.stopping)
            assert await idle.closed()
            assert await kept.closed()
            with pytest.raises(ConnectionRefusedError):
                await Client.open(server)
            assert not closing.done()  # it waits for the request in flight

            hold.set()
            answer = await busy.response()
            assert (answer.status, answer.header("Connection")) == (200, "close")
            assert await busy.closed()
            async with asyncio.timeout(HANG):
                await closing
        finally:
            for client in (busy, idle, kept):
                await client.close()


# -- 8. arbitrary bytes never crash it -------------------------------------------------------


class ServerThread:
    """The server on an event loop of its own thread, for a synchronous Hypothesis test.

    The loop's exception handler records what would otherwise only be logged:
    an exception escaping a protocol callback is a crash of that connection.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.crashes: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _, context: self.crashes.append(context))
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._cm = running(ServerLimits(idle_timeout=2.0), body_timeout=1.0)
        self.harness: Harness

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self.harness = asyncio.run_coroutine_threadsafe(self._cm.__aenter__(), self.loop).result(
            HANG
        )
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(
                self._cm.__aexit__(None, None, None), self.loop
            ).result(HANG)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(HANG)
            self.loop.close()

    def exchange(self, data: bytes) -> bytes:
        """Write ``data``, half-close, and read until the server closes (a reset counts)."""
        received = bytearray()
        with socket.create_connection(("127.0.0.1", self.harness.server.port), HANG) as sock:
            with suppress(ConnectionError):
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            with suppress(ConnectionResetError):
                while chunk := sock.recv(65536):
                    received += chunk
        return bytes(received)


FRAGMENTS = [
    b"GET ",
    b"POST ",
    b"HEAD ",
    PATH.encode(),
    b"/healthz",
    b" HTTP/1.1",
    b" HTTP/1.0",
    b" HTTP/2.0",
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b":",
    b",",
    b"Host: x",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: ",
    b"Expect: 100-continue",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Content-Type: application/x-www-form-urlencoded",
    b"0",
    b"5",
    b"ffffffff",
    b"12",
    b";ext=1",
    b"0\r\n\r\n",
    b"hello",
    b"\x00",
    b"\xff",
    b"%",
    b"%00",
    b"?a=b",
]


def mutated(valid: bytes) -> st.SearchStrategy[bytes]:
    """``valid`` with a few bytes replaced, inserted or removed, or cut short."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(data)))
            action = draw(st.sampled_from(["replace", "insert", "delete", "cut", "fragment"]))
            if action == "replace" and at < len(data):
                data[at] = draw(st.integers(0, 255))
            elif action == "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
            elif action == "delete":
                del data[at : at + draw(st.integers(1, 8))]
            elif action == "cut":
                del data[at:]
            else:
                data[at:at] = draw(st.sampled_from(FRAGMENTS))
        return bytes(data)

    return build()


def assert_sane(answer: bytes) -> None:
    """Nothing, or answers that each start with an HTTP/1.1 status line (100 Continue included)."""
    if answer:
        assert STATUS_LINE.match(answer), answer[:80]


def test_arbitrary_bytes_never_crash_the_server(caplog: pytest.LogCaptureFixture) -> None:
    with ServerThread() as served:
        body, signature = served.harness.signed("a valid one")
        valid = post(body, signature)
        chunked_valid = post(body, signature, chunks=[9, 40])
        inputs = st.one_of(
            st.binary(max_size=300),
            st.lists(st.sampled_from(FRAGMENTS), max_size=30).map(b"".join),
            mutated(valid),
            mutated(chunked_valid),
            mutated(valid + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
        )

        then_valid = post(body, signature, extra=["Connection: close"])
        statuses: list[bytes] = []

        @settings(
            max_examples=max(150, settings().max_examples // 20),
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(inputs)
        def never_crashes(data: bytes) -> None:
            answer = served.exchange(data)
            assert_sane(answer)
            statuses.append(answer[9:12])
            assert not served.crashes, served.crashes
            after = served.exchange(then_valid)
            assert after.startswith(b"HTTP/1.1 200 OK\r\n"), after[:200]

        never_crashes()
    assert not served.crashes, served.crashes
    no_errors_logged(caplog)
    assert len(statuses) >= 150
    # Both the server's own refusals and the core's answers (403 and others) were reached.
    assert b"400" in statuses
    assert set(statuses) & {b"200", b"403", b"404", b"405", b"415"}


# -- 9. back-pressure ------------------------------------------------------------------------


def only_connection(server: WebhookServer) -> Any:
    [conn] = server.connections
    return conn


async def small_window_client(server: WebhookServer) -> Client:
    """A client whose socket takes few answers in: the server's writes soon push back."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
    await wait_for(lambda: server.connections)
    return Client(reader, writer)


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("mix", ["healthz", "signed-and-healthz"])
async def test_a_client_that_pipelines_without_reading_is_not_buffered_without_bound(
    mix: str,
) -> None:
    """Megabytes of pipelined requests, no answer read: the server stops reading and holds
    a bounded input and output per connection; once the client reads, all is answered."""
    limits = ServerLimits()
    async with running(limits) as harness:
        body, signature = harness.signed("pushed hard")
        unit = HEALTHZ if mix == "healthz" else post(body, signature) + HEALTHZ * 10
        per_unit = 1 if mix == "healthz" else 11
        # About 4 MB of answers (~150 bytes each), more than the sockets' buffers hold.
        units = (1_000_000 if mix == "healthz" else 2_500_000) // len(unit)
        count = units * per_unit
        client = await small_window_client(harness.server)
        try:
            conn = only_connection(harness.server)
            # The kernel holds little of the server's output either: what waits is the server's.
            conn.transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
            )
            client.writer.write(unit * units)
            largest_in = largest_out = 0
            stable, last = 0, -1
            async with asyncio.timeout(HANG):  # until the server makes no more progress
                while stable < 25:
                    await asyncio.sleep(0.02)
                    largest_in = max(largest_in, len(conn.buffer))
                    largest_out = max(largest_out, conn.transport.get_write_buffer_size())
                    progress = len(conn.buffer) + conn.transport.get_write_buffer_size()
                    progress += harness.core.stats.handled + harness.core.stats.duplicates
                    stable = stable + 1 if progress == last else 0
                    last = progress
            assert conn._reading_paused, "the server kept reading a client that does not read"
            # A head's worth, plus the few socket reads (256 KiB each) that land while a body
            # is awaited and before the pause: bounded, not the megabytes sent.
            assert largest_in <= limits.max_head_bytes + 3 * 256 * 1024
            assert largest_out <= 256 * 1024
            answers = 0
            async with asyncio.timeout(HANG):
                while answers < count:
                    answer = await client.response()
                    assert answer.status == 200
                    answers += 1
            if mix != "healthz":
                assert harness.texts() == ["pushed hard"]  # once; the rest were duplicates
                assert harness.core.stats.duplicates == units - 1
            await client.send(HEALTHZ)  # the connection is still in step
            assert (await client.response()).json() == {"status": "ok"}
        finally:
            await client.close()


async def test_after_a_refusal_the_server_lingers_while_the_client_still_sends() -> None:
    """Refused mid-body: the answer and the end of the server's side are sent, what still
    comes is dropped (a close with unread input would reset the connection, and a client
    still sending could lose its 413), and the connection ends when the client's does."""
    async with running() as harness, connection(harness.server) as client:
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: {HOST}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {1 << 20}\r\n\r\n"
        ).encode()
        await client.send(head + b"a" * 10_000)
        answer = await client.response()
        assert answer.status == 413
        assert answer.header("Connection") == "close"
        async with asyncio.timeout(HANG):
            assert await client.reader.read() == b""  # the server's side has ended
        assert len(harness.server.connections) == 1  # still reading what the client sends
        await client.send(b"b" * 200_000)
        client.writer.write_eof()
        await wait_for(lambda: not harness.server.connections)
        assert harness.core.stats.refused_size == 1


async def test_a_client_that_takes_no_answer_for_the_idle_timeout_is_disconnected() -> None:
    """Writing paused for ``idle_timeout``: the connection and its buffers are let go."""
    async with running(ServerLimits(idle_timeout=0.3)) as harness:
        client = await small_window_client(harness.server)
        try:
            conn = only_connection(harness.server)
            conn.transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
            )
            client.writer.write(HEALTHZ * 30_000)  # far more answers than the sockets hold
            await wait_for(lambda: conn._writing_paused or not harness.server.connections)
            await wait_for(lambda: not harness.server.connections)
            assert conn.transport.is_closing()
            # The client finds the connection gone once it reads what it was sent.
            with contextlib.suppress(ConnectionError):
                async with asyncio.timeout(HANG):
                    while await client.reader.read(1 << 16):
                        pass
        finally:
            await client.close()
        # The server still serves a client that reads.
        async with connection(harness.server) as other:
            await other.send(HEALTHZ)
            assert (await other.response()).status == 200


async def test_many_pipelined_constant_answers_are_all_written() -> None:
    """Constant answers (``/healthz``, 404) need no task: thousands in one buffer still answer."""
    async with running() as harness, connection(harness.server) as client:
        count = 5000
        await client.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * count)
        for _ in range(count):
            assert (await client.response()).status == 200
        await client.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await client.response()).status == 200
        assert await client.closed()


# -- 10. the malformed-request log ---------------------------------------------------------


async def test_malformed_requests_are_logged_a_few_at_a_time_and_without_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ratatosk.http")
    async with running() as harness:
        token = harness.fake.auth_token
        marker = "value-never-logged"
        raws = [
            head(f"Host: {HOST}", f"Authorization: {token}", f" {marker}"),  # obs-fold
            head(f"Host: {HOST}", f"X-Auth: {token}\x01{marker}"),  # a control character
            head(f"Host: {marker}", f"Host: {token}"),  # two Hosts
            head(f"Host: {HOST}", f"Content-Length: {marker}"),
        ]
        for index in range(20):
            answer, _ = await exchange(harness.server, raws[index % len(raws)])
            assert answer.status == 400
        assert harness.core.stats.bad_request == 20
    lines = [r.getMessage() for r in caplog.records if r.name == "ratatosk.http"]
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "ratatosk.http")
    assert 1 <= len(lines) <= MALFORMED_LOG_BURST
    assert all(line.startswith("refused a malformed HTTP request from 127.0.0.1") for line in lines)
    assert "only counted" in lines[-1]
    for line in lines:
        assert token not in line
        assert marker not in line


# -- the same server on uvloop (``ratatosk serve`` runs on it when installed) ----------------

ON_UVLOOP: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
    "pipelining": test_pipelined_requests_in_one_write_are_answered_in_order_on_one_connection,
    "chunks-in-dribs": test_a_chunked_body_sent_in_dribs_is_reassembled,
    "100-continue": test_100_continue_comes_before_the_body_is_sent_then_200,
    "body-stall": test_a_body_that_stalls_is_answered_408_and_closed,
    "graceful-close": (
        test_close_answers_the_request_in_flight_closes_idle_ones_and_refuses_new_ones
    ),
    "constant-flood": test_many_pipelined_constant_answers_are_all_written,
    # uvloop delivers several reads before a woken body reader runs: the case that once
    # let the input buffer grow there while asyncio's loop stayed bounded.
    "back-pressure-signed": functools.partial(
        test_a_client_that_pipelines_without_reading_is_not_buffered_without_bound,
        "signed-and-healthz",
    ),
    "back-pressure-healthz": functools.partial(
        test_a_client_that_pipelines_without_reading_is_not_buffered_without_bound, "healthz"
    ),
}


@pytest.mark.parametrize("case", ON_UVLOOP.values(), ids=list(ON_UVLOOP))
def test_the_server_behaves_alike_on_uvloop(case: Callable[[], Coroutine[Any, Any, None]]) -> None:
    uvloop.run(case())
