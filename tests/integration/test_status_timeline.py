"""Status callbacks out of order and twice, end to end: the timeline keeps what counts.

The emulator (a real HTTP server) delivers one message's callbacks as
``read, sent, delivered, delivered`` to a real webhook server; the handler is
told which ones moved the message forward, and the connector answers the
message's status from what it received, without asking Twilio.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from ratatosk import ConnectionSettings, MessageBuilder, MessageStatus
from ratatosk.adapters.http_server import start_server
from ratatosk.bootstrap import build_webhook_app
from ratatosk.domain.result import StatusUpdate
from ratatosk.emulator.app import start_emulator
from ratatosk.ports import StatusEvent
from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector
from ratatosk.twilio.tracking import advances, merge

CUSTOMER = "whatsapp:+15550003333"
BUSINESS = "whatsapp:+14155238886"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _event(status: str, code: int | None = None) -> StatusEvent:
    return StatusEvent(status=status, error_code=code, at=T0)


def test_the_ranks_move_a_message_only_forward() -> None:
    assert advances(None, _event("queued"))
    assert advances(_event("sent"), _event("delivered"))
    assert not advances(_event("read"), _event("sent"))
    assert not advances(_event("delivered"), _event("delivered"))  # a repeat does not count
    assert advances(_event("sent"), _event("undelivered", 63016))  # a failure after sent counts
    assert not advances(_event("delivered"), _event("undelivered", 63016))  # not after delivered
    timeline = None
    for status in ("read", "sent", "delivered"):
        timeline = merge("SM1", timeline, _event(status))
    assert timeline is not None
    assert timeline.current.status == "read"
    assert [e.status for e in timeline.history] == ["read", "sent", "delivered"]


async def test_late_and_repeated_callbacks_never_move_a_message_back() -> None:
    emulator = await start_emulator(step_delay=3600.0)  # nothing moves on its own
    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", emulator.account_sid)
        .set_parameter("AuthToken", emulator.auth_token)
        .set_parameter("ApiBaseUrl", emulator.url)
        .set_parameter("FromNumber", BUSINESS)
    )
    seen: list[StatusUpdate] = []

    async def on_status(update: StatusUpdate) -> None:
        seen.append(update)

    connector = TwilioWhatsAppConnector(TwilioChannelSchemas.TWILIO_WHATSAPP, settings)
    server = None
    try:
        (await connector.initialize()).unwrap()
        server = await start_server(build_webhook_app(connector, on_status=on_status))
        callback_url = f"{server.url}/webhooks/twilio/whatsapp/status"
        sender = TwilioWhatsAppConnector(
            TwilioChannelSchemas.TWILIO_WHATSAPP,
            settings.set_parameter("StatusCallback", callback_url),
        )
        async with sender:
            message = MessageBuilder().to_phone(CUSTOMER).with_text("track me").build()
            sid = (await sender.send_message(message)).unwrap().provider_message_id
        emulator.model.queue_callbacks(sid, ["read", "sent", "delivered", "delivered"])
        for _ in range(500):  # a hang guard, not a timing assertion
            if len(seen) >= 3:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # let a wrongly accepted fourth show up
        tracked = (await connector.get_message_status(sid, prefer_tracked=True)).unwrap()
        timeline = await connector.get_status_timeline(sid)
    finally:
        if server is not None:
            await server.close()
        await connector.shutdown()
        await emulator.close()
    # The repeated "delivered" is the same event: deduplicated before the handler.
    assert [u.data["twilio_status"] for u in seen] == ["read", "sent", "delivered"]
    assert [u.data["advanced"] for u in seen] == [True, False, False]
    assert {u.data["current_status"] for u in seen} == {MessageStatus.READ.value}
    assert tracked.status is MessageStatus.READ
    assert tracked.data["source"] == "tracker"
    assert timeline is not None
    assert [e.status for e in timeline.history] == ["read", "sent", "delivered"]


async def test_the_same_timeline_on_the_fake() -> None:
    from ratatosk import MessageSource
    from ratatosk.testing import FakeTwilio

    fake = FakeTwilio()
    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", fake.account_sid)
        .set_parameter("AuthToken", fake.auth_token)
        .set_parameter("FromNumber", BUSINESS)
    )
    url = "https://hooks.example.com/status"
    async with TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP, settings, transport=fake
    ) as connector:
        message = MessageBuilder().to_phone(CUSTOMER).with_text("track me").build()
        sid = (await connector.send_message(message)).unwrap().provider_message_id
        updates = []
        for status in ("read", "sent", "delivered"):
            body, _ = fake.status_callback_body(url, sid, status)
            received = await connector.receive_message_status(MessageSource.url_post(body))
            updates.append(received.unwrap())
        tracked = (await connector.get_message_status(sid, prefer_tracked=True)).unwrap()
    assert [u.data["advanced"] for u in updates] == [True, False, False]
    assert tracked.status is MessageStatus.READ
