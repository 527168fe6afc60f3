"""The webhook server as Twilio meets it: a real aiohttp server on loopback.

Deliveries come from the emulator (which signs them like Twilio) or are
signed here with the account's token; the handlers are plain coroutines that
record what they get. Attack and load cases live in tests/resilience.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web

from ratatosk import (
    ConnectionSettings,
    MessageBuilder,
    MessageStatus,
    ReceiveResult,
    StatusUpdate,
    TextContent,
)
from ratatosk.adapters.webhook_server import STATS, create_webhook_app
from ratatosk.emulator.app import RunningEmulator, start_emulator
from ratatosk.testing import FakeTwilio
from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector, TwiML
from ratatosk.twilio.signature import body_sha256, compute_signature

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


class Server:
    def __init__(self, url: str, app: web.Application, recorder: Recorder, token: str) -> None:
        self.url = url
        self.app = app
        self.recorder = recorder
        self.token = token

    async def post(
        self, path: str, form: dict[str, str], *, headers: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        signature = compute_signature(self.token, self.url + path, form)
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                self.url + path,
                data=urlencode(form),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": signature,
                    **(headers or {}),
                },
            ) as response,
        ):
            return response.status, response.content_type, await response.text()


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


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    running = await start_emulator(step_delay=0.01)
    yield running
    await running.close()


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def server(emulator: RunningEmulator) -> AsyncIterator[Server]:
    connector = _receiver(emulator)
    (await connector.initialize()).unwrap()
    recorder = Recorder()
    app = create_webhook_app(
        connector,
        validator=connector.signature_validator,
        on_message=recorder.on_message,
        on_status=recorder.on_status,
    )
    runner, url = await _serve(app)
    yield Server(url, app, recorder, emulator.auth_token)
    await runner.cleanup()
    await connector.shutdown()


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
    form = {"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered", "To": CUSTOMER}
    form |= {"AccountSid": "AC" + "0" * 32, "From": BUSINESS}
    status, content_type, body = await server.post(PATH + "/status", form)
    assert (status, content_type, body) == (200, "text/xml", TwiML.EMPTY)
    [update] = server.recorder.statuses
    assert update.message_id == "SM" + "1" * 32
    assert update.status is MessageStatus.DELIVERED


async def test_missing_signature_is_403_and_nothing_is_parsed(server: Server) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url + PATH, data={"MessageSid": "SM" + "2" * 32}) as response,
    ):
        assert response.status == 403
        assert (await response.json())["code"] == "INVALID_SIGNATURE"
    assert server.recorder.messages == []
    assert server.app[STATS].refused_signature == 1


async def test_signed_but_unparseable_is_400_with_the_code(server: Server) -> None:
    status, content_type, body = await server.post(PATH, {"Body": "no sid, no from"})
    assert status == 400
    assert content_type == "application/json"
    assert json.loads(body)["code"] == "INVALID_WEBHOOK_DATA"
    assert server.recorder.messages == []


async def test_over_the_size_limit_is_413(server: Server) -> None:
    status, _, body = await server.post(PATH, {"Body": "x" * 70_000})
    assert status == 413
    assert "x" * 100 not in body  # never echoes the body
    assert server.recorder.messages == []


async def test_repeated_delivery_reaches_the_handler_once(server: Server) -> None:
    form = {"MessageSid": "SM" + "3" * 32, "MessageStatus": "read", "To": CUSTOMER}
    form |= {"AccountSid": "AC" + "0" * 32, "From": BUSINESS}
    token = {"I-Twilio-Idempotency-Token": "delivery-1"}
    for _ in range(3):
        status, _, _ = await server.post(PATH + "/status", form, headers=token)
        assert status == 200
    assert len(server.recorder.statuses) == 1
    assert server.app[STATS].duplicates == 2


async def test_emulator_status_callbacks_arrive_signed_and_verified(
    emulator: RunningEmulator,
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
    receiver = TwilioWhatsAppConnector(TwilioChannelSchemas.TWILIO_WHATSAPP, settings)
    async with receiver:
        app = create_webhook_app(
            receiver, validator=receiver.signature_validator, on_status=recorder.on_status
        )
        runner, url = await _serve(app)
        try:
            callback = settings.set_parameter("StatusCallback", f"{url}{PATH}/status")
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
            await runner.cleanup()
    seen = [u.status for u in recorder.statuses if u.message_id == sent.provider_message_id]
    # Callbacks may arrive out of order (Twilio's do too): the highest rank is what holds.
    assert max(seen, key=lambda s: s.rank) is MessageStatus.READ
    assert {MessageStatus.SENT, MessageStatus.DELIVERED} <= set(seen)
    assert app[STATS].refused_signature == 0


async def test_json_webhook_with_body_sha256(emulator: RunningEmulator) -> None:
    connector = _receiver(emulator)
    recorder = Recorder()
    async with connector:
        app = create_webhook_app(
            connector, validator=connector.signature_validator, on_message=recorder.on_message
        )
        runner, url = await _serve(app)
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
            target = f"{url}{PATH}?bodySHA256={body_sha256(body)}"
            signature = compute_signature(emulator.auth_token, target, {})
            async with aiohttp.ClientSession() as session:
                headers = {"Content-Type": "application/json", "X-Twilio-Signature": signature}
                async with session.post(target, data=body, headers=headers) as ok:
                    assert ok.status == 200
                tampered = body.replace("json hello", "json hellO")
                async with session.post(target, data=tampered, headers=headers) as bad:
                    assert bad.status == 403
        finally:
            await runner.cleanup()
    [received] = recorder.messages
    assert received.messages[0].content == TextContent("json hello")


async def test_behind_a_proxy_public_url_and_forwarded_headers(emulator: RunningEmulator) -> None:
    connector = _receiver(emulator)
    form = {
        "MessageSid": "SM" + "5" * 32,
        "MessageStatus": "sent",
        "To": CUSTOMER,
        "From": BUSINESS,
        "AccountSid": emulator.account_sid,
    }
    public = "https://hooks.example.com"
    signature = compute_signature(emulator.auth_token, public + PATH + "/status", form)
    async with connector:
        for kwargs, headers, expected in [
            ({"public_url": public}, {}, 200),
            ({}, {}, 403),  # the signature covers the public URL, not the loopback one
            (
                {"trust_forwarded": True},
                {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.example.com"},
                200,
            ),
            ({}, {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.example.com"}, 403),
        ]:
            app = create_webhook_app(
                connector,
                validator=connector.signature_validator,
                **kwargs,  # type: ignore[arg-type]
            )
            runner, url = await _serve(app)
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.post(
                        url + PATH + "/status",
                        data=urlencode(form),
                        headers={
                            "Content-Type": "application/x-www-form-urlencoded",
                            "X-Twilio-Signature": signature,
                            **headers,
                        },
                    ) as response,
                ):
                    assert response.status == expected, (kwargs, headers)
            finally:
                await runner.cleanup()


async def test_healthz(server: Server) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + "/healthz") as response,
    ):
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


@pytest.mark.parametrize("first_fails", [False, True])
async def test_a_repeat_during_a_slow_handler_waits_for_its_outcome(
    emulator: RunningEmulator, first_fails: bool
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

    async with _receiver(emulator) as connector:
        app = create_webhook_app(
            connector, validator=connector.signature_validator, on_status=slow_handler
        )
        runner, url = await _serve(app)
        server = Server(url, app, Recorder(), emulator.auth_token)
        form = {"MessageSid": "SM" + "6" * 32, "MessageStatus": "delivered", "To": CUSTOMER}
        form |= {"AccountSid": emulator.account_sid, "From": BUSINESS}
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
            await runner.cleanup()
    if first_fails:
        assert (first_status, repeat_status) == (500, 200)
        assert len(calls) == 2  # the repeat was handled: nothing lost
    else:
        assert (first_status, repeat_status) == (200, 200)
        assert len(calls) == 1  # the repeat was a duplicate
        assert app[STATS].duplicates == 1


async def test_a_repeat_that_outwaits_the_first_is_told_to_retry_not_duplicate(
    emulator: RunningEmulator,
) -> None:
    """A handler slower than ``in_flight_wait``: the repeat gets 503, never "duplicate, 200"."""
    release = asyncio.Event()
    calls: list[str] = []

    async def stuck_handler(update: StatusUpdate) -> None:
        calls.append(update.message_id)
        await release.wait()

    async with _receiver(emulator) as connector:
        app = create_webhook_app(
            connector,
            validator=connector.signature_validator,
            on_status=stuck_handler,
            in_flight_wait=0.05,
        )
        runner, url = await _serve(app)
        server = Server(url, app, Recorder(), emulator.auth_token)
        form = {"MessageSid": "SM" + "7" * 32, "MessageStatus": "delivered", "To": CUSTOMER}
        form |= {"AccountSid": emulator.account_sid, "From": BUSINESS}
        try:
            first = asyncio.create_task(server.post(PATH + "/status", form))
            while not calls:
                await asyncio.sleep(0.01)
            status, content_type, body = await server.post(PATH + "/status", form)
            release.set()
            assert (await first)[0] == 200
            after, _, _ = await server.post(PATH + "/status", form)
        finally:
            await runner.cleanup()
    assert (status, content_type) == (503, "application/json")
    assert json.loads(body)["code"] == "DELIVERY_IN_FLIGHT"
    assert after == 200
    assert calls == ["SM" + "7" * 32]
    assert app[STATS].in_flight == 1
    assert app[STATS].duplicates == 1
