"""The provider-error table over real HTTP: a refused create from the emulator, a signed callback.

The same advice the unit tests see through FakeTwilio, here through the
aiohttp transport (Twilio's JSON error body parsed) and the webhook server
(a signed status callback verified, then decoded), all on loopback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web

from ratatosk import ConnectionSettings, MessageBuilder, MessagingErrorCodes, StatusUpdate
from ratatosk.adapters.webhook_server import create_webhook_app
from ratatosk.emulator.app import RunningEmulator, start_emulator
from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector
from ratatosk.twilio.provider_errors import BY_CODE
from ratatosk.twilio.signature import compute_signature

CUSTOMER = "whatsapp:+15551234567"
BUSINESS = "whatsapp:+14155238886"
STATUS_PATH = "/webhooks/twilio/whatsapp/status"


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    running = await start_emulator()
    yield running
    await running.close()


def _connector(emulator: RunningEmulator) -> TwilioWhatsAppConnector:
    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", emulator.account_sid)
        .set_parameter("AuthToken", emulator.auth_token)
        .set_parameter("ApiBaseUrl", emulator.url)
        .set_parameter("FromNumber", BUSINESS)
    )
    return TwilioWhatsAppConnector(TwilioChannelSchemas.TWILIO_WHATSAPP, settings)


async def test_a_refused_create_over_http_says_what_to_do(emulator: RunningEmulator) -> None:
    """The emulator answers 400/21610 as Twilio does: retry "never" and the remediation."""
    emulator.model.fail_next(21610)
    async with _connector(emulator) as connector:
        message = MessageBuilder().to_phone(CUSTOMER).with_text("hello").build()
        failure = (await connector.send_message(message)).error
    assert failure is not None
    assert failure.code == MessagingErrorCodes.INVALID_RECIPIENT
    assert failure.details["http_status"] == 400
    assert failure.details["retry"] == "never"
    assert failure.details["remediation"] == BY_CODE[21610].remediation


async def test_a_signed_63016_callback_reaches_the_handler_with_advice(
    emulator: RunningEmulator,
) -> None:
    """The webhook server verifies Twilio's callback form and hands on the table's advice."""
    received: list[StatusUpdate] = []

    async def on_status(update: StatusUpdate) -> None:
        received.append(update)

    async with _connector(emulator) as connector:
        app = create_webhook_app(
            connector, validator=connector.signature_validator, on_status=on_status
        )
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}{STATUS_PATH}"
        try:
            form = emulator.model.status_callback_form("SM" + "c" * 32, "undelivered", 63016)
            signature = compute_signature(emulator.auth_token, url, form)
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    url,
                    data=urlencode(form),
                    headers={
                        "Content-Type": "application/x-www-form-urlencoded",
                        "X-Twilio-Signature": signature,
                    },
                ) as response,
            ):
                assert response.status == 200
        finally:
            await runner.cleanup()
    [update] = received
    assert update.error_code == 63016
    assert update.data["retry"] == "never"
    assert update.data["remediation"] == BY_CODE[63016].remediation
