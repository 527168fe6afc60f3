"""Issue 16's findings against the ``ratatosk`` command, run as a real process on loopback.

Each case starts ``python -m ratatosk`` the way a shell would and attacks it
from outside: raw sockets against ``serve``, signed webhooks a printer could
choke on, settings and Twilio answers that carry secrets or terminal escapes.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import attrs
from resilience_support import free_port, stop_process, wait_for_port

ACCOUNT = "AC" + "c1" * 16
TOKEN = "cli-hardening-token-0123456789ab"


def environ(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "RATATOSK_"))}
    return base | {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN} | extra


@attrs.define
class Serving:
    """A ``ratatosk serve`` process; ``out`` and ``err`` are filled in when it stops."""

    port: int
    process: subprocess.Popen[bytes]
    out: str = ""
    err: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def serving(*args: str, **env: str) -> Iterator[Serving]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ratatosk", *args, "serve", "--port", str(port)],
        env=environ(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    server = Serving(port, process)
    try:
        wait_for_port(port, process)
        yield server
    finally:
        server.out, server.err = stop_process(process)
        assert TOKEN not in server.out + server.err


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; 30 s is a hang guard, not a timing check."""
    sock.settimeout(30)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


class TestServeConnections:
    """``serve`` no longer keeps idle or half-sent connections for an hour."""

    def test_idle_and_half_sent_connections_are_closed(self) -> None:
        """A silent connection and one with half its headers are both closed by the server."""
        with serving() as server:
            silent = socket.create_connection(("127.0.0.1", server.port))
            half = socket.create_connection(("127.0.0.1", server.port))
            half.sendall(b"POST /webhooks/twilio/whatsapp HTTP/1.1\r\nHost: x\r\nContent-")
            try:
                assert read_until_closed(silent) == b""
                assert read_until_closed(half) == b""
            finally:
                silent.close()
                half.close()

    def test_malformed_requests_are_logged_briefly(self) -> None:
        """500 requests with an 8 KiB bad header: a few short lines on stderr, no tracebacks."""
        bad = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: " + b"\x1b[2J" * 2100 + b"\r\n\r\n"
        with serving() as server:
            for _ in range(500):
                with socket.create_connection(("127.0.0.1", server.port)) as sock:
                    sock.sendall(bad)
                    assert read_until_closed(sock).split(b"\r\n")[0].endswith(b" 400 Bad Request")
        assert len(server.err) < 4000, server.err[:2000]
        assert "Traceback" not in server.err
        assert "\x1b" not in server.err
        assert "malformed HTTP request" in server.err
