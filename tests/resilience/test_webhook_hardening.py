"""Issue 16's findings against the real webhook server on loopback, each now refused.

Every case here is an attack (or an accident) that got through before: it is
replayed with real HTTP against ``create_webhook_app`` served by aiohttp, and
the test checks what the handler saw. ``docs/reliability.md`` lists the
findings with what the server does now.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from multidict import MultiDict
from resilience_support import serve_app
from twilio.request_validator import RequestValidator

from ratatosk import ConnectionSettings, ReceiveResult, StatusUpdate
from ratatosk.adapters.http_server import RunningServer, _BriefMalformedRequests, start_server
from ratatosk.adapters.webhook_server import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    STATS,
    create_webhook_app,
)
from ratatosk.emulator.model import inbound_form, status_callback_params
from ratatosk.testing import FakeTwilio
from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector, TwiML
from ratatosk.twilio.signature import TwilioSignatureValidator, compute_signature

ACCOUNT = "AC" + "16" * 16
TOKEN = "hardening-token-16161616161616"
PUBLIC = "https://hooks.example.com"
PATH = "/webhooks/twilio/whatsapp"
STATUS_PATH = PATH + "/status"
CUSTOMER = "whatsapp:+15551234567"
BUSINESS = "whatsapp:+14155238886"
FORM = "application/x-www-form-urlencoded"
SID = "SM" + "ab" * 16


class Hooks:
    """A running server, what its handlers saw, and a client that signs like Twilio."""

    def __init__(self) -> None:
        self.messages: list[ReceiveResult] = []
        self.statuses: list[StatusUpdate] = []
        self.url = ""
        self.app: web.Application | None = None

    async def on_message(self, received: ReceiveResult) -> None:
        self.messages.append(received)

    async def on_status(self, update: StatusUpdate) -> None:
        self.statuses.append(update)

    @property
    def stats(self) -> Any:
        assert self.app is not None
        return self.app[STATS]

    async def post(
        self,
        path: str,
        pairs: list[tuple[str, str]] | dict[str, str],
        *,
        token: str | None = None,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        """POST a form signed for ``PUBLIC + path`` (or with the given signature)."""
        items = list(pairs.items()) if isinstance(pairs, dict) else pairs
        params: dict[str, list[str]] = {}
        for name, value in items:
            params.setdefault(name, []).append(value)
        sent = {
            "Content-Type": FORM,
            SIGNATURE_HEADER: signature or compute_signature(TOKEN, PUBLIC + path, params),
            **(headers or {}),
        }
        if token is not None:
            sent[IDEMPOTENCY_HEADER] = token
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url + path, data=urlencode(items), headers=sent) as response,
        ):
            return response.status, await response.text()


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    settings = (
        ConnectionSettings().set_parameter("AccountSid", ACCOUNT).set_parameter("AuthToken", TOKEN)
    )
    connector = TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP, settings, transport=FakeTwilio(ACCOUNT, TOKEN)
    )
    (await connector.initialize()).unwrap()
    server = Hooks()
    server.app = create_webhook_app(
        connector,
        validator=connector.signature_validator,
        public_url=PUBLIC,
        on_message=server.on_message,
        on_status=server.on_status,
    )
    runner, server.url = await serve_app(server.app)
    yield server
    await runner.cleanup()
    await connector.shutdown()


def inbound(sid: str = SID, **overrides: str) -> dict[str, str]:
    form = inbound_form(sid=sid, account_sid=ACCOUNT, from_=CUSTOMER, to=BUSINESS, body="hi")
    return form | overrides


def status(sid: str = SID, value: str = "delivered", **overrides: str) -> dict[str, str]:
    form = status_callback_params(
        sid=sid,
        account_sid=ACCOUNT,
        from_=BUSINESS,
        to=CUSTOMER,
        status=value,
        channel_install_sid="XE" + "0" * 32,
    )
    return form | overrides


# --- 1. deduplication cannot be replayed past or pre-claimed ---------------------------------


class TestDeduplicationKeys:
    """The event's own key is always claimed; the unsigned token only adds to it."""

    async def test_a_replay_with_fresh_tokens_is_handled_once(self, hooks: Hooks) -> None:
        """One captured, signed inbound webhook sent again with new tokens, or none."""
        for token in ("captured-token", "fresh-1", "fresh-2", None):
            status_code, _ = await hooks.post(PATH, inbound(), token=token)
            assert status_code == 200
        assert len(hooks.messages) == 1
        assert hooks.stats.duplicates == 3

    async def test_a_replayed_status_callback_with_fresh_tokens_is_handled_once(
        self, hooks: Hooks
    ) -> None:
        """The same for a status callback: its key is MessageSid, status and error code."""
        for token in ("t-1", "t-2", None):
            assert (await hooks.post(STATUS_PATH, status(), token=token))[0] == 200
        assert len(hooks.statuses) == 1

    @pytest.mark.parametrize(
        "chosen",
        [
            f"status:{SID}:delivered",  # the old key of the genuine callback
            f"event:status:{SID}:delivered:",  # the key as the server builds it now
            f"status:{SID}:delivered:",
        ],
    )
    async def test_a_token_cannot_pre_claim_a_later_event(self, hooks: Hooks, chosen: str) -> None:
        """A replay whose token equals a later callback's key does not swallow that callback."""
        replayed, _ = await hooks.post(PATH, inbound("SM" + "cd" * 16), token=chosen)
        genuine, _ = await hooks.post(STATUS_PATH, status())  # Twilio's, without a token
        assert (replayed, genuine) == (200, 200)
        assert [u.message_id for u in hooks.statuses] == [SID]
        assert hooks.stats.duplicates == 0

    async def test_a_seen_token_marks_a_repeat(self, hooks: Hooks) -> None:
        """Either key seen before means a repeat: the token of a handled delivery counts too."""
        assert (await hooks.post(STATUS_PATH, status(), token="t-seen"))[0] == 200
        again, _ = await hooks.post(STATUS_PATH, status(value="read"), token="t-seen")
        assert again == 200
        assert [u.data["twilio_status"] for u in hooks.statuses] == ["delivered"]
        assert hooks.stats.duplicates == 1
        # ...and the refused repeat did not claim its event: it is handled when it comes.
        assert (await hooks.post(STATUS_PATH, status(value="read")))[0] == 200
        assert [u.data["twilio_status"] for u in hooks.statuses] == ["delivered", "read"]

    async def test_an_error_code_makes_a_status_an_event_of_its_own(self, hooks: Hooks) -> None:
        """Two 'failed' callbacks of one message with different error codes are both handled."""
        for code in ("30008", "63016", "63016"):
            assert (await hooks.post(STATUS_PATH, status(value="failed", ErrorCode=code)))[0] == 200
        assert [u.error_code for u in hooks.statuses] == [30008, 63016]

    async def test_a_huge_token_is_still_a_token(self, hooks: Hooks) -> None:
        """A 4 KiB token is stored as a digest and still recognises the repeat."""
        token = "x" * 4096
        for sid in ("SM" + "01" * 16, "SM" + "02" * 16):
            assert (await hooks.post(PATH, inbound(sid), token=token))[0] == 200
        assert len(hooks.messages) == 1


