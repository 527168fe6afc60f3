"""A canned Twilio that answers Create Message for a few µs: the send benchmark's server.

The emulator models Twilio (statuses, faults, callbacks) and spends more CPU
per create than any client, so with it every client's throughput is the
emulator's. This responder does the least an HTTP/1.1 server that answers
like Create Message can: a raw asyncio protocol, keep-alive, requests
parsed by hand (the Content-Length and Authorization headers, the form's
``To``, ``From`` and ``Body``), the Basic auth header checked against the
account's, and a 201 with a JSON body shaped like Twilio's Message resource
(the echoed fields, a fresh ``SM`` SID, the dates of this second). Anything
else gets Twilio's error JSON (401 for bad credentials, 404 for another
path). Its CPU is measured beside every figure, so a reader can see it was
not the limit: ``GET /_bench/cpu`` answers its ``time.process_time()``
(``/proc``'s 10 ms ticks are too coarse for a few µs per request).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import os
import sys
import time
from typing import cast
from urllib.parse import unquote_plus

_HEAD_END = b"\r\n\r\n"


class _Canned:
    """What every answer shares, built once: the account, its auth header, the dates."""

    def __init__(self, sid: str, token: str) -> None:
        self.sid = sid
        credentials = base64.b64encode(f"{sid}:{token}".encode()).decode("ascii")
        self.authorization = f"Basic {credentials}".encode("ascii")
        self.path = f"/2010-04-01/Accounts/{sid}/Messages.json".encode()
        self.sid_prefix = "SM" + os.urandom(4).hex()  # + 24 hex digits of a counter
        self.counter = 0
        self._second = -1
        self._date = ""

    def date(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._date = email.utils.formatdate(second, usegmt=False).replace("-0000", "+0000")
        return self._date

    def created(self, form: bytes) -> bytes:
        fields = {"To": "", "From": "", "Body": ""}
        for pair in form.split(b"&"):
            key, _, value = pair.partition(b"=")
            name = key.decode("ascii", "replace")
            if name in fields:
                fields[name] = unquote_plus(value.decode("ascii", "replace"))
        self.counter += 1
        message_sid = f"{self.sid_prefix}{self.counter:024x}"
        date = self.date()
        body = json.dumps(
            {
                "account_sid": self.sid,
                "api_version": "2010-04-01",
                "body": fields["Body"],
                "date_created": date,
                "date_sent": None,
                "date_updated": date,
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": fields["From"],
                "messaging_service_sid": None,
                "num_media": "0",
                "num_segments": "1",
                "price": None,
                "price_unit": "USD",
                "sid": message_sid,
                "status": "queued",
                "subresource_uris": {
                    "media": f"/2010-04-01/Accounts/{self.sid}/Messages/{message_sid}/Media.json"
                },
                "to": fields["To"],
                "uri": f"/2010-04-01/Accounts/{self.sid}/Messages/{message_sid}.json",
            },
            separators=(",", ":"),
        ).encode()
        return _answer(b"201 CREATED", body)


def _answer(status: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json; charset=utf-8\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


_UNAUTHORIZED = _answer(
    b"401 UNAUTHORIZED",
    b'{"code":20003,"message":"Authenticate",'
    b'"more_info":"https://www.twilio.com/docs/errors/20003","status":401}',
)
_NOT_FOUND = _answer(
    b"404 NOT FOUND",
    b'{"code":20404,"message":"The requested resource was not found",'
    b'"more_info":"https://www.twilio.com/docs/errors/20404","status":404}',
)


class _Connection(asyncio.Protocol):
    def __init__(self, canned: _Canned) -> None:
        self._canned = canned
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(_HEAD_END)
            if end < 0:
                return
            length, authorization, close = 0, b"", False
            for line in self._buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"authorization":
                    authorization = value.strip()
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
            total = end + 4 + length
            if len(self._buffer) < total:
                return
            form = self._buffer[end + 4 : total]
            request_line = self._buffer[: self._buffer.find(b"\r\n")]
            self._buffer = self._buffer[total:]
            assert self._transport is not None
            if request_line == b"GET /_bench/cpu HTTP/1.1":
                # The bench's probe: this process's CPU seconds, finer than /proc's ticks.
                self._transport.write(_answer(b"200 OK", repr(time.process_time()).encode()))
            elif authorization != self._canned.authorization:
                self._transport.write(_UNAUTHORIZED)
            elif request_line.split(b" ")[:2] != [b"POST", self._canned.path]:
                self._transport.write(_NOT_FOUND)
            else:
                self._transport.write(self._canned.created(form))
            if close:
                self._transport.close()
                return


async def _serve(port: int, sid: str, token: str) -> None:
    loop = asyncio.get_running_loop()
    canned = _Canned(sid, token)
    server = await loop.create_server(lambda: _Connection(canned), "127.0.0.1", port, backlog=512)
    print("ready", flush=True)
    try:
        await loop.run_in_executor(None, sys.stdin.read)
    finally:
        server.close()


def serve(port: int, sid: str, token: str, loop: str) -> None:
    """Serve until stdin closes (the parent's signal to stop)."""
    from procs import run_on

    run_on(loop, _serve(port, sid, token))


def cpu_probe(url: str) -> float:
    """The responder's CPU seconds so far, asked over a fresh blocking connection."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        connection.request("GET", "/_bench/cpu")
        return float(connection.getresponse().read())
    finally:
        connection.close()
