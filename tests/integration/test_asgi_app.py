"""What only the ASGI webhook app does: its own uvicorn process, lifespan, mounts and root paths.

The answers it shares with the aiohttp server are test_webhook_server.py's
(every case there runs against both). Here: ``bootstrap.build_asgi_webhook_app``
served by ``python -m uvicorn`` in a process of its own, initialising and
closing its connector on the lifespan events, receiving the emulator's status
callbacks and signed inbound messages and what ``ratatosk webhook sign``
builds; the app mounted in Starlette under a prefix and served by uvicorn
behind a prefix-stripping proxy (``root_path``), where the URL Twilio signed
keeps the prefix; and the ASGI protocol's edges (WebSocket, other scope
types, a client that leaves mid-body), driven through the ASGI interface.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from ratatosk import ConnectionSettings, MessageBuilder, ReceiveResult, StatusUpdate
from ratatosk.adapters.asgi import create_asgi_webhook_app
from ratatosk.bootstrap import build_asgi_webhook_app
from ratatosk.emulator.app import RunningEmulator, start_emulator
from ratatosk.sync import SyncTwilioWhatsAppConnector
from ratatosk.testing import BackgroundEmulator, FakeTwilio
from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector, TwiML
from ratatosk.twilio.signature import compute_signature
from secret_check import assert_no_token
from webhook_apps import Uvicorn, http_post, post_json, serve_asgi

CUSTOMER = "whatsapp:+15551234567"
BUSINESS = "whatsapp:+14155238886"
PATH = "/webhooks/twilio/whatsapp"

HOOKS = """
import json

from ratatosk.bootstrap import build_asgi_webhook_app, build_connector

connector = build_connector()  # TWILIO_* from the environment; initialised by the lifespan


async def on_message(received):
    for message in received.messages:
        print(json.dumps({"text": message.content.text}), flush=True)


async def on_status(update):
    print(json.dumps({"sid": update.message_id, "status": update.status.value}), flush=True)


hooks = build_asgi_webhook_app(connector, on_message=on_message, on_status=on_status)


async def app(scope, receive, send):
    await hooks(scope, receive, send)
    if scope["type"] == "lifespan":  # after the shutdown event: what did it leave behind?
        print(json.dumps({"connector": connector.state.value}), flush=True)
"""


def _environ(emulator: BackgroundEmulator, **extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "REDIS_"))}
    return environ | {
        "TWILIO_ACCOUNT_SID": emulator.account_sid,
        "TWILIO_AUTH_TOKEN": emulator.auth_token,
        "TWILIO_API_BASE_URL": emulator.url,
        "TWILIO_WHATSAPP_FROM": BUSINESS,
        **extra,
    }


@pytest.fixture
def background_emulator() -> Iterator[BackgroundEmulator]:
    with BackgroundEmulator(step_delay=0.01) as emulator:
        yield emulator


@contextlib.contextmanager
def uvicorn_process(tmp_path: Path, environ: dict[str, str]) -> Iterator[Uvicorn]:
    (tmp_path / "hooks.py").write_text(HOOKS, encoding="utf-8")
    server = Uvicorn(["hooks:app", "--host", "127.0.0.1", "--port", "0"], tmp_path, environ)
    try:
        yield server
    finally:
        server.close()


def test_uvicorn_serves_the_bootstrap_app_and_its_lifespan_owns_the_connector(
    background_emulator: BackgroundEmulator, tmp_path: Path
) -> None:
    """Callbacks, inbound and a ``webhook sign`` request are verified; SIGTERM closes cleanly."""
    emulator = background_emulator
    with uvicorn_process(tmp_path, _environ(emulator)) as server:
        assert server.url, "".join(server.stderr)
        hook = server.url + PATH
        callback = emulator.settings().set_parameter("FromNumber", BUSINESS)
        callback = callback.set_parameter("StatusCallback", hook + "/status")
        with SyncTwilioWhatsAppConnector(TwilioChannelSchemas.TWILIO_WHATSAPP, callback) as twilio:
            message = MessageBuilder().to_phone(CUSTOMER).with_text("track me").build()
            sid = twilio.send_message(message).unwrap().provider_message_id
        statuses = []
        while "Read" not in statuses:
            event = server.next_event()
            assert event["sid"] == sid
            statuses.append(event["status"])
        inbound = post_json(
            emulator.url + "/_emulator/inbound",
            {"url": hook, "from": CUSTOMER, "to": BUSINESS, "body": "Where is my order?"},
        )
        assert inbound["status"] == 200
        assert _until_text(server) == "Where is my order?"
        signed = _cli_sign(emulator, hook, "Body=signed by the CLI")
        answer = http_post(signed["url"], signed["body"].encode(), signed["headers"])
        assert answer[0] == 200
        assert _until_text(server) == "signed by the CLI"
        forged = dict(signed["headers"], **{"X-Twilio-Signature": "Zm9yZ2Vk"})
        assert http_post(signed["url"], signed["body"].encode(), forged)[0] == 403
        code, last = server.stop()
    # uvicorn re-raises the SIGTERM it handled once it has shut down gracefully.
    assert code in {0, -signal.SIGTERM}, "".join(server.stderr)
    assert "Application shutdown complete." in "".join(server.stderr)
    assert {"connector": "Shutdown"} in last  # the lifespan's shutdown closed what it opened
    # The forged one was explained in the log (the same diagnosis as the aiohttp server's).
    assert f"refused a webhook to '{PATH}', URL from the request's Host" in "".join(server.stderr)
    assert_no_token("".join(server.stderr), emulator.account_sid, emulator.auth_token)


def test_a_startup_that_fails_stops_uvicorn_with_the_code(
    background_emulator: BackgroundEmulator, tmp_path: Path
) -> None:
    """Bad settings fail the lifespan's startup: uvicorn exits, saying why, never the token."""
    environ = _environ(background_emulator, TWILIO_ACCOUNT_SID="not-an-account-sid")
    with uvicorn_process(tmp_path, environ) as server:
        assert server.url == ""
        code = server.process.wait(30)
    output = "".join(server.stderr)
    assert code != 0
    assert "INVALID_CONNECTION_SETTINGS" in output
    assert_no_token(output, "not-an-account-sid", background_emulator.auth_token)


