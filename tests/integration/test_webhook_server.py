"""The webhook server as Twilio meets it, both of them: aiohttp's, and the ASGI app under uvicorn.

Every case runs against both apps (tests/webhook_apps.py serves them on
loopback), so the two answer alike from their one shared core: same
acceptances, limits, refusals and ``public_url`` / forwarded-header rules.
Deliveries come from the emulator (which signs them like Twilio) or are
signed here with the account's token; the handlers are plain coroutines that
record what they get. Attack and load cases live in tests/resilience;
what only the ASGI app does (mounts, lifespan, its own process) in
test_asgi_app.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from ratatosk import (
    ConnectionSettings,
    MessageBuilder,
    MessageStatus,
    ReceiveResult,
    StatusUpdate,
    TextContent,
)
from ratatosk.adapters.redis import RedisStores
from ratatosk.emulator.app import RunningEmulator, start_emulator
from ratatosk.testing import FakeTwilio
from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector, TwiML
from ratatosk.twilio.errors import TwilioErrorCodes
from ratatosk.twilio.signature import body_sha256, compute_signature
from redis_support import RedisServer
from webhook_apps import KINDS, Served, serve_webhooks

CUSTOMER = "whatsapp:+15551234567"
BUSINESS = "whatsapp:+14155238886"
PATH = "/webhooks/twilio/whatsapp"


class Recorder:
    def __init__(self) -> None:
        self.messages: list[ReceiveResult] = []
        self.statuses: list[StatusUpdate] = []

    async def on_message(self, received: ReceiveResult) -> None:
        self.messages.append(received)

    async def on_status(self, update: StatusUpdate) -> None:
        self.statuses.append(update)


class Answer:
    def __init__(self, status: int, content_type: str, body: str, headers: Mapping[str, str]):
        self.status = status
        self.content_type = content_type
        self.body = body
        self.headers = headers


async def post(
    url: str,
    data: Any,
    headers: Mapping[str, str],
) -> Answer:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers=dict(headers)) as response,
    ):
        body = await response.text()
        return Answer(response.status, response.content_type, body, dict(response.headers))


class Server:
    def __init__(self, served: Served, recorder: Recorder, token: str) -> None:
        self.served = served
        self.url = served.url
        self.stats = served.stats
        self.recorder = recorder
        self.token = token

    async def post(
        self, path: str, form: dict[str, str], *, headers: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        answer = await self.answer(path, form, headers=headers)
        return answer.status, answer.content_type, answer.body

    async def answer(
        self, path: str, form: dict[str, str], *, headers: dict[str, str] | None = None
    ) -> Answer:
        signature = compute_signature(self.token, self.url + path, form)
        return await post(
            self.url + path,
            urlencode(form),
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
                **(headers or {}),
            },
        )


def _receiver(emulator: RunningEmulator) -> TwilioWhatsAppConnector:
    """A connector that only receives: the emulator's account, no sending transport."""
    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", emulator.account_sid)
        .set_parameter("AuthToken", emulator.auth_token)
    )
    return TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP, settings, transport=FakeTwilio()
    )


def _status_form(sid_digit: str, status: str, account_sid: str) -> dict[str, str]:
    return {
        "MessageSid": "SM" + sid_digit * 32,
        "MessageStatus": status,
        "To": CUSTOMER,
        "From": BUSINESS,
        "AccountSid": account_sid,
    }


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    running = await start_emulator(step_delay=0.01)
    yield running
    await running.close()


@pytest.fixture
async def connector(emulator: RunningEmulator) -> AsyncIterator[TwilioWhatsAppConnector]:
    async with _receiver(emulator) as ready:
        yield ready


@pytest.fixture
async def server(
    kind: str, emulator: RunningEmulator, connector: TwilioWhatsAppConnector
) -> AsyncIterator[Server]:
    recorder = Recorder()
    served = await serve_webhooks(
        kind,
        connector,
        validator=connector.signature_validator,
        on_message=recorder.on_message,
        on_status=recorder.on_status,
    )
    yield Server(served, recorder, emulator.auth_token)
    await served.close()


async def test_signed_inbound_from_the_emulator_reaches_the_handler(
    server: Server, emulator: RunningEmulator
) -> None:
    reply = await emulator.inject_inbound(
        server.url + PATH,
        from_=CUSTOMER,
        to=BUSINESS,
        body="Where is my order?",
        profile_name="Zoë",
    )
    assert reply["status"] == 200
    assert reply["body"] == TwiML.EMPTY
    [received] = server.recorder.messages
    [message] = received.messages
    assert message.content == TextContent("Where is my order?")
    assert message.sender is not None
    assert message.sender.address == CUSTOMER
    assert message.properties["ProfileName"] == "Zoë"


