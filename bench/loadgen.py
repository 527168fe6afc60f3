"""A minimal HTTP/1.1 load generator on raw asyncio protocols.

Used for webhook ingestion: both servers under test get the same pre-built
request bytes from the same generator, which costs a few microseconds per
request, so the server (not the generator) is what limits the rate. Each of
the ``concurrency`` keep-alive connections has exactly one request in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from typing import cast

import attrs


@attrs.frozen
class LoadResult:
    count: int
    seconds: float
    statuses: dict[int, int]


class _Connection(asyncio.Protocol):
    """One keep-alive connection: write a request, wait for its whole answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[int] | None = None
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"server closed the connection: {exc}"))
        if not self._closed.done():
            self._closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._try_complete()

    def _try_complete(self) -> None:
        if self._waiter is None or self._waiter.done():
            return
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buffer[:end]).decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        total = end + 4 + length
        if len(self._buffer) < total:
            return
        del self._buffer[:total]
        self._waiter.set_result(int(head.split(" ", 2)[1]))

    async def request(self, raw: bytes) -> int:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self._waiter

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            await self._closed


async def run_load(host: str, port: int, requests: Sequence[bytes], concurrency: int) -> LoadResult:
    """Send every request once over ``concurrency`` connections; time from first to last."""
    loop = asyncio.get_running_loop()
    connections: list[_Connection] = []
    for _ in range(concurrency):
        _, protocol = await loop.create_connection(_Connection, host, port)
        connections.append(protocol)
    statuses: dict[int, int] = {}
    pending: Iterator[bytes] = iter(requests)

    async def drive(connection: _Connection) -> None:
        for raw in pending:
            status = await connection.request(raw)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(drive(c) for c in connections))
    elapsed = time.perf_counter() - started
    for connection in connections:
        await connection.close()
    return LoadResult(count=len(requests), seconds=elapsed, statuses=statuses)


def post_request(host: str, path: str, body: str, headers: Sequence[tuple[str, str]]) -> bytes:
    """The bytes of one form POST with keep-alive."""
    payload = body.encode("utf-8")
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/x-www-form-urlencoded",
        f"Content-Length: {len(payload)}",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