def _until_text(server: Uvicorn) -> str:
    while True:
        event = server.next_event()
        if "text" in event:
            return str(event["text"])


def _cli_sign(emulator: BackgroundEmulator, url: str, *fields: str) -> dict[str, Any]:
    """``ratatosk --json webhook sign`` for an inbound message from the customer."""
    form = [
        f"MessageSid=SM{'5c' * 16}",
        f"AccountSid={emulator.account_sid}",
        f"From={CUSTOMER}",
        f"To={BUSINESS}",
        "NumMedia=0",
        *fields,
    ]
    done = subprocess.run(
        [
            *(sys.executable, "-m", "ratatosk", "--json", "webhook", "sign", "--url", url),
            *(part for field in form for part in ("--form", field)),
        ],
        env=_environ(emulator),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    signed = json.loads(done.stdout)
    assert signed["event"] == "signed"
    return dict(signed)


# --- mounted under a prefix, in the test's event loop ---------------------------------------


def _receiver(emulator: RunningEmulator) -> TwilioWhatsAppConnector:
    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", emulator.account_sid)
        .set_parameter("AuthToken", emulator.auth_token)
    )
    return TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP, settings, transport=FakeTwilio()
    )


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    running = await start_emulator(step_delay=0.01)
    yield running
    await running.close()


async def _status(url: str, form: dict[str, str], signature: str) -> int:
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature,
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=urlencode(form), headers=headers) as response,
    ):
        return response.status


def _form(emulator: RunningEmulator) -> dict[str, str]:
    return {
        "MessageSid": "SM" + "2e" * 16,
        "MessageStatus": "delivered",
        "To": CUSTOMER,
        "From": BUSINESS,
        "AccountSid": emulator.account_sid,
    }


async def test_mounted_in_starlette_under_a_prefix_the_signed_url_keeps_it(
    emulator: RunningEmulator,
) -> None:
    """Twilio calls /twilio/webhooks/...: the signature over that full URL holds, not without."""
    messages: list[ReceiveResult] = []
    statuses: list[StatusUpdate] = []

    async def on_message(received: ReceiveResult) -> None:
        messages.append(received)

    async def on_status(update: StatusUpdate) -> None:
        statuses.append(update)

    connector = _receiver(emulator)
    hooks = build_asgi_webhook_app(connector, on_message=on_message, on_status=on_status)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with connector:  # a mount gets no lifespan events: the host app's does the work
            yield

    async def home(_: Any) -> PlainTextResponse:
        return PlainTextResponse("shop")

    shop = Starlette(routes=[Route("/", home), Mount("/twilio", app=hooks)], lifespan=lifespan)
    url, stop = await serve_asgi(shop)
    try:
        reply = await emulator.inject_inbound(
            url + "/twilio" + PATH, from_=CUSTOMER, to=BUSINESS, body="mounted"
        )
        form = _form(emulator)
        full = url + "/twilio" + PATH + "/status"
        held = await _status(full, form, compute_signature(emulator.auth_token, full, form))
        unprefixed = compute_signature(emulator.auth_token, url + PATH + "/status", form)
        refused = await _status(full, form, unprefixed)
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/twilio/healthz") as health:
                assert (health.status, await health.json()) == (200, {"status": "ok"})
            async with session.get(url + "/") as page:
                assert await page.text() == "shop"
    finally:
        await stop()
    assert (reply["status"], held, refused) == (200, 200, 403)
    assert [r.messages[0].content.text for r in messages] == ["mounted"]
    assert [u.message_id for u in statuses] == [form["MessageSid"]]
    assert hooks.stats.refused_signature == 1