async def test_the_answer_body_of_a_repeat_is_empty_twiml(hooks: Hooks) -> None:
    """A repeat is answered exactly like a handled delivery, so Twilio stops."""
    first = await hooks.post(PATH, inbound())
    again = await hooks.post(PATH, inbound(), token="other")
    assert first == again == (200, TwiML.EMPTY)


# --- 2. idle and half-sent connections are closed ------------------------------------------


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes; a hang guard, not a timing check."""
    received = b""
    async with asyncio.timeout(30):
        while chunk := await reader.read(65536):
            received += chunk
    return received


@pytest.fixture
async def short_idle() -> AsyncIterator[RunningServer]:
    app = web.Application()
    app.router.add_get("/ping", _pong)
    server = await start_server(app, idle_timeout=0.5)
    yield server
    await server.close()


async def _pong(_: web.Request) -> web.Response:
    return web.Response(text="pong")


class TestIdleConnections:
    """``start_server`` bounds how long a connection may hold a socket without a request."""

    async def test_a_connection_that_sends_nothing_is_closed(
        self, short_idle: RunningServer
    ) -> None:
        """Connect and stay silent: the server closes the connection."""
        reader, writer = await asyncio.open_connection("127.0.0.1", short_idle.port)
        assert await read_until_closed(reader) == b""
        writer.close()

    async def test_half_sent_headers_are_closed(self, short_idle: RunningServer) -> None:
        """Half the headers, then nothing: closed without an answer."""
        reader, writer = await asyncio.open_connection("127.0.0.1", short_idle.port)
        writer.write(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
        await writer.drain()
        assert await read_until_closed(reader) == b""
        writer.close()

    async def test_headers_trickled_byte_by_byte_are_closed(
        self, short_idle: RunningServer
    ) -> None:
        """Each byte arriving in time does not extend the bound: headers must be complete."""
        reader, writer = await asyncio.open_connection("127.0.0.1", short_idle.port)
        closed = asyncio.create_task(read_until_closed(reader))
        for byte in b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"s" * 400:
            if closed.done() or writer.is_closing():
                break
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.sleep(0.05)
        assert await closed == b""
        writer.close()

    async def test_an_idle_keep_alive_connection_is_closed_after_its_answer(
        self, short_idle: RunningServer
    ) -> None:
        """A whole request is answered; the connection kept alive after it is then closed."""
        reader, writer = await asyncio.open_connection("127.0.0.1", short_idle.port)
        writer.write(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        received = await read_until_closed(reader)
        assert received.startswith(b"HTTP/1.1 200")
        assert received.endswith(b"pong")
        writer.close()

    async def test_the_webhook_server_keeps_serving_while_idlers_wait(
        self, short_idle: RunningServer
    ) -> None:
        """Fifty silent connections do not stop a request from being answered."""
        idlers = [await asyncio.open_connection("127.0.0.1", short_idle.port) for _ in range(50)]
        async with (
            aiohttp.ClientSession() as session,
            session.get(short_idle.url + "/ping") as response,
        ):
            assert await response.text() == "pong"
        assert [await read_until_closed(r) for r, _ in idlers] == [b""] * 50
        for _, writer in idlers:
            writer.close()

    def test_the_bound_must_be_positive(self) -> None:
        """An idle timeout of zero would mean aiohttp's hour: refused."""
        with pytest.raises(ValueError, match="idle_timeout"):
            asyncio.run(start_server(web.Application(), idle_timeout=0))


