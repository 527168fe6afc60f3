"""The package's own HTTP/1.1 server for the webhook core (adapters layer; ADR 0027).

``ratatosk serve`` answers Twilio's webhooks here rather than on aiohttp's
server: a request goes from the socket to
:class:`~ratatosk.adapters.webhook_core.WebhookCore` with one parse of its
head and nothing else built, and each constant answer is bytes made at
start-up (``Reply.http11_head``). aiohttp's request, router, middleware and
response objects cost more per webhook than the gate itself (``make bench``).
The aiohttp app (:mod:`ratatosk.adapters.webhook_server`) and the ASGI app
stay for those who mount the webhooks on a server of their own.

A server that faces the network must refuse what aiohttp's parser refuses,
and says so with a status and a closed connection rather than guessing:

* the head (request line and headers) over ``max_head_bytes`` or with more
  than ``max_headers`` fields -> 431; a malformed request line, header name,
  control character, folded line, missing or repeated ``Host`` -> 400; a
  version other than HTTP/1.0 or 1.1 -> 505;
* the body's length from ``Content-Length`` (digits only; repeated values
  must agree) or ``Transfer-Encoding: chunked``, never both (a request
  smuggled past a proxy relies on them disagreeing) -> 400; another transfer
  coding -> 501; ``Expect`` other than ``100-continue`` -> 417;
* every answer that leaves a body unread, or follows a refusal of the
  framing, closes the connection: the next bytes cannot be trusted to start
  a request.

Connections are kept alive (HTTP/1.1, or 1.0 with ``keep-alive``) and
requests pipelined on one are answered in order, one at a time. A
connection that has not delivered a whole head within ``idle_timeout`` of
opening or of its last answer is closed, which also bounds heads sent
slowly; a slow body is the gate's ``body_timeout`` (408); a client that
takes none of its answers for ``idle_timeout`` is disconnected. Reading
pauses while a request is handled and more than ``max_head_bytes`` wait
behind it, and while the client does not read its answers. Malformed requests are
logged as one WARNING line each, a few a minute at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl as ssl_module
import time
from email.utils import formatdate
from typing import Any, Final, cast
from urllib.parse import unquote

import attrs

from .log_budget import LogBudget
from .webhook_core import (
    BodyTooLarge,
    MalformedBody,
    Reply,
    Route,
    WebhookCore,
    WebhookStats,
)

log = logging.getLogger("ratatosk.http")

_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Control characters other than tab, bare CR and LF included: never inside a head's line.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: An origin-form target: a slash, then visible ASCII only.
_TARGET: Final = re.compile(r"/[\x21-\x7e]*")
_CHUNK_SIZE: Final = re.compile(rb"[0-9A-Fa-f]{1,8}")
_CHUNK_LINE_LIMIT: Final = 1024
_LINGER_SECONDS: Final = 2.0
_LINGER_BYTES: Final = 1 << 20
#: Answers held for the next flush at most; past it they are written at once, so a
#: flood of pipelined requests meets the transport's back-pressure (pause_writing).
_FLUSH_EVERY: Final = 64
MALFORMED_LOG_BURST: Final = 5
MALFORMED_LOG_PERIOD: Final = 60.0

_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE: Final = b"Connection: close\r\n"
_KEEP_ALIVE: Final = b"Connection: keep-alive\r\n"


@attrs.frozen
class ServerLimits:
    """What one connection may cost the server; the body's limit is the core's."""

    max_head_bytes: int = 16 * 1024
    max_headers: int = 100
    idle_timeout: float = 5.0
    shutdown_timeout: float = 5.0

    def __attrs_post_init__(self) -> None:
        if self.max_head_bytes < 1024 or self.max_headers < 8:
            raise ValueError("max_head_bytes must be at least 1024 and max_headers at least 8")
        if self.idle_timeout <= 0 or self.shutdown_timeout < 0:
            raise ValueError("idle_timeout must be positive and shutdown_timeout not negative")


def _refusal(status: int, message: str) -> Reply:
    return Reply.refusal(status, "BAD_HTTP_REQUEST", message)


_BAD_REQUEST: Final = _refusal(400, "malformed HTTP request")
_NO_HOST: Final = _refusal(400, "an HTTP/1.1 request needs exactly one Host header")
_BAD_LENGTH: Final = _refusal(400, "malformed or conflicting Content-Length")
_BOTH_LENGTHS: Final = _refusal(400, "Content-Length and Transfer-Encoding together")
_HEAD_TOO_LARGE: Final = _refusal(431, "request head too large")
_UNSUPPORTED_CODING: Final = _refusal(501, "only the chunked transfer coding is accepted")
_BAD_EXPECT: Final = _refusal(417, "only Expect: 100-continue is understood")
_BAD_VERSION: Final = _refusal(505, "HTTP/1.0 and HTTP/1.1 are served")
_INTERNAL: Final = Reply.refusal(500, "INTERNAL_ERROR", "the webhook server failed")


class _Refused(Exception):
    """A request the server answers itself, then closes the connection."""

    def __init__(self, reply: Reply, why: str) -> None:
        super().__init__(why)
        self.reply = reply


class _Date:
    """The ``Date`` header line, formatted once a second rather than once a request."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._line = f"Date: {formatdate(second, usegmt=True)}\r\n".encode("ascii")
        return self._line


