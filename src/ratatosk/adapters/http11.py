"""A small keep-alive HTTP/1.1 client on ``asyncio.Protocol`` (adapters layer).

Why our own: a send's client CPU was mostly aiohttp's ``ClientSession``
(113 µs of the adapter's cost per Create Message, against ~18 µs for the
same POST on a bare protocol; ``docs/benchmarks.md``). The REST calls this
package makes are few and plain (one origin, Basic auth, a small form or a
query string, a JSON answer), so the client does only that: one origin per
client, a bounded pool of keep-alive connections, requests written in one
``write``, answers framed by ``Content-Length``, chunked coding or the end of
the connection, under a size cap. No proxies, no redirects, no cookies, no
HTTP/2, no compression (ADR 0026).

Failures are one exception, :class:`HttpError`, whose ``sent`` says whether
any byte of the request was handed to the connection: the caller maps that
to "cannot have been processed" or "may have been".
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Mapping
from typing import Final, cast
from urllib.parse import urlsplit

_HEAD_LIMIT: Final = 64 * 1024  # status line + headers
_CHUNK_LINE_LIMIT: Final = 4096
_HEAD_END: Final = b"\r\n\r\n"
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")

# Parser states
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _TO_CLOSE, _DONE = range(8)


class HttpError(Exception):
    """A request that got no complete answer.

    ``sent``: the request reached the connection (it may have been processed);
    ``timeout``: a deadline ended it; ``stale``: a reused keep-alive
    connection ended before any byte of an answer (the server may have closed
    it idle just as the request left, so an idempotent request may be repeated).
    """

    def __init__(
        self, message: str, *, sent: bool, timeout: bool = False, stale: bool = False
    ) -> None:
        super().__init__(message)
        self.sent = sent
        self.timeout = timeout
        self.stale = stale


class HttpResponse:
    """Status, headers (names lower-cased; a repeated header's values joined by ", "), body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"HttpResponse(status={self.status}, {len(self.body)} bytes)"


def _parse_head(head: bytes) -> tuple[int, bool, dict[str, str]]:
    """Status, whether it is HTTP/1.1, and the headers; ``ValueError`` if malformed."""
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if (
        version not in ("HTTP/1.1", "HTTP/1.0")
        or len(code) != 3
        or not code.isdigit()
        or rest[3:4] not in ("", " ")
    ):
        raise ValueError("malformed status line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or line[0] in " \t":
            raise ValueError("malformed header line")
        key = name.lower()
        value = value.strip(" \t")
        if key in headers:
            if key == "content-length" and headers[key] != value:
                raise ValueError("conflicting Content-Length")
            if key != "content-length":
                headers[key] = f"{headers[key]}, {value}"
        else:
            headers[key] = value
    return int(code), version == "HTTP/1.1", headers


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: writes a request, parses its answer incrementally."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False  # has carried a request before the current one
        self.idle_since = 0.0
        self._waiter: asyncio.Future[HttpResponse] | None = None
        self._buffer = bytearray()
        self._state = _DONE
        self._received = False
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._remaining = 0
        self._keep_alive = False
        self._no_body = False
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._last_byte = 0.0
        self._read_timeout = 0.0
        self._steps = {
            _HEAD: self._head,
            _LENGTH: self._data,
            _CHUNK_SIZE: self._chunk_size,
            _CHUNK_DATA: self._data,
            _CHUNK_END: self._chunk_end,
            _TRAILERS: self._trailers,
            _TO_CLOSE: self._to_close,
        }

    # --- asyncio callbacks -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check here
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection cannot be trusted
            self._abort()
            return
        self._received = True
        self._last_byte = self._loop.time()
        self._buffer += data
        try:
            self._parse()
        except ValueError as exc:
            self._fail(HttpError(f"malformed answer: {exc}", sent=True))

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        if self._waiter is None:
            return
        if self._state == _TO_CLOSE and exc is None:
            self._keep_alive = False
            self._finish()
            return
        if not self._received and self.reused:
            error = HttpError("the kept-alive connection was closed", sent=True, stale=True)
        else:
            reason = type(exc).__name__ if exc is not None else "ServerDisconnected"
            error = HttpError(f"connection failed mid-request: {reason}", sent=True)
        self._fail(error)

    # --- one exchange ----------------------------------------------------------------

    def start(
        self, request: bytes, deadline: float, read_timeout: float, no_body: bool
    ) -> asyncio.Future[HttpResponse]:
        assert self.transport is not None
        waiter: asyncio.Future[HttpResponse] = self._loop.create_future()
        self._waiter = waiter
        self._state, self._received, self._no_body = _HEAD, False, no_body
        self._body = bytearray()
        self._deadline = deadline
        self._read_timeout = read_timeout
        now = self._loop.time()
        self._last_byte = now
        self._timer = self._loop.call_at(min(deadline, now + read_timeout), self._on_timer)
        self.transport.write(request)
        return waiter

    def _on_timer(self) -> None:
        """The one timer of a request: the total deadline, or ``read`` seconds without a byte."""
        self._timer = None
        if self._waiter is None:
            return
        now = self._loop.time()
        wake = min(self._deadline, self._last_byte + self._read_timeout)
        if now < wake:  # bytes came since it was set: sleep until the new deadline
            self._timer = self._loop.call_at(wake, self._on_timer)
            return
        self._fail(HttpError("no answer in time", sent=True, timeout=True))

    def _parse(self) -> None:
        """Advance through the answer as far as the buffered bytes allow."""
        steps = self._steps
        while self._state != _DONE:
            if not steps[self._state]():
                return
        if self._buffer:  # more than one answer to one request
            self._keep_alive = False
            self._buffer.clear()
        self._finish()

    def _head(self) -> bool:
        buffer = self._buffer
        end = buffer.find(_HEAD_END)
        if end < 0 or end > _HEAD_LIMIT:
            if len(buffer) > _HEAD_LIMIT:
                raise ValueError("header section too large")
            return False
        status, http11, headers = _parse_head(bytes(buffer[:end]))
        del buffer[: end + 4]
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            return True
        self._status, self._headers = status, headers
        self._keep_alive = http11 and "close" not in headers.get("connection", "").lower()
        encoding = headers.get("transfer-encoding")
        length = headers.get("content-length")
        if self._no_body or status in (204, 304):
            self._state = _DONE
        elif encoding is not None:
            if encoding.lower().rsplit(",", 1)[-1].strip() == "chunked":
                self._state = _CHUNK_SIZE
            else:  # framed by the end of the connection (RFC 9112, 6.3)
                self._state, self._keep_alive = _TO_CLOSE, False
        elif length is not None:
            if not length.isdigit() or not length.isascii():
                raise ValueError("bad Content-Length")
            self._remaining = int(length)
            if self._remaining > self._pool.max_body:
                raise ValueError(f"body larger than {self._pool.max_body} bytes")
            self._state = _LENGTH
        else:
            self._state, self._keep_alive = _TO_CLOSE, False
        return True

    def _data(self) -> bool:
        """Bytes of a Content-Length body or of one chunk."""
        buffer = self._buffer
        take = min(self._remaining, len(buffer))
        self._body += buffer[:take]
        del buffer[:take]
        self._remaining -= take
        if self._remaining:
            return False
        self._state = _DONE if self._state == _LENGTH else _CHUNK_END
        return True

    def _chunk_size(self) -> bool:
        buffer = self._buffer
        end = buffer.find(b"\r\n")
        if end < 0:
            if len(buffer) > _CHUNK_LINE_LIMIT:
                raise ValueError("chunk size line too long")
            return False
        size_text = bytes(buffer[:end]).split(b";", 1)[0].strip(b" \t")
        del buffer[: end + 2]
        if not size_text or any(c not in _HEX for c in size_text):
            raise ValueError("bad chunk size")
        size = int(size_text, 16)
        if size == 0:
            self._state = _TRAILERS
        elif len(self._body) + size > self._pool.max_body:
            raise ValueError(f"body larger than {self._pool.max_body} bytes")
        else:
            self._remaining, self._state = size, _CHUNK_DATA
        return True

    def _chunk_end(self) -> bool:
        buffer = self._buffer
        if len(buffer) < 2:
            return False
        if buffer[:2] != b"\r\n":
            raise ValueError("chunk not followed by CRLF")
        del buffer[:2]
        self._state = _CHUNK_SIZE
        return True

    def _trailers(self) -> bool:
        buffer = self._buffer
        end = buffer.find(b"\r\n")
        if end < 0:
            if len(buffer) > _HEAD_LIMIT:
                raise ValueError("trailers too large")
            return False
        del buffer[: end + 2]
        if end == 0:
            self._state = _DONE
        return True

    def _to_close(self) -> bool:
        if len(self._body) + len(self._buffer) > self._pool.max_body:
            raise ValueError(f"body larger than {self._pool.max_body} bytes")
        self._body += self._buffer
        self._buffer.clear()
        return False

    def _finish(self) -> None:
        waiter, self._waiter = self._waiter, None
        self._state = _DONE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        response = HttpResponse(self._status, self._headers, bytes(self._body))
        self._body = bytearray()
        if self._keep_alive and not self.closed:
            self._pool.release(self)
        else:
            self._abort()
            self._pool.forget(self)
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def _fail(self, error: HttpError) -> None:
        waiter, self._waiter = self._waiter, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._abort()
        self._pool.forget(self)
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def close(self) -> None:
        self._fail(HttpError("client closed", sent=True))


class ConnectionPool:
    """Up to ``max_connections`` connections to one origin; idle ones reused, then closed."""

    def __init__(self, client: Http11Client, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.max_body = client.max_body
        self._client = client
        self._idle: collections.deque[_Connection] = collections.deque()
        self._open: set[_Connection] = set()
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._sweep: asyncio.TimerHandle | None = None
        self.closed = False

    async def acquire(self, deadline: float, *, fresh: bool = False) -> _Connection:
        while self._idle and not fresh:
            connection = self._idle.pop()  # the most recent: least likely closed by the server
            if not connection.closed and not connection.transport.is_closing():  # type: ignore[union-attr]
                connection.reused = True
                return connection
        while len(self._open) >= self._client.max_connections:
            slot: asyncio.Future[None] = self.loop.create_future()
            self._waiters.append(slot)
            try:
                async with asyncio.timeout_at(deadline):
                    await slot
            except TimeoutError:
                raise HttpError("no free connection in time", sent=False, timeout=True) from None
            finally:
                if slot in self._waiters:
                    self._waiters.remove(slot)
            if self._idle and not fresh:
                return await self.acquire(deadline)
        return await self._connect(deadline)

    async def _connect(self, deadline: float) -> _Connection:
        client = self._client
        connection = _Connection(self)
        self._open.add(connection)
        limit = min(deadline, self.loop.time() + client.connect_timeout)
        try:
            async with asyncio.timeout_at(limit):
                await self.loop.create_connection(
                    lambda: connection,
                    client.host,
                    client.port,
                    ssl=client.ssl_context(),
                    server_hostname=client.host if client.tls else None,
                )
        except TimeoutError:
            self.forget(connection)
            raise HttpError(
                f"connect timeout to {client.origin}", sent=False, timeout=True
            ) from None
        except (OSError, ssl.SSLError) as exc:
            self.forget(connection)
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise HttpError(f"cannot connect to {client.origin}: {reason}", sent=False) from None
        except BaseException:
            self.forget(connection)
            raise
        return connection

    def release(self, connection: _Connection) -> None:
        connection.idle_since = self.loop.time()
        self._idle.append(connection)
        self._wake()
        if self._sweep is None:
            self._sweep = self.loop.call_at(
                connection.idle_since + self._client.idle_timeout, self._close_idle
            )

    def forget(self, connection: _Connection) -> None:
        if connection in self._open:
            self._open.discard(connection)
            self._wake()

    def _wake(self) -> None:
        while self._waiters:
            slot = self._waiters.popleft()
            if not slot.done():
                slot.set_result(None)
                return

    def _close_idle(self) -> None:
        """One timer for the pool, not one per request: closes what idled ``idle_timeout``."""
        self._sweep = None
        cutoff = self.loop.time() - self._client.idle_timeout
        while self._idle and self._idle[0].idle_since <= cutoff:
            connection = self._idle.popleft()
            connection.close()
        if self._idle:
            self._sweep = self.loop.call_at(
                self._idle[0].idle_since + self._client.idle_timeout, self._close_idle
            )

    def close(self) -> None:
        self.closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for connection in list(self._open):
            connection.close()
        self._idle.clear()
        self._open.clear()
        while self._waiters:
            slot = self._waiters.popleft()
            if not slot.done():
                slot.set_exception(HttpError("client closed", sent=False))


def _header_block(headers: Mapping[str, str]) -> bytes:
    lines = []
    for name, value in headers.items():
        if not name.isascii() or any(c in name for c in ":\r\n \t") or not name:
            raise ValueError("invalid header name")
        if "\r" in value or "\n" in value:
            raise ValueError(f"invalid value for header {name}")  # the value may be a secret
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


class Http11Client:
    """Keep-alive HTTP/1.1 requests to one origin (``http://`` or ``https://``).

    ``headers`` go on every request (the Basic credentials, built once);
    ``connect``/``read``/``total`` are seconds: to open a connection, between
    two bytes of an answer, and for the whole call (waiting for a pooled
    connection included). A connection the server closes, or answers with
    ``Connection: close``, is never reused; idle ones close after ``idle_timeout``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        connect: float = 5.0,
        read: float = 15.0,
        total: float = 30.0,
        max_connections: int = 100,
        idle_timeout: float = 15.0,
        max_body: int = 16 * 1024 * 1024,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the base URL must be http:// or https:// with a host")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.tls: Final = parts.scheme == "https"
        self.host: Final = parts.hostname
        self.port: Final = parts.port or (443 if self.tls else 80)
        default_port = self.port == (443 if self.tls else 80)
        host_header = f"[{self.host}]" if ":" in self.host else self.host
        if not default_port:
            host_header = f"{host_header}:{self.port}"
        self.origin: Final = f"{parts.scheme}://{host_header}"
        self.prefix: Final = parts.path.rstrip("/")
        self.connect_timeout = connect
        self.read_timeout = read
        self.total_timeout = total
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.max_body = max_body
        self._common = _header_block({"Host": host_header, **(headers or {})})
        #: https only; None: the system's CA store with hostname checks (built on first use)
        self._ssl: ssl.SSLContext | None = ssl_context
        self._pool: ConnectionPool | None = None

    def __repr__(self) -> str:
        return f"Http11Client({self.origin!r})"

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        if self._ssl is None:  # built once: loading the CA store costs milliseconds
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        *,
        content_type: str | None = None,
    ) -> HttpResponse:
        """``target``: path and query, appended to the base URL's path; no redirect is followed."""
        if not target.startswith("/") or any(c in target for c in " \r\n\t"):
            raise ValueError("the request target must be a path without spaces or line breaks")
        head = f"{method} {self.prefix}{target} HTTP/1.1\r\n".encode("ascii") + self._common
        if body is not None:
            if content_type is not None:
                head += b"Content-Type: " + content_type.encode("latin-1") + b"\r\n"
            head += b"Content-Length: %d\r\n\r\n" % len(body)
            request = head + body
        else:
            request = head + b"\r\n"
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is None or pool.loop is not loop:
            if pool is not None:
                pool.close()
            pool = self._pool = ConnectionPool(self, loop)
        deadline = loop.time() + self.total_timeout
        no_body = method == "HEAD"
        connection = await pool.acquire(deadline)
        try:
            return await connection.start(request, deadline, self.read_timeout, no_body)
        except HttpError as error:
            # A kept-alive connection the server had already closed: a GET is safe to repeat.
            if not (error.stale and method in ("GET", "HEAD")):
                raise
        except asyncio.CancelledError:
            connection.close()
            raise
        connection = await pool.acquire(deadline, fresh=True)
        try:
            return await connection.start(request, deadline, self.read_timeout, no_body)
        except asyncio.CancelledError:
            connection.close()
            raise

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
            await asyncio.sleep(0)  # let the transports finish closing