# --- 6. malformed HTTP is logged briefly, rate-limited --------------------------------------


def _aiohttp_record(error: BaseException) -> logging.LogRecord:
    """The record aiohttp's request handler logs for a request it could not handle."""
    try:
        raise error
    except BaseException:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "ratatosk.http", logging.ERROR, __file__, 1, "Error handling request from %s",
        ("127.0.0.1",), exc_info,
    )  # fmt: skip


class TestMalformedRequestLog:
    """The filter ``start_server`` puts on aiohttp's server logger."""

    def test_a_burst_then_counted_then_reported(self) -> None:
        """Two lines a period, no traceback, no header text; the rest counted and reported."""
        clock = ManualMonotonic()
        brief = _BriefMalformedRequests(2, 60.0, clock)
        bad_header = "\x1b[2J" + "h" * 8000
        records = [_aiohttp_record(LineTooLong(bad_header, "8190")) for _ in range(5)]
        passed = [r for r in records if brief.filter(r)]
        assert len(passed) == 2
        for record in passed:
            assert record.exc_info is None
            assert record.levelno == logging.WARNING
            assert "\x1b" not in record.getMessage()
            assert len(record.getMessage()) < 200
        assert "only counted" in passed[1].getMessage()
        clock.now += 61
        later = _aiohttp_record(LineTooLong(bad_header, "8190"))
        assert brief.filter(later)
        assert "3 more before this were not logged" in later.getMessage()

    def test_other_errors_keep_their_traceback(self) -> None:
        """A bug in a handler is not a malformed request: logged as aiohttp logs it."""
        brief = _BriefMalformedRequests(0, 60.0, ManualMonotonic())
        record = _aiohttp_record(RuntimeError("a bug"))
        assert brief.filter(record)
        assert record.exc_info is not None
        assert record.levelno == logging.ERROR


class ManualMonotonic:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --- 5. a handler that fails the same way every time ------------------------------------------


async def test_a_handler_failing_every_time_is_given_up_after_three_attempts() -> None:
    """500 three times (each one a delivery Twilio may retry), then 200: Twilio stops."""
    calls: list[str] = []

    async def broken(received: ReceiveResult) -> None:
        calls.append(received.messages[0].id)
        raise UnicodeEncodeError("utf-8", "\ud83d", 0, 1, "surrogates not allowed")

    settings = (
        ConnectionSettings().set_parameter("AccountSid", ACCOUNT).set_parameter("AuthToken", TOKEN)
    )
    async with TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP, settings, transport=FakeTwilio(ACCOUNT, TOKEN)
    ) as connector:
        server = Hooks()
        server.app = create_webhook_app(
            connector, validator=connector.signature_validator, public_url=PUBLIC, on_message=broken
        )
        runner, server.url = await serve_app(server.app)
        try:
            answers = [(await server.post(PATH, inbound(), token=f"t-{n}"))[0] for n in range(5)]
            other = await server.post(PATH, inbound("SM" + "ef" * 16))
        finally:
            await runner.cleanup()
    assert answers == [500, 500, 500, 200, 200]
    assert calls == [SID] * 3 + ["SM" + "ef" * 16]  # another event still gets its attempts
    assert other[0] == 500
    assert (server.stats.abandoned, server.stats.duplicates) == (1, 2)