_DATE: Final = _Date()


class _Request:
    """One parsed request, the core's :class:`~ratatosk.adapters.webhook_core.Incoming`."""

    __slots__ = (
        "_conn",
        "_headers",
        "body_pending",
        "chunked",
        "content_length",
        "expect_continue",
        "head_only",
        "http10",
        "keep_alive",
        "method",
        "path",
        "target",
    )

    def __init__(
        self, conn: _Connection, method: str, target: str, headers: dict[str, list[str]]
    ) -> None:
        self._conn = conn
        self._headers = headers
        self.method = method
        self.target = target  # as sent: the signed URL is built from it
        self.path = target  # decoded, without the query: what routes match
        self.head_only = method == "HEAD"
        self.http10 = False
        self.keep_alive = True
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False
        #: The body (or what is left of it) is still on the connection, unread.
        self.body_pending = False

    @property
    def body_ready(self) -> bool:
        length = self.content_length
        return not self.chunked and (length is None or len(self._conn.buffer) >= length)

    async def read(self) -> bytes:
        if not self.body_pending:
            return b""
        conn = self._conn
        limit = conn.core.max_body_bytes
        if self.expect_continue and not conn.buffer:
            self.expect_continue = False
            conn.write(_CONTINUE)
        if self.chunked:
            body = await conn.read_chunked(limit)
        else:
            length = self.content_length or 0
            if length > limit:
                raise BodyTooLarge
            body = await conn.read_exactly(length)
        self.body_pending = False
        return body

    def header(self, name: str) -> str | None:
        values = self._headers.get(name.lower())
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        return list(self._headers.get(name.lower(), ()))

    def origin(self) -> str:
        scheme = "https" if self._conn.tls else "http"
        return f"{scheme}://{self.header('Host') or ''}"


