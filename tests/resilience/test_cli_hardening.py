"""Issue 16's findings against the ``ratatosk`` command, run as a real process on loopback.

Each case starts ``python -m ratatosk`` the way a shell would and attacks it
from outside: raw sockets against ``serve``, signed webhooks a printer could
choke on, settings and Twilio answers that carry secrets or terminal escapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import attrs
from aiohttp import web
from resilience_support import free_port, stop_process, wait_for_port

from ratatosk.adapters.http_server import RunningServer, start_server
from ratatosk.twilio.signature import body_sha256, compute_signature

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


# --- 3. template paging stays on the Content API and ends ------------------------------------


def template(n: int) -> dict[str, object]:
    return {
        "sid": f"HX{n:032x}",
        "friendly_name": f"template_{n}",
        "language": "en",
        "approval_requests": {"whatsapp": {"status": "approved"}},
        "variables": {},
    }


class ContentApi:
    """A loopback Content API whose next pages are whatever a test wants them to be."""

    def __init__(self, next_page: Callable[[web.Request, int], str | None]) -> None:
        self.next_page = next_page
        self.requests: list[str] = []
        self.authorizations: list[str | None] = []
        self.server: RunningServer | None = None

    async def page(self, request: web.Request) -> web.Response:
        self.requests.append(str(request.rel_url))
        self.authorizations.append(request.headers.get("Authorization"))
        n = len(self.requests)
        meta = {"next_page_url": self.next_page(request, n)}
        return web.json_response({"contents": [template(n)], "meta": meta})

    async def __aenter__(self) -> ContentApi:
        app = web.Application()
        app.router.add_get("/v1/ContentAndApprovals", self.page)
        self.server = await start_server(app, access_log=False)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        await self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url


async def templates_list(content_api: str) -> tuple[int, list[dict[str, Any]], str]:
    """``ratatosk --json templates list`` against ``content_api``: exit code, lines, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ratatosk", "--json", "templates", "list",
        env=environ(TWILIO_CONTENT_API_BASE_URL=content_api),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    except TimeoutError:
        process.kill()
        await process.communicate()
        raise
    text = out.decode() + err.decode()
    assert TOKEN not in text
    lines = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert process.returncode is not None
    return process.returncode, lines, err.decode()


class TestTemplatePaging:
    """``templates list`` (and a send by template name) follows next pages safely."""

    async def test_a_page_pointing_at_itself_is_read_once(self) -> None:
        """A self-referencing next page ends with TEMPLATE_LOOKUP_FAILED, not a loop."""
        async with ContentApi(lambda request, _: str(request.url)) as api:
            code, lines, _ = await templates_list(api.url)
        assert code == 1
        [failure] = lines
        assert failure["error"]["code"] == "TEMPLATE_LOOKUP_FAILED"
        assert failure["error"]["details"]["reason"] == "next page repeats a page"
        assert len(api.requests) == 1

    async def test_endless_pages_stop_at_the_limit(self) -> None:
        """Fresh next pages for ever: 50 are read, then a coded error with the limit."""
        async with ContentApi(lambda request, n: f"{api.url}{request.path}?Page={n}") as api:
            code, lines, _ = await templates_list(api.url)
        assert code == 1
        details = lines[0]["error"]["details"]
        assert (details["reason"], details["limit"], details["pages"]) == ("page limit", 50, 50)
        assert len(api.requests) == 50

    async def test_a_next_page_on_another_origin_is_not_followed(self) -> None:
        """The credentials never go to another host or port."""
        elsewhere = ContentApi(lambda request, n: None)
        api = ContentApi(lambda request, n: f"{elsewhere.url}/v1/ContentAndApprovals")
        async with elsewhere, api:
            code, lines, _ = await templates_list(api.url)
        assert code == 1
        details = lines[0]["error"]["details"]
        assert details["reason"] == "next page on another origin"
        assert details["origin"] == api.url
        assert elsewhere.requests == []
        assert api.authorizations[0] is not None

    async def test_pages_on_the_same_origin_are_all_read(self) -> None:
        """Three pages, linked absolutely and relatively: every template listed."""
        links = {1: "{url}/v1/ContentAndApprovals?Page=1", 2: "/v1/ContentAndApprovals?Page=2"}
        async with ContentApi(
            lambda _, n: links[n].format(url=api.url) if n in links else None
        ) as api:
            code, lines, _ = await templates_list(api.url)
        assert code == 0
        assert [line["name"] for line in lines] == ["template_1", "template_2", "template_3"]


# --- 4. a token placed in a URL setting is never printed -------------------------------------

URL_SECRET = "token-in-the-url-8b7a6f5e4d"