async def test_success_answers_empty_twiml_as_text_xml(server: Server) -> None:
    form = _status_form("1", "delivered", "AC" + "0" * 32)
    answer = await server.answer(PATH + "/status", form)
    assert (answer.status, answer.content_type, answer.body) == (200, "text/xml", TwiML.EMPTY)
    assert answer.headers["Content-Type"] == "text/xml; charset=utf-8"
    [update] = server.recorder.statuses
    assert update.message_id == "SM" + "1" * 32
    assert update.status is MessageStatus.DELIVERED


async def test_missing_signature_is_403_and_nothing_is_parsed(server: Server) -> None:
    answer = await post(
        server.url + PATH,
        urlencode({"MessageSid": "SM" + "2" * 32}),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (answer.status, answer.content_type) == (403, "application/json")
    assert json.loads(answer.body)["code"] == "INVALID_SIGNATURE"
    assert server.recorder.messages == []
    assert server.stats.refused_signature == 1


async def test_signed_but_unparseable_is_400_with_the_code(server: Server) -> None:
    status, content_type, body = await server.post(PATH, {"Body": "no sid, no from"})
    assert status == 400
    assert content_type == "application/json"
    assert json.loads(body)["code"] == "INVALID_WEBHOOK_DATA"
    assert server.recorder.messages == []
    assert server.stats.bad_request == 1


async def test_over_the_size_limit_is_413(server: Server) -> None:
    status, _, body = await server.post(PATH, {"Body": "x" * 70_000})
    assert status == 413
    assert "x" * 100 not in body  # never echoes the body
    assert server.recorder.messages == []
    assert server.stats.refused_size == 1


async def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit(server: Server) -> None:
    """No Content-Length to refuse early on: the limit holds while the body is read."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b"Body="
        for _ in range(20):
            yield b"x" * 4096  # 80 KiB in all, over the 64 KiB limit

    answer = await post(
        server.url + PATH,
        chunks(),
        {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"},
    )
    assert answer.status == 413
    assert json.loads(answer.body)["code"] == "INVALID_WEBHOOK_DATA"
    assert server.stats.refused_size == 1
    assert server.stats.refused_signature == 0  # refused before the signature was looked at


async def test_too_many_fields_is_413(server: Server) -> None:
    form = {f"F{i}": "1" for i in range(250)}
    status, _, body = await server.post(PATH, form)
    assert (status, json.loads(body)["message"]) == (413, "too many fields")


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        ("text/plain", b"MessageSid=SM1", 415, "UNSUPPORTED_CONTENT_TYPE"),
        (None, b"MessageSid=SM1", 415, "UNSUPPORTED_CONTENT_TYPE"),
        ("application/json", b'{"Body": "\xff"}', 400, "INVALID_WEBHOOK_DATA"),
    ],
)
async def test_media_type_and_encoding_are_refused_before_the_signature(
    server: Server, content_type: str | None, body: bytes, status: int, code: str
) -> None:
    headers = {"X-Twilio-Signature": "anything", "Content-Type": content_type or ""}
    answer = await post(server.url + PATH, body, headers)
    assert (answer.status, json.loads(answer.body)["code"]) == (status, code)
    assert server.stats.refused_signature == 0


async def test_repeated_delivery_reaches_the_handler_once(server: Server) -> None:
    form = _status_form("3", "read", "AC" + "0" * 32)
    token = {"I-Twilio-Idempotency-Token": "delivery-1"}
    for _ in range(3):
        status, _, _ = await server.post(PATH + "/status", form, headers=token)
        assert status == 200
    assert len(server.recorder.statuses) == 1
    assert server.stats.duplicates == 2


async def test_emulator_status_callbacks_arrive_signed_and_verified(
    kind: str, emulator: RunningEmulator
) -> None:
    """The whole loop: send over HTTP, the emulator calls back, the server verifies."""
    recorder = Recorder()
    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", emulator.account_sid)
        .set_parameter("AuthToken", emulator.auth_token)
        .set_parameter("ApiBaseUrl", emulator.url)
        .set_parameter("FromNumber", BUSINESS)
    )
    async with TwilioWhatsAppConnector(TwilioChannelSchemas.TWILIO_WHATSAPP, settings) as receiver:
        served = await serve_webhooks(
            kind, receiver, validator=receiver.signature_validator, on_status=recorder.on_status
        )
        try:
            callback = settings.set_parameter("StatusCallback", f"{served.url}{PATH}/status")
            async with TwilioWhatsAppConnector(
                TwilioChannelSchemas.TWILIO_WHATSAPP, callback
            ) as sender:
                message = MessageBuilder().to_phone(CUSTOMER).with_text("track me").build()
                sent = (await sender.send_message(message)).unwrap()
                for _ in range(500):  # a hang guard, not a timing assertion
                    if any(u.status is MessageStatus.READ for u in recorder.statuses):
                        break
                    await asyncio.sleep(0.02)
        finally:
            await served.close()
    seen = [u.status for u in recorder.statuses if u.message_id == sent.provider_message_id]
    # Callbacks may arrive out of order (Twilio's do too): the highest rank is what holds.
    assert max(seen, key=lambda s: s.rank) is MessageStatus.READ
    assert {MessageStatus.SENT, MessageStatus.DELIVERED} <= set(seen)
    assert served.stats.refused_signature == 0


async def test_json_webhook_with_body_sha256(
    kind: str, emulator: RunningEmulator, connector: TwilioWhatsAppConnector
) -> None:
    recorder = Recorder()
    served = await serve_webhooks(
        kind, connector, validator=connector.signature_validator, on_message=recorder.on_message
    )
    try:
        body = json.dumps(
            {
                "MessageSid": "SM" + "4" * 32,
                "AccountSid": emulator.account_sid,
                "From": CUSTOMER,
                "To": BUSINESS,
                "Body": "json hello",
                "NumMedia": "0",
            }
        )
        target = f"{served.url}{PATH}?bodySHA256={body_sha256(body)}"
        signature = compute_signature(emulator.auth_token, target, {})
        headers = {"Content-Type": "application/json", "X-Twilio-Signature": signature}
        assert (await post(target, body, headers)).status == 200
        tampered = body.replace("json hello", "json hellO")
        assert (await post(target, tampered, headers)).status == 403
    finally:
        await served.close()
    [received] = recorder.messages
    assert received.messages[0].content == TextContent("json hello")


@pytest.mark.parametrize(
    "case",
    [
        ({"public_url": "https://hooks.example.com"}, {}, 200),
        ({"public_url": "https://hooks.example.com/"}, {}, 200),
        ({}, {}, 403),  # the signature covers the public URL, not the loopback one
        (
            {"trust_forwarded": True},
            {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.example.com"},
            200,
        ),
        (
            {"trust_forwarded": True},  # the nearest proxy's value counts, not the client's
            {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example, hooks.example.com"},
            200,
        ),
        (
            {"trust_forwarded": True},
            {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.example.com, evil.example"},
            403,
        ),
        ({}, {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.example.com"}, 403),
    ],
)
async def test_behind_a_proxy_public_url_and_forwarded_headers(
    kind: str,
    emulator: RunningEmulator,
    connector: TwilioWhatsAppConnector,
    case: tuple[dict[str, Any], dict[str, str], int],
) -> None:
    options, headers, expected = case
    form = _status_form("5", "sent", emulator.account_sid)
    public = "https://hooks.example.com"
    signature = compute_signature(emulator.auth_token, public + PATH + "/status", form)
    served = await serve_webhooks(
        kind, connector, validator=connector.signature_validator, **options
    )
    try:
        answer = await post(
            served.url + PATH + "/status",
            urlencode(form),
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
                **headers,
            },
        )
    finally:
        await served.close()
    assert answer.status == expected


async def test_healthz(server: Server) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + "/healthz") as response,
    ):
        assert response.status == 200
        assert response.content_type == "application/json"
        assert await response.json() == {"status": "ok"}


async def test_unknown_paths_and_methods_are_refused(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(server.url + "/elsewhere", data=b"") as missing:
            assert missing.status == 404
        async with session.get(server.url + PATH) as wrong_method:
            assert wrong_method.status == 405
            assert "POST" in wrong_method.headers["Allow"]
    assert server.recorder.messages == []


@pytest.mark.parametrize("first_fails", [False, True])
async def test_a_repeat_during_a_slow_handler_waits_for_its_outcome(
    kind: str, emulator: RunningEmulator, connector: TwilioWhatsAppConnector, first_fails: bool
) -> None:
    """Twilio redelivers after its timeout while the first handler still runs."""
    release = asyncio.Event()
    calls: list[str] = []

    async def slow_handler(update: StatusUpdate) -> None:
        calls.append(update.message_id)
        if len(calls) == 1:
            await release.wait()
            if first_fails:
                raise RuntimeError("database down")

    served = await serve_webhooks(
        kind, connector, validator=connector.signature_validator, on_status=slow_handler
    )
    server = Server(served, Recorder(), emulator.auth_token)
    form = _status_form("6", "delivered", emulator.account_sid)
    try:
        first = asyncio.create_task(server.post(PATH + "/status", form))
        while not calls:
            await asyncio.sleep(0.01)
        repeat = asyncio.create_task(server.post(PATH + "/status", form))
        await asyncio.sleep(0.1)
        assert not repeat.done()  # waiting, not answered "duplicate" yet
        release.set()
        first_status = (await first)[0]
        repeat_status = (await repeat)[0]
    finally:
        await served.close()
    if first_fails:
        assert (first_status, repeat_status) == (500, 200)
        assert len(calls) == 2  # the repeat was handled: nothing lost
        assert served.stats.handler_errors == 1
    else:
        assert (first_status, repeat_status) == (200, 200)
        assert len(calls) == 1  # the repeat was a duplicate
        assert served.stats.duplicates == 1


async def test_a_repeat_that_outwaits_the_first_is_told_to_retry_not_duplicate(
    kind: str, emulator: RunningEmulator, connector: TwilioWhatsAppConnector
) -> None:
    """A handler slower than ``in_flight_wait``: the repeat gets 503, never "duplicate, 200"."""
    release = asyncio.Event()
    calls: list[str] = []

    async def stuck_handler(update: StatusUpdate) -> None:
        calls.append(update.message_id)
        await release.wait()

    served = await serve_webhooks(
        kind,
        connector,
        validator=connector.signature_validator,
        on_status=stuck_handler,
        in_flight_wait=0.05,
    )
    server = Server(served, Recorder(), emulator.auth_token)
    form = _status_form("7", "delivered", emulator.account_sid)
    try:
        first = asyncio.create_task(server.post(PATH + "/status", form))
        while not calls:
            await asyncio.sleep(0.01)
        in_flight = await server.answer(PATH + "/status", form)
        release.set()
        assert (await first)[0] == 200
        after, _, _ = await server.post(PATH + "/status", form)
    finally:
        await served.close()
    assert (in_flight.status, in_flight.content_type) == (503, "application/json")
    assert json.loads(in_flight.body)["code"] == "DELIVERY_IN_FLIGHT"
    assert in_flight.headers["Retry-After"] == "1"
    assert after == 200
    assert calls == ["SM" + "7" * 32]
    assert served.stats.in_flight == 1
    assert served.stats.duplicates == 1


async def test_a_handler_failing_every_time_is_given_up_after_max_attempts(
    kind: str, emulator: RunningEmulator, connector: TwilioWhatsAppConnector
) -> None:
    calls: list[str] = []

    async def broken(update: StatusUpdate) -> None:
        calls.append(update.message_id)
        raise RuntimeError("a bug")

    served = await serve_webhooks(
        kind,
        connector,
        validator=connector.signature_validator,
        on_status=broken,
        max_handler_attempts=2,
    )
    server = Server(served, Recorder(), emulator.auth_token)
    form = _status_form("8", "delivered", emulator.account_sid)
    try:
        statuses = [(await server.post(PATH + "/status", form))[0] for _ in range(3)]
    finally:
        await served.close()
    assert statuses == [500, 500, 200]
    assert len(calls) == 2
    assert served.stats.abandoned == 1


async def test_an_unreachable_dedup_store_is_503_never_200(
    kind: str,
    emulator: RunningEmulator,
    connector: TwilioWhatsAppConnector,
    own_redis_server: RedisServer,
) -> None:
    """A real Redis stopped under the server: Twilio is told to retry, and its retry is handled."""
    recorder = Recorder()
    stores = RedisStores.from_url(own_redis_server.url, timeout=1.0)
    served = await serve_webhooks(
        kind,
        connector,
        validator=connector.signature_validator,
        on_status=recorder.on_status,
        dedup=stores.deduplicator(),
    )
    server = Server(served, recorder, emulator.auth_token)
    form = _status_form("9", "delivered", emulator.account_sid)
    try:
        own_redis_server.stop()
        refused = await server.answer(PATH + "/status", form)
        own_redis_server.start()
        retried, _, _ = await server.post(PATH + "/status", form)
    finally:
        await served.close()
        await stores.close()
    assert refused.status == 503
    assert json.loads(refused.body)["code"] == TwilioErrorCodes.STATE_STORE_UNAVAILABLE
    assert refused.headers["Retry-After"] == "5"
    assert retried == 200
    assert [u.message_id for u in recorder.statuses] == ["SM" + "9" * 32]
    assert served.stats.store_unavailable == 1