class _Connection(asyncio.Protocol):
    """One client connection: heads parsed from a buffer, one request handled at a time."""

    def __init__(self, server: WebhookServer) -> None:
        self.server = server
        self.core = server.core
        self.tls = server.tls
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self._limits = server.limits
        self._handling: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        #: The idle timer, and since when the connection waits for a head (None: a request is
        #: in hand). Requests only move the mark; the timer, when it fires, looks at the mark
        #: and either closes or sleeps again until it is due: no timer armed per request.
        self._idle: asyncio.TimerHandle | None = None
        self._idle_since: float | None = None
        self._stalled: asyncio.TimerHandle | None = None  # writing paused since
        self._linger: asyncio.TimerHandle | None = None  # closing after the client's bytes
        self._lingered = 0
        self._reading_paused = False
        self._writing_paused = False
        self._closing = False  # answer what is in progress, then close
        self._eof = False  # the client will send nothing more
        self._lost = False
        self._out: list[bytes] = []  # answers waiting for the server's flush

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)
        self.server.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.server.connections.discard(self)
        for timer in (self._idle, self._stalled, self._linger):
            if timer is not None:
                timer.cancel()
        self._idle = self._stalled = None
        self._wake(ConnectionResetError("the client closed the connection"))

    def data_received(self, data: bytes) -> None:
        if self._linger is not None:  # closing: what still comes is dropped, up to a bound
            self._lingered += len(data)
            if self._lingered > _LINGER_BYTES:
                self.transport.abort()  # type: ignore[union-attr]
            return
        self.buffer += data
        if self._waiter is not None:
            self._wake(None)
        elif self._handling is None:
            self._next()
        # Whatever left more than a head waiting (a request in progress, a body reader
        # not yet woken: uvloop delivers several reads before it runs, or a client that
        # does not read its answers: writing paused): stop reading until it is taken.
        # A body reader that needs more resumes reading itself (_more).
        if len(self.buffer) > self._limits.max_head_bytes and not (
            self._reading_paused or self._lost
        ):
            self._reading_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def eof_received(self) -> bool | None:
        if self._linger is not None:
            return False  # the client is done too: close
        self._eof = True
        self._wake(ConnectionResetError("the client closed its side mid-body"))
        if self._handling is None:
            self._next()
        return True  # half-closed: the answers to what it sent are still written

    def _resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self._stalled is None:
            loop = asyncio.get_running_loop()
            self._stalled = loop.call_later(self._limits.idle_timeout, self._write_stalled)

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        if self._handling is None:
            self._next()

    def _write_stalled(self) -> None:
        """A client that took none of its answers for ``idle_timeout``: let its buffers go."""
        self._stalled = None
        if self._writing_paused and not self._lost:
            self.transport.abort()  # type: ignore[union-attr]

    # -- requests ------------------------------------------------------------

    def _next(self) -> None:
        """Start on the next whole head in the buffer, if any; else wait for one.

        A loop, not a recursion through :meth:`_answer`: thousands of constant
        answers (``/healthz``, 404) pipelined in one buffer are answered one
        after the other without growing the stack.
        """
        while True:
            if self._lost or self._writing_paused or self._closing:
                if self._closing and self._handling is None:
                    self._close()
                return
            buffer = self.buffer
            end = buffer.find(b"\r\n\r\n", 0, self._limits.max_head_bytes + 4)
            if end < 0:
                if self._eof:
                    self._close()
                    return
                if len(buffer) > self._limits.max_head_bytes:
                    self._refuse(_HEAD_TOO_LARGE, "head too large")
                    return
                self._resume_reading()
                if self._idle_since is None:
                    self._arm_idle()
                return
            self._idle_since = None
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            try:
                request = self._parse(head)
            except _Refused as refused:
                self._refuse(refused.reply, str(refused))
                return
            routed = self.core.dispatch(request.method, request.path)
            if not isinstance(routed, Reply):
                self._handling = asyncio.get_running_loop().create_task(
                    self._handle(routed, request)
                )
                return
            self._skip_body(request)
            if not self._answer(request, routed):
                return

    def _parse(self, head: bytes) -> _Request:
        lines = head.decode("latin-1").split("\r\n")
        if len(lines) > self._limits.max_headers + 1:
            raise _Refused(_HEAD_TOO_LARGE, "too many header fields")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise _Refused(_BAD_REQUEST, "malformed request line")
        method, target, version = parts
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            if version.startswith("HTTP/") and len(version) == 8:
                raise _Refused(_BAD_VERSION, "unsupported HTTP version")
            raise _Refused(_BAD_REQUEST, "malformed request line")
        if not _TOKEN.fullmatch(method) or not _TARGET.fullmatch(target):
            raise _Refused(_BAD_REQUEST, "malformed method or target")
        # Routes match the decoded path; the signed URL keeps the target as sent.
        path = target.partition("?")[0]
        if "%" in path:
            path = unquote(path)
            if not _TARGET.fullmatch(path):
                raise _Refused(_BAD_REQUEST, "malformed target")
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not _TOKEN.fullmatch(name) or _CONTROL.search(value):
                raise _Refused(_BAD_REQUEST, "malformed header field")
            key = name.lower()
            stripped = value.strip(" \t")
            if key in headers:
                headers[key].append(stripped)
            else:
                headers[key] = [stripped]
        request = _Request(self, method, target, headers)
        request.path = path
        self._frame(request, version, headers)
        return request

    @staticmethod
    def _frame(request: _Request, version: str, headers: dict[str, list[str]]) -> None:
        """Keep-alive, the body's length and ``Expect``, refusing what is ambiguous."""
        request.http10 = version == "HTTP/1.0"
        hosts = headers.get("host")
        if version == "HTTP/1.1" and (hosts is None or len(hosts) != 1):
            raise _Refused(_NO_HOST, "missing or repeated Host")
        connection = headers.get("connection")
        if connection is not None:
            tokens = {t.strip().lower() for v in connection for t in v.split(",")}
            request.keep_alive = (
                "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
            )
        elif version == "HTTP/1.0":
            request.keep_alive = False
        codings = headers.get("transfer-encoding")
        lengths = headers.get("content-length")
        if codings is not None:
            if lengths is not None or version == "HTTP/1.0":
                raise _Refused(_BOTH_LENGTHS, "Content-Length with Transfer-Encoding")
            names = [t.strip().lower() for v in codings for t in v.split(",")]
            if names[-1] != "chunked":
                raise _Refused(_BAD_REQUEST, "a body of unknown length")
            if len(names) != 1:
                raise _Refused(_UNSUPPORTED_CODING, "unsupported transfer coding")
            request.chunked = True
            request.body_pending = True
        elif lengths is not None:
            values = {t.strip() for v in lengths for t in v.split(",")}
            if len(values) != 1:
                raise _Refused(_BAD_LENGTH, "conflicting Content-Length")
            declared = values.pop()
            if not (declared.isascii() and declared.isdigit()) or len(declared) > 15:
                raise _Refused(_BAD_LENGTH, "malformed Content-Length")
            request.content_length = int(declared)
            request.body_pending = request.content_length > 0
        expect = headers.get("expect")
        if expect is not None:
            if len(expect) != 1 or expect[0].lower() != "100-continue":
                raise _Refused(_BAD_EXPECT, "unknown expectation")
            request.expect_continue = version == "HTTP/1.1" and request.body_pending

    async def _handle(self, route: Route[Any], request: _Request) -> None:
        try:
            reply = await self.core.answer(route, request)
        except ConnectionError:  # the client left while its body was read: nobody to answer
            self._handling = None
            self._close()
            return
        except Exception:
            log.exception("the webhook core failed on a request; answered 500")
            reply = _INTERNAL
        self._handling = None
        self._skip_body(request)
        if self._answer(request, reply):
            self._next()

    def _skip_body(self, request: _Request) -> None:
        """Drop an unread body already buffered; otherwise the connection cannot continue."""
        if not request.body_pending:
            return
        length = request.content_length
        if not request.chunked and length is not None and len(self.buffer) >= length:
            del self.buffer[:length]
            request.body_pending = False
        else:
            request.keep_alive = False

    def _answer(self, request: _Request, reply: Reply) -> bool:
        """Send the answer; True if the connection goes on to the next request."""
        if self._lost:
            return False
        keep = request.keep_alive and not self._closing and not self.server.stopping
        parts = [reply.http11_head, _DATE.line()]
        if not keep:
            parts.append(_CLOSE)
        elif request.http10:  # kept alive because it asked: say the answer agrees
            parts.append(_KEEP_ALIVE)
        parts.append(b"\r\n")
        if not request.head_only:
            parts.append(reply.body)
        self._later(b"".join(parts))
        if not keep:
            self._close(linger=request.body_pending)
        return keep

    def _refuse(self, reply: Reply, why: str) -> None:
        self.server.malformed(self, why)
        self.write(b"".join((reply.http11_head, _DATE.line(), _CLOSE, b"\r\n", reply.body)))
        self._close(linger=True)

    # -- the body ------------------------------------------------------------

    async def _more(self) -> None:
        """Wait for more bytes from the client (reading resumed if it was paused)."""
        if self._lost or self._eof:
            raise ConnectionResetError("the client closed the connection")
        self._resume_reading()
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self, error: Exception | None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    async def read_exactly(self, length: int) -> bytes:
        while len(self.buffer) < length:
            await self._more()
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        return body

    async def _line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n", 0, _CHUNK_LINE_LIMIT)
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 2]
                return line
            if len(self.buffer) >= _CHUNK_LINE_LIMIT:
                raise MalformedBody
            await self._more()

    async def read_chunked(self, limit: int) -> bytes:
        """A chunked body, its size checked against ``limit`` before each chunk is read."""
        chunks: list[bytes] = []
        total = 0
        while True:
            size_text = (await self._line()).split(b";", 1)[0].strip(b" \t")
            if not _CHUNK_SIZE.fullmatch(size_text):
                raise MalformedBody
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > limit:
                raise BodyTooLarge
            chunk = await self.read_exactly(size + 2)
            if not chunk.endswith(b"\r\n"):
                raise MalformedBody
            chunks.append(chunk[:-2])
        trailers = 0
        while await self._line():  # trailer fields, ignored, until the blank line
            trailers += 1
            if trailers > self._limits.max_headers:
                raise MalformedBody
        return b"".join(chunks)

    # -- lifecycle -----------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send now, after any answer still waiting for the flush (order is kept)."""
        self.flush()
        if not self._lost:
            self.transport.write(data)  # type: ignore[union-attr]

    def _later(self, data: bytes) -> None:
        """Send at the server's next flush, with every other answer made meanwhile."""
        if not self._out:
            self.server.flush_later(self)
        self._out.append(data)
        if len(self._out) >= _FLUSH_EVERY:  # a pipelined flood: let the transport push back
            self.flush()

    def flush(self) -> None:
        if self._out:
            out, self._out = self._out, []
            if not self._lost:
                self.transport.write(b"".join(out))  # type: ignore[union-attr]

    def _arm_idle(self) -> None:
        """Start the wait for a head (at opening, after an answer)."""
        loop = asyncio.get_running_loop()
        self._idle_since = loop.time()
        if self._idle is None:
            self._idle = loop.call_later(self._limits.idle_timeout, self._idle_out)

    def _idle_out(self) -> None:
        self._idle = None
        if self._idle_since is None or self._handling is not None or self._lost:
            return  # a request is in hand: the next wait for a head arms the timer again
        loop = asyncio.get_running_loop()
        left = self._idle_since + self._limits.idle_timeout - loop.time()
        if left > 0.001:  # it answered and waited again since: not due yet
            self._idle = loop.call_later(left, self._idle_out)
        else:
            self._close()

    def _close(self, *, linger: bool = False) -> None:
        """Close; with ``linger``, after the client's unread bytes (it may still be sending).

        Closing a socket with unread input makes the kernel reset the
        connection, and a client still sending a body may then lose the answer
        (a 413, a 400) before it reads it. Lingering sends the answer and the
        end of our side, then reads and drops what still comes, for at most
        ``_LINGER_SECONDS`` and ``_LINGER_BYTES``, before closing.
        """
        self.flush()
        transport = self.transport
        if transport is None or self._lost or self._linger is not None:
            return
        if not linger or self._eof or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.buffer.clear()
        self._lingered = 0
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self._resume_reading()
        self._linger = asyncio.get_running_loop().call_later(_LINGER_SECONDS, transport.close)

    @property
    def busy(self) -> bool:
        return self._handling is not None

    def stop_when_idle(self) -> None:
        """At shutdown: close now if idle, else once the answer in progress is written."""
        self._closing = True
        if self._handling is None:
            self._close()

    def abort(self) -> None:
        if self._handling is not None:
            self._handling.cancel()
        if self.transport is not None and not self._lost:
            self.transport.abort()


