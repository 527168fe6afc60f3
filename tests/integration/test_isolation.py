"""Two accounts in one process, and cancellation, over real HTTP to the emulator.

The .NET sibling kept credentials in the SDK's process-wide client, so two
connectors overwrote each other, and it ignored cancellation; these pin both.
"""

from __future__ import annotations

import asyncio

import pytest

from ratatosk import ConnectionSettings, ConnectorState, MessageBuilder
from ratatosk.emulator.app import start_emulator
from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector

SENDER = "whatsapp:+14155238886"


def _connector(url: str, sid: str, token: str) -> TwilioWhatsAppConnector:
    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", sid)
        .set_parameter("AuthToken", token)
        .set_parameter("ApiBaseUrl", url)
        .set_parameter("FromNumber", SENDER)
    )
    return TwilioWhatsAppConnector(TwilioChannelSchemas.TWILIO_WHATSAPP, settings)


async def test_two_accounts_in_one_process_never_mix() -> None:
    emulator = await start_emulator()
    second = emulator.model.add_account("AC" + "2b" * 16, "second-account-token-0000")
    try:
        async with (
            _connector(emulator.url, emulator.account_sid, emulator.auth_token) as first_conn,
            _connector(emulator.url, second.sid, second.auth_token) as second_conn,
        ):

            def message(n: int) -> object:
                return MessageBuilder().to_phone("whatsapp:+15550002222").with_text(f"m{n}").build()

            results = await asyncio.gather(
                *(first_conn.send_message(message(n)) for n in range(20)),  # type: ignore[arg-type]
                *(second_conn.send_message(message(100 + n)) for n in range(20)),  # type: ignore[arg-type]
            )
    finally:
        await emulator.close()
    sids = [r.unwrap().provider_message_id for r in results]
    owners = [emulator.model.message(sid).account_sid for sid in sids]  # type: ignore[union-attr]
    assert owners == [emulator.account_sid] * 20 + [second.sid] * 20


async def test_cancelling_a_send_cancels_the_request_and_leaks_nothing() -> None:
    emulator = await start_emulator(rate_slow=1.0, slow_seconds=1.0)
    try:
        async with _connector(emulator.url, emulator.account_sid, emulator.auth_token) as conn:
            message = MessageBuilder().to_phone("whatsapp:+15550002222").with_text("slow").build()
            task = asyncio.create_task(conn.send_message(message))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert conn.state is ConnectorState.READY
    finally:
        await emulator.close()