async def test_behind_a_proxy_that_strips_a_prefix_root_path_is_signed(
    emulator: RunningEmulator,
) -> None:
    """uvicorn --root-path /api: requests arrive without /api, Twilio signed the URL with it."""
    public = "https://hooks.example.com"
    async with _receiver(emulator) as connector:
        hooks = create_asgi_webhook_app(
            connector, validator=connector.signature_validator, public_url=public
        )
        url, stop = await serve_asgi(hooks, root_path="/api")
        form = _form(emulator)
        with_prefix = compute_signature(emulator.auth_token, public + "/api" + PATH, form)
        without = compute_signature(emulator.auth_token, public + PATH, form)
        try:
            answers = [
                await _status(url + PATH, form, without),
                await _status(url + PATH, form, with_prefix),
            ]
        finally:
            await stop()
    assert answers == [403, 200]


# --- the ASGI protocol's edges ----------------------------------------------------------------


class Channel:
    """One ASGI connection driven by hand: scripted messages in, what the app sent out."""

    def __init__(self, *incoming: dict[str, Any]) -> None:
        self.incoming = list(incoming)
        self.sent: list[MutableMapping[str, Any]] = []

    async def receive(self) -> MutableMapping[str, Any]:
        return self.incoming.pop(0)

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message)


def _scope(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "asgi": {"version": "3.0"}, **extra}


@pytest.fixture
async def bare_app(emulator: RunningEmulator) -> AsyncIterator[Any]:
    async with _receiver(emulator) as connector:
        yield create_asgi_webhook_app(connector, validator=connector.signature_validator)


async def test_a_websocket_is_closed_at_its_handshake(bare_app: Any) -> None:
    channel = Channel({"type": "websocket.connect"})
    await bare_app(_scope("websocket", path=PATH, headers=[]), channel.receive, channel.send)
    assert [m["type"] for m in channel.sent] == ["websocket.close"]


async def test_another_scope_type_is_refused(bare_app: Any) -> None:
    channel = Channel()
    with pytest.raises(ValueError, match="serves HTTP"):
        await bare_app(_scope("telepathy"), channel.receive, channel.send)


async def test_a_client_that_leaves_mid_body_gets_no_answer(bare_app: Any) -> None:
    channel = Channel(
        {"type": "http.request", "body": b"MessageSid=SM", "more_body": True},
        {"type": "http.disconnect"},
    )
    scope = _scope(
        "http",
        method="POST",
        path=PATH,
        raw_path=PATH.encode(),
        query_string=b"",
        headers=[(b"content-type", b"application/x-www-form-urlencoded")],
    )
    await bare_app(scope, channel.receive, channel.send)
    assert channel.sent == []
    assert bare_app.stats.refused_signature == 0


async def test_lifespan_without_hooks_is_acknowledged(bare_app: Any) -> None:
    channel = Channel({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"})
    await bare_app(_scope("lifespan"), channel.receive, channel.send)
    assert [m["type"] for m in channel.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


@pytest.mark.parametrize(
    ("path", "raw_path"),
    [
        ("/api" + PATH + "/status", ("/api" + PATH + "/status").encode()),  # uvicorn, Starlette
        (PATH + "/status", (PATH + "/status").encode()),  # servers that leave root_path out
        (PATH + "/status", None),  # raw_path is optional in the spec
    ],
)
async def test_the_signed_url_keeps_root_path_whichever_way_the_server_reports_it(
    emulator: RunningEmulator, path: str, raw_path: bytes | None
) -> None:
    public = "https://hooks.example.com"
    form = _form(emulator)
    body = urlencode(form).encode()
    signature = compute_signature(emulator.auth_token, public + "/api" + PATH + "/status", form)
    async with _receiver(emulator) as connector:
        hooks = create_asgi_webhook_app(
            connector, validator=connector.signature_validator, public_url=public
        )
        scope = _scope(
            "http",
            method="POST",
            scheme="http",
            root_path="/api",
            path=path,
            query_string=b"",
            headers=[
                (b"host", b"127.0.0.1:8000"),
                (b"content-type", b"application/x-www-form-urlencoded"),
                (b"content-length", str(len(body)).encode()),
                (b"x-twilio-signature", signature.encode()),
            ],
        )
        if raw_path is not None:
            scope["raw_path"] = raw_path
        channel = Channel({"type": "http.request", "body": body, "more_body": False})
        await hooks(scope, channel.receive, channel.send)
    start, answer = channel.sent
    assert (start["status"], answer["body"]) == (200, TwiML.EMPTY.encode())
    assert (b"content-type", b"text/xml; charset=utf-8") in start["headers"]