class WebhookServer:
    """A running webhook server: its ``url`` and ``port``, ``await close()`` to stop it.

    Stopping stops accepting, lets requests in progress be answered (up to
    ``shutdown_timeout``), closes idle connections, then closes the core (its
    last try to mark handled deliveries the store missed).
    """

    def __init__(self, core: WebhookCore, limits: ServerLimits, tls: bool) -> None:
        self.core = core
        self.limits = limits
        self.tls = tls
        self.connections: set[_Connection] = set()
        self.stopping = False
        self.url = ""
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._log_budget = LogBudget(MALFORMED_LOG_BURST, MALFORMED_LOG_PERIOD)
        self._to_flush: list[_Connection] = []

    def flush_later(self, conn: _Connection) -> None:
        """Write ``conn``'s answers once the requests ready in this loop turn are answered.

        Answers made in one turn of the event loop (the requests that arrived
        together) go out together, at the start of the next turn: a client
        that sleeps between answers is woken once per turn rather than once
        per answer. Waking a sleeping process on another core is a system
        call's worth of CPU (an interrupt; much more in a virtual machine),
        paid by the writer. An answer waits at most for the other requests of
        its turn to be handled.
        """
        if not self._to_flush:
            asyncio.get_running_loop().call_soon(self._flush)
        self._to_flush.append(conn)

    def _flush(self) -> None:
        conns, self._to_flush = self._to_flush, []
        for conn in conns:
            conn.flush()

    @property
    def stats(self) -> WebhookStats:
        return self.core.stats

    def malformed(self, conn: _Connection, why: str) -> None:
        self.core.stats.bad_request += 1
        notes = self._log_budget.admit()
        if notes is None:
            return
        peer = conn.transport.get_extra_info("peername") if conn.transport else None
        log.warning(
            "refused a malformed HTTP request from %s (%s)%s",
            str(peer[0] if peer else "?")[:64],
            why,
            "".join("; " + note for note in notes),
        )

    async def close(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.stop_when_idle()
        deadline = time.monotonic() + self.limits.shutdown_timeout
        while any(conn.busy for conn in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        await self.core.close()

    def __repr__(self) -> str:
        return f"WebhookServer(url={self.url!r})"


async def serve_webhooks(
    core: WebhookCore,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    sock: socket.socket | None = None,
    limits: ServerLimits | None = None,
    ssl: ssl_module.SSLContext | None = None,
) -> WebhookServer:
    """Serve ``core`` on ``host:port`` (0: a free port) or on a bound ``sock``.

    ``ssl`` serves HTTPS directly; behind a proxy that ends TLS, leave it out
    and give the core the ``public_url`` Twilio calls.
    """
    server = WebhookServer(core, limits or ServerLimits(), tls=ssl is not None)
    loop = asyncio.get_running_loop()
    if sock is not None:
        listening = await loop.create_server(lambda: _Connection(server), sock=sock, ssl=ssl)
    else:
        listening = await loop.create_server(lambda: _Connection(server), host, port, ssl=ssl)
    server._server = listening
    bound_host, bound_port = listening.sockets[0].getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else str(bound_host)
    server.url = f"{'https' if ssl else 'http'}://{shown}:{bound_port}"
    server.port = int(bound_port)
    return server


__all__ = ["ServerLimits", "WebhookServer", "serve_webhooks"]