def ratatosk(*args: str, env: dict[str, str] | dict[bytes, bytes]) -> tuple[int, str]:
    """Run the command to its end: exit code and everything it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "ratatosk", *args],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")


class TestSecretsInSettings:
    """Credentials in a URL setting, or a token that is not UTF-8: a coded refusal."""

    def test_send_with_credentials_in_the_api_url(self) -> None:
        """INVALID_CONNECTION_SETTINGS, not aiohttp's ValueError as a crash; the URL not echoed."""
        url = f"http://{ACCOUNT}:{URL_SECRET}@127.0.0.1:{free_port()}"
        code, text = ratatosk(
            "--json", "send", "--to", "whatsapp:+15550002222", "--text", "x",
            env=environ(TWILIO_API_BASE_URL=url, TWILIO_WHATSAPP_FROM="whatsapp:+14155238886"),
        )  # fmt: skip
        assert code == 1
        [line] = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        assert line["event"] == "error"
        assert line["error"]["code"] == "INVALID_CONNECTION_SETTINGS"
        assert "ApiBaseUrl" in line["error"]["message"]
        assert URL_SECRET not in text
        assert TOKEN not in text

    def test_templates_list_with_credentials_in_the_api_url(self) -> None:
        """The catalog refuses the base before any request: TEMPLATE_LOOKUP_FAILED, no crash."""
        url = f"http://{ACCOUNT}:{URL_SECRET}@127.0.0.1:{free_port()}"
        code, text = ratatosk("--json", "templates", "list", env=environ(TWILIO_API_BASE_URL=url))
        assert code == 1
        [line] = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        assert line["error"]["code"] == "TEMPLATE_LOOKUP_FAILED"
        assert line["error"]["details"]["reason"] == "base URL"
        assert URL_SECRET not in text

    def test_serve_refuses_a_token_that_is_not_utf8(self) -> None:
        """A token whose bytes are not UTF-8 stops ``serve`` at start-up with a code."""
        env = {k.encode(): v.encode() for k, v in environ().items()}
        env[b"TWILIO_AUTH_TOKEN"] = b"\xff\xfe-latin-1-token-\xe9"
        code, text = ratatosk("serve", "--port", str(free_port()), env=env)
        assert code == 1
        assert "INVALID_CONNECTION_SETTINGS" in text
        assert "AuthToken is not valid UTF-8 text" in text
        assert "latin-1-token" not in text


# --- 5. a webhook the printer could choke on; terminal escapes from Twilio ---------------------

WEBHOOK_PATH = "/webhooks/twilio/whatsapp"


def post_signed_json(server: Serving, document: str) -> int:
    """POST a JSON webhook signed as Twilio signs it (``bodySHA256``); the HTTP status."""
    body = document.encode()
    target = f"{server.url}{WEBHOOK_PATH}?bodySHA256={body_sha256(body)}"
    request = urllib.request.Request(  # noqa: S310 - our own server on loopback
        target,
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Twilio-Signature": compute_signature(TOKEN, target, {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return refused.code


LONE_SURROGATE = (
    '{"MessageSid": "SM' + "5d" * 16 + '", "From": "whatsapp:+15551234567", '
    '"To": "whatsapp:+14155238886", "Body": "half an emoji: \\ud83d", '
    '"ProfileName": "\\u001b[2J\\u009b31m"}'
)


class TestServePrintsAnything:
    """``serve`` prints every verified event, whatever its text holds, and keeps no 500 for it."""

    def test_a_lone_surrogate_as_json_lines(self) -> None:
        """An escaped lone surrogate is handled (200) and printed as the same JSON escape."""
        with serving("--json") as server:
            assert post_signed_json(server, LONE_SURROGATE) == 200
        [event] = [e for e in map(json.loads, server.out.splitlines()) if e["event"] == "message"]
        assert event["content"]["text"] == "half an emoji: \ud83d"  # the very text that came
        assert event["properties"]["ProfileName"] == "\x1b[2J\x9b31m"
        assert "\x1b" not in server.out
        assert "\x9b" not in server.out

    def test_a_lone_surrogate_as_text(self) -> None:
        """The same event printed for a terminal: visible escapes, no control characters."""
        with serving() as server:
            assert post_signed_json(server, LONE_SURROGATE) == 200
        [line] = [line for line in server.out.splitlines() if line.startswith("message ")]
        assert "\\ud83d" in line
        assert "\x1b" not in server.out
        assert "\x9b" not in server.out


def test_public_url_must_be_an_absolute_http_url() -> None:
    """``--public-url x`` is a usage error (exit 2), not a server that answers 403 to all."""
    for bad in ("x", "hooks.example.com", "ftp://hooks.example.com", "https://h.example/?a=1"):
        code, text = ratatosk(
            "serve", "--port", str(free_port()), "--public-url", bad, env=environ()
        )
        assert code == 2, bad
        assert "--public-url must be" in text


class FakeTwilioRest:
    """A loopback 'Twilio' whose error text carries terminal escapes and a forged line."""

    MESSAGE = "\x1b[2J\x1b]0;owned\x07Invalid 'To'\r\nsent SM0 (queued)\x9b31m"

    async def create(self, request: web.Request) -> web.Response:
        await request.read()
        body = {"code": 21211, "message": self.MESSAGE, "more_info": "x", "status": 400}
        return web.json_response(body, status=400)

    async def __aenter__(self) -> str:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self.create)
        self.server = await start_server(app, access_log=False)
        return self.server.url

    async def __aexit__(self, *_: object) -> None:
        await self.server.close()


async def test_twilio_error_text_reaches_the_terminal_inert() -> None:
    """Twilio's error message is printed on one line, escapes shown, never acted on."""
    async with FakeTwilioRest() as url:
        env = environ(TWILIO_API_BASE_URL=url, TWILIO_WHATSAPP_FROM="whatsapp:+14155238886")
        args = ["send", "--to", "whatsapp:+15550002222", "--text", "x"]
        text_run, json_run = await asyncio.gather(
            asyncio.to_thread(ratatosk, *args, env=env),
            asyncio.to_thread(ratatosk, "--json", *args, env=env),
        )
    for code, printed in (text_run, json_run):
        assert code == 1
        assert "INVALID_RECIPIENT" in printed
        assert not any(c in printed for c in "\x1b\x07\x9b\r")
    [error_line] = [line for line in text_run[1].splitlines() if "INVALID_RECIPIENT" in line]
    assert "\\x1b[2J" in error_line
    assert "sent SM0" in error_line  # the forged line stays on the error's own line
    [event] = [json.loads(line) for line in json_run[1].splitlines() if line.startswith("{")]
    assert FakeTwilioRest.MESSAGE in event["error"]["message"]  # JSON keeps the exact text
