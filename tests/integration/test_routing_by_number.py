"""One webhook server, several business numbers: each event reaches its number's handler."""

from __future__ import annotations

import aiohttp

from ratatosk import ConnectionSettings
from ratatosk.adapters.http_server import start_server
from ratatosk.adapters.routing import messages_by_number, statuses_by_number
from ratatosk.bootstrap import build_webhook_app
from ratatosk.domain.result import ReceiveResult, StatusUpdate
from ratatosk.testing import FakeTwilio
from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector

SHOP = "whatsapp:+14155238886"
SUPPORT = "whatsapp:+14155550100"
OTHER = "whatsapp:+14155550199"
CUSTOMER = "whatsapp:+15550004444"
PATH = "/webhooks/twilio/whatsapp"


async def test_inbound_messages_and_callbacks_go_to_their_numbers_handler() -> None:
    fake = FakeTwilio()
    got: dict[str, list[str]] = {"shop": [], "support": [], "default": [], "status": []}

    def collect(name: str):  # type: ignore[no-untyped-def]
        async def handler(received: ReceiveResult) -> None:
            got[name].extend(m.receiver.address for m in received.messages if m.receiver)

        return handler

    async def shop_status(update: StatusUpdate) -> None:
        got["status"].append(update.message_id)

    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", fake.account_sid)
        .set_parameter("AuthToken", fake.auth_token)
    )
    async with TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP, settings, transport=fake
    ) as connector:
        app = build_webhook_app(
            connector,
            on_message=messages_by_number(
                {SHOP: collect("shop"), SUPPORT: collect("support")}, default=collect("default")
            ),
            on_status=statuses_by_number({SHOP: shop_status}),
        )
        server = await start_server(app)
        try:
            async with aiohttp.ClientSession() as http:
                for to in (SHOP, SUPPORT, OTHER):
                    url = server.url + PATH
                    body, signature = fake.inbound_message_body(url, CUSTOMER, to, "hi")
                    await _post(http, url, body, signature)
                sent = fake.model.create_message(
                    fake.account_sid, [("To", CUSTOMER), ("From", SHOP), ("Body", "x")]
                )
                sid = sent.body["sid"]  # type: ignore[index]
                for status, sender_sid in (("delivered", sid),):
                    url = server.url + PATH + "/status"
                    body, signature = fake.status_callback_body(url, sender_sid, status)
                    await _post(http, url, body, signature)
        finally:
            await server.close()
    assert got["shop"] == [SHOP]
    assert got["support"] == [SUPPORT]
    assert got["default"] == [OTHER]
    assert got["status"] == [sid]


async def _post(http: aiohttp.ClientSession, url: str, body: str, signature: str) -> None:
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature,
    }
    async with http.post(url, data=body, headers=headers) as response:
        assert response.status == 200, await response.text()