def test_max_handler_attempts_must_be_positive() -> None:
    """Zero attempts would drop every event unhandled: refused."""
    with pytest.raises(ValueError, match="max_handler_attempts"):
        create_webhook_app(
            FakeReceiver(), validator=TwilioSignatureValidator(TOKEN), max_handler_attempts=0
        )


class FakeReceiver:
    async def receive_messages(self, source: object) -> Any:
        raise AssertionError("not called")

    async def receive_message_status(self, source: object) -> Any:
        raise AssertionError("not called")


# --- X-Forwarded-* with several values ----------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "signed_for", "expected"),
    [
        # The client put evil.example first; the proxy appended what Twilio called.
        ({"X-Forwarded-Host": "evil.example, hooks.example.com"}, "hooks.example.com", 200),
        ({"X-Forwarded-Host": "evil.example, hooks.example.com"}, "evil.example", 403),
        ({"X-Forwarded-Proto": "http, https"}, "hooks.example.com", 200),
    ],
)
async def test_forwarded_headers_use_the_value_the_nearest_proxy_set(
    headers: dict[str, str], signed_for: str, expected: int
) -> None:
    """With ``trust_forwarded``, the last of several values is the one checked."""
    settings = (
        ConnectionSettings().set_parameter("AccountSid", ACCOUNT).set_parameter("AuthToken", TOKEN)
    )
    async with TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP, settings, transport=FakeTwilio(ACCOUNT, TOKEN)
    ) as connector:
        server = Hooks()
        server.app = create_webhook_app(
            connector,
            validator=connector.signature_validator,
            trust_forwarded=True,
            on_message=server.on_message,
        )
        runner, server.url = await serve_app(server.app)
        form = inbound()
        signature = compute_signature(TOKEN, f"https://{signed_for}{PATH}", form)
        sent = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.example.com"} | headers
        try:
            status_code, _ = await server.post(PATH, form, signature=signature, headers=sent)
        finally:
            await runner.cleanup()
    assert status_code == expected
    assert len(server.messages) == (1 if expected == 200 else 0)


# --- a signed body split again into other fields ----------------------------------------------


class TestResplitBodies:
    """Twilio signs keys and values simply joined, so a signed body can be re-split."""

    def resplit(self) -> tuple[list[tuple[str, str]], str]:
        """A genuine inbound body whose text spells a second From, re-split by an attacker."""
        genuine = inbound(Body="hiFromwhatsapp:+10000000000")
        signature = compute_signature(TOKEN, PUBLIC + PATH, genuine)
        forged = [("From", "whatsapp:+10000000000"), ("Body", "hi")] + [
            (k, v) for k, v in genuine.items() if k != "Body"
        ]
        return forged, signature

    def test_the_resplit_body_carries_a_valid_signature(self) -> None:
        """The premise: the signature holds for the re-split body (Twilio's validator agrees)."""
        forged, signature = self.resplit()
        params: dict[str, list[str]] = {}
        for name, value in forged:
            params.setdefault(name, []).append(value)
        assert TwilioSignatureValidator(TOKEN).validate(PUBLIC + PATH, params, signature)
        assert RequestValidator(TOKEN).validate(PUBLIC + PATH, MultiDict(forged), signature)

    async def test_a_repeated_single_value_field_is_refused(self, hooks: Hooks) -> None:
        """The re-split is a 400 naming the repeated field; the handler never sees it."""
        forged, signature = self.resplit()
        status_code, text = await hooks.post(PATH, forged, signature=signature)
        assert status_code == 400
        answer = json.loads(text)
        assert answer["code"] == "INVALID_WEBHOOK_DATA"
        assert "From" in answer["message"]
        assert hooks.messages == []

    @pytest.mark.parametrize(
        "field", ["To", "Body", "MessageSid", "ButtonPayload", "AccountSid", "MediaUrl0"]
    )
    async def test_any_field_twilio_sends_once(self, hooks: Hooks, field: str) -> None:
        """Signed correctly, but a single-value field twice: 400, on both routes."""
        for path, form in ((PATH, inbound()), (STATUS_PATH, status())):
            pairs = [*form.items(), (field, "one"), (field, "two")]
            assert (await hooks.post(path, pairs))[0] == 400
        status_twice = [*status().items(), ("MessageStatus", "read")]
        assert (await hooks.post(STATUS_PATH, status_twice))[0] == 400
        assert hooks.messages == []
        assert hooks.statuses == []

    async def test_unknown_fields_may_repeat(self, hooks: Hooks) -> None:
        """A field Twilio does not define is kept, all its values, as before."""
        pairs = [*inbound().items(), ("Custom", "a"), ("Custom", "b")]
        assert (await hooks.post(PATH, pairs))[0] == 200
        [received] = hooks.messages
        assert received.messages[0].properties["Custom"] == ("a", "b")
