"""What a user sees of a send beyond success: what it took, and whose time it waited on."""

from __future__ import annotations

from ratatosk import ConnectionSettings, MessageBuilder
from ratatosk.testing import FakeTwilio
from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector

SENDER = "whatsapp:+14155238886"


def connector_for(fake: FakeTwilio) -> TwilioWhatsAppConnector:
    """As the README builds it: no clock, no policy, no catalog given."""
    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", fake.account_sid)
        .set_parameter("AuthToken", fake.auth_token)
        .set_parameter("FromNumber", SENDER)
    )
    return TwilioWhatsAppConnector(TwilioChannelSchemas.TWILIO_WHATSAPP, settings, transport=fake)


def hello(n: int = 0) -> object:
    return MessageBuilder().to_phone(f"whatsapp:+1555{n:07d}").with_text("hello").build()


async def test_a_result_says_how_many_attempts_and_how_long_it_waited() -> None:
    fake = FakeTwilio()
    fake.fail_next(20429, 429, retry_after=1.5)
    async with connector_for(fake) as connector:
        retried = (await connector.send_message(hello())).unwrap()  # type: ignore[arg-type]
        plain = (await connector.send_message(hello(1))).unwrap()  # type: ignore[arg-type]
    assert retried.data["attempts"] == 2
    assert retried.data["waited_seconds"] == 1.5
    assert retried.data["reconciled"] is False
    assert plain.data["attempts"] == 1
    assert plain.data["waited_seconds"] == 0


async def test_a_result_says_it_was_reconciled() -> None:
    fake = FakeTwilio()
    fake.reset_next(after_store=True)  # stored, then the connection dropped
    async with connector_for(fake) as connector:
        found = (await connector.send_message(hello())).unwrap()  # type: ignore[arg-type]
    assert found.data["reconciled"] is True
    assert found.provider_message_id == fake.outbox[0].sid


async def test_pacing_with_the_fake_waits_on_the_fake_clock_not_on_real_time() -> None:
    """200 sends from one sender at 80 a second: the fake's clock moves, the test does not wait."""
    fake = FakeTwilio()
    before = fake.clock.monotonic()
    async with connector_for(fake) as connector:
        results = await connector.send_batch([hello(n) for n in range(200)])  # type: ignore[misc]
    assert all(r.successful for r in results)
    paced = [r.unwrap().data["paced_seconds"] for r in results]
    assert sum(paced) > 1.4  # 120 sends past the burst of 80, 1/80 s each: the budget applied
    assert fake.clock.monotonic() - before >= sum(paced)  # and was waited on the fake's clock
