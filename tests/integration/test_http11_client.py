"""The HTTP/1.1 client against a scripted asyncio server on loopback: framing, reuse, failures.

The server answers each request with byte pieces written one at a time (so
the client meets answers split anywhere), and records which connection each
request came on, so reuse is observed from the server's side.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import attrs
import pytest

from ratatosk.adapters.http11 import Http11Client, HttpError
from ratatosk.adapters.twilio_http import Http11MessagingApi
from ratatosk.ports import CreateMessageRequest, TransportError

CLOSE = b"<close>"  # a piece that closes the connection instead of writing
HOLD = b"<hold>"  # a piece that writes nothing more and keeps the connection open
TOKEN = "http11-secret-token-424242"


@attrs.define
class Seen:
    connection: int
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@attrs.define
class Server:
    """What the scripted server saw: requests, and connections the client closed (by number)."""

    url: str
    seen: list[Seen]
    eofs: list[int]
    connections: int = 0


Answer = Callable[[int, Seen], Sequence[bytes]]


def ok(body: bytes = b'{"ok": true}', extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


Start = Callable[[Answer], Awaitable[Server]]


@pytest.fixture
async def serve() -> AsyncIterator[Start]:
    """Starts scripted servers on loopback; all closed at the end of the test."""
    servers: list[asyncio.Server] = []
    hold = asyncio.Event()

    async def start(answer: Answer) -> Server:
        state = Server("", [], [])

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            state.connections += 1
            number = state.connections
            try:
                while True:
                    try:
                        head = await reader.readuntil(b"\r\n\r\n")
                    except asyncio.IncompleteReadError:
                        state.eofs.append(number)
                        return
                    lines = head.decode("latin-1").split("\r\n")
                    method, target, _ = lines[0].split(" ")
                    headers = {}
                    for line in lines[1:]:
                        if line:
                            name, _, value = line.partition(":")
                            headers[name.lower()] = value.strip()
                    body = await reader.readexactly(int(headers.get("content-length", "0")))
                    seen = Seen(number, method, target, headers, body)
                    state.seen.append(seen)
                    for piece in answer(len(state.seen), seen):
                        if piece == CLOSE:
                            return
                        if piece == HOLD:
                            await hold.wait()
                            return
                        writer.write(piece)
                        await writer.drain()
                        await asyncio.sleep(0.002)  # most likely a separate read for the client
            except ConnectionError:
                return
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        return state

    yield start
    hold.set()
    for server in servers:
        server.close()
        await server.wait_closed()


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("size", [1, 7, 4096])
async def test_a_content_length_body_arrives_whole_however_it_is_split(
    serve: Start, size: int
) -> None:
    body = b'{"sid": "SM' + b"7" * 300 + b'"}'
    server = await serve(lambda _, __: pieces(ok(body, "Retry-After: 3\r\n"), size))
    client = Http11Client(server.url, headers={"Authorization": "Basic x"})
    try:
        response = await client.request("POST", "/a?b=c", b"To=1", content_type="text/plain")
    finally:
        await client.close()
    assert (response.status, response.body) == (200, body)
    assert response.headers["retry-after"] == "3"  # names looked up in lower case
    [seen] = server.seen
    assert (seen.method, seen.target, seen.body) == ("POST", "/a?b=c", b"To=1")
    assert seen.headers["content-type"] == "text/plain"
    assert seen.headers["authorization"] == "Basic x"
    assert seen.headers["host"] == server.url.removeprefix("http://")


@pytest.mark.parametrize("size", [1, 5, 4096])
async def test_a_chunked_body_is_decoded_with_extensions_and_trailers(
    serve: Start, size: int
) -> None:
    answer = (
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n"
        b"1A\r\n" + b"z" * 26 + b"\r\n"
        b"0\r\nX-Trailer: yes\r\n\r\n"
    )
    server = await serve(lambda n, _: pieces(answer if n == 1 else ok(b"second"), size))
    client = Http11Client(server.url)
    try:
        first = await client.request("GET", "/chunked")
        second = await client.request("GET", "/again")
    finally:
        await client.close()
    assert (first.status, first.body) == (201, b"hello" + b"z" * 26)
    assert second.body == b"second"  # the chunked answer ended exactly where it should
    assert [s.connection for s in server.seen] == [1, 1]


async def test_idle_connections_are_reused_and_the_pool_is_bounded(serve: Start) -> None:
    server = await serve(lambda n, _: [ok(str(n).encode())])
    client = Http11Client(server.url, max_connections=2)
    try:
        answers = await asyncio.gather(*(client.request("GET", f"/{i}") for i in range(12)))
        await client.request("GET", "/after")
    finally:
        await client.close()
    assert sorted(int(a.body) for a in answers) == list(range(1, 13))
    assert server.connections <= 2
    assert len(server.seen) == 13


@pytest.mark.parametrize(
    "first",
    [ok(extra="Connection: close\r\n"), b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"],
    ids=["connection close", "HTTP/1.0"],
)
async def test_an_answer_that_ends_the_connection_is_never_reused(
    serve: Start, first: bytes
) -> None:
    server = await serve(lambda n, _: [first] if n == 1 else [ok()])
    client = Http11Client(server.url)
    try:
        await client.request("GET", "/one")
        await client.request("GET", "/two")
    finally:
        await client.close()
    assert [s.connection for s in server.seen] == [1, 2]


async def test_a_body_until_the_end_of_the_connection(serve: Start) -> None:
    server = await serve(lambda _, __: [b"HTTP/1.1 200 OK\r\n\r\nall of ", b"it", CLOSE])
    client = Http11Client(server.url)
    try:
        response = await client.request("GET", "/")
    finally:
        await client.close()
    assert response.body == b"all of it"


async def test_no_body_for_204_and_interim_answers_are_skipped(serve: Start) -> None:
    answers = [b"HTTP/1.1 204 No Content\r\n\r\n", b"HTTP/1.1 100 Continue\r\n\r\n" + ok()]
    server = await serve(lambda n, _: [answers[n - 1]])
    client = Http11Client(server.url)
    try:
        empty = await client.request("DELETE", "/x")
        after = await client.request("GET", "/y")
    finally:
        await client.close()
    assert (empty.status, empty.body) == (204, b"")
    assert (after.status, after.body) == (200, b'{"ok": true}')


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + b"a" * 1024,
        b"HTTP/1.1 200 OK\r\n\r\n" + b"a" * 1500,
    ],
    ids=["content-length", "chunked", "until close"],
)
async def test_an_answer_over_the_cap_is_refused(serve: Start, answer: bytes) -> None:
    server = await serve(lambda _, __: [answer, HOLD])
    client = Http11Client(server.url, max_body=1000)
    try:
        with pytest.raises(HttpError, match="larger than 1000 bytes") as raised:
            await client.request("GET", "/big")
    finally:
        await client.close()
    assert raised.value.sent


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 OK\r\n\r\n",
        b"SPDY/3 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
    ],
    ids=[
        "no status code",
        "not HTTP",
        "header without colon",
        "two lengths",
        "negative length",
        "bad chunk size",
        "chunk overrun",
    ],
)
async def test_a_malformed_answer_is_an_error_after_sending(serve: Start, answer: bytes) -> None:
    server = await serve(lambda _, __: [answer, HOLD])
    client = Http11Client(server.url)
    try:
        with pytest.raises(HttpError, match="malformed answer") as raised:
            await client.request("GET", "/")
    finally:
        await client.close()
    assert raised.value.sent
    assert not raised.value.timeout


async def test_silence_ends_at_the_read_timeout_as_may_have_been_processed(serve: Start) -> None:
    server = await serve(lambda _, __: [b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", HOLD])
    client = Http11Client(server.url, read=0.2, total=30.0)
    try:
        with pytest.raises(HttpError) as raised:
            await client.request("GET", "/")
    finally:
        await client.close()
    assert raised.value.sent
    assert raised.value.timeout


async def test_a_dead_port_fails_before_sending() -> None:
    client = Http11Client(f"http://127.0.0.1:{_dead_port()}")
    try:
        with pytest.raises(HttpError, match="cannot connect") as raised:
            await client.request("GET", "/")
    finally:
        await client.close()
    assert not raised.value.sent


async def test_a_kept_alive_connection_closed_by_the_server_while_idle_is_not_used(
    serve: Start,
) -> None:
    server = await serve(lambda _, __: [ok(), CLOSE])  # answers, then closes (no Connection header)
    client = Http11Client(server.url)
    try:
        await client.request("POST", "/one", b"x")
        pool = client._pool
        assert pool is not None
        while not all(connection.closed for connection in pool._idle):
            await asyncio.sleep(0.01)  # until the server's close reaches the client
        second = await client.request("POST", "/two", b"y")
    finally:
        await client.close()
    assert second.status == 200
    assert [s.connection for s in server.seen] == [1, 2]


async def test_a_reused_connection_closed_before_any_answer_repeats_a_get(serve: Start) -> None:
    # The second request, on the kept-alive connection, is read and dropped without a byte back.
    server = await serve(lambda n, _: [CLOSE] if n == 2 else [ok()])
    client = Http11Client(server.url)
    try:
        await client.request("GET", "/warm")
        repeated = await client.request("GET", "/get")
    finally:
        await client.close()
    assert repeated.status == 200
    assert [(s.target, s.connection) for s in server.seen] == [
        ("/warm", 1),
        ("/get", 1),
        ("/get", 2),  # on a fresh connection
    ]


async def test_a_post_dropped_on_a_reused_connection_is_never_repeated(serve: Start) -> None:
    server = await serve(lambda n, _: [CLOSE] if n == 2 else [ok()])
    api = Http11MessagingApi("AC" + "0" * 32, TOKEN, base_url=server.url)
    request = CreateMessageRequest(to="whatsapp:+15550002222", from_="whatsapp:+14155238886")
    try:
        await api._http.request("GET", "/warm")  # the connection the POST will reuse
        with pytest.raises(TransportError) as raised:
            await api.create_message(request)
    finally:
        await api.close()
    assert raised.value.maybe_delivered  # Twilio may have created it: the caller reconciles
    assert [s.method for s in server.seen] == ["GET", "POST"]
    assert TOKEN not in str(raised.value) + repr(api)


async def test_idle_connections_close_after_the_idle_timeout(serve: Start) -> None:
    server = await serve(lambda _, __: [ok()])
    client = Http11Client(server.url, idle_timeout=0.05)
    try:
        await client.request("GET", "/")
        for _ in range(500):
            if server.eofs:
                break
            await asyncio.sleep(0.01)
    finally:
        await client.close()
    assert server.eofs == [1]


def test_a_header_value_with_a_line_break_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="Authorization") as raised:
        Http11Client("http://127.0.0.1:1", headers={"Authorization": f"Basic {TOKEN}\r\nX: y"})
    assert TOKEN not in str(raised.value)
    with pytest.raises(ValueError, match="http:// or https://"):
        Http11Client("ftp://example.com")
