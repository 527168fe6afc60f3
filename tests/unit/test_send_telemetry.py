"""What a send tells whoever watches it: the Telemetry port and the ``on_retry`` hook.

The telemetry here is a small recording implementation of the port (the
OpenTelemetry adapter is tested in tests/integration/test_otel.py); the
sends go through the real connector and FakeTwilio.
"""

from __future__ import annotations

import asyncio

import attrs
import pytest

from ratatosk import ConnectionSettings, Message, MessageBuilder
from ratatosk.ports import (
    RetryNotice,
    SendEnd,
    SendObservation,
    Telemetry,
    WebhookAnswer,
    WebhookObservation,
)
from ratatosk.testing import FakeTwilio
from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector
from ratatosk.twilio.send import RetryHook

SENDER = "whatsapp:+14155238886"
CUSTOMER = "whatsapp:+15551234567"


@attrs.define
class Watched:
    message_id: str
    events: list[tuple[str, object]] = attrs.field(factory=list)

    def retrying(self, notice: RetryNotice) -> None:
        self.events.append(("retrying", notice))

    def reconciled(self, sid: str | None, why: str) -> None:
        self.events.append(("reconciled", (sid, why)))

    def ended(self, end: SendEnd) -> None:
        self.events.append(("ended", end))


@attrs.define
class Recording:
    sends: list[Watched] = attrs.field(factory=list)

    def send_started(self, message_id: str) -> SendObservation:
        self.sends.append(Watched(message_id))
        return self.sends[-1]

    def webhook_received(self, route: str) -> WebhookObservation:
        raise NotImplementedError


class Raising:
    """Telemetry that fails at every call: sends must not notice."""

    def send_started(self, message_id: str) -> SendObservation:
        return self

    def retrying(self, notice: RetryNotice) -> None:
        raise RuntimeError("telemetry down")

    def reconciled(self, sid: str | None, why: str) -> None:
        raise RuntimeError("telemetry down")

    def ended(self, end: SendEnd) -> None:
        raise RuntimeError("telemetry down")

    def webhook_received(self, route: str) -> WebhookObservation:
        raise RuntimeError("telemetry down")

    def answered(self, answer: WebhookAnswer) -> None:
        raise RuntimeError("telemetry down")


def connector_for(
    fake: FakeTwilio, *, telemetry: Telemetry | None = None, on_retry: RetryHook | None = None
) -> TwilioWhatsAppConnector:
    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", fake.account_sid)
        .set_parameter("AuthToken", fake.auth_token)
        .set_parameter("FromNumber", SENDER)
    )
    return TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP,
        settings,
        transport=fake,
        telemetry=telemetry,
        on_retry=on_retry,
    )


def hello(message_id: str = "order-1") -> Message:
    return MessageBuilder().with_id(message_id).to_phone(CUSTOMER).with_text("hello").build()


def test_the_recording_telemetry_is_a_telemetry() -> None:
    """The port is a runtime-checkable Protocol, as the other ports are."""
    assert isinstance(Recording(), Telemetry)


class TestSendTelemetry:
    async def test_a_retry_then_a_reconcile_are_told_in_order_then_the_end(self) -> None:
        """A 429 then a lost answer Twilio had stored: retrying, reconciled, ended SENT."""
        fake = FakeTwilio()
        fake.fail_next(20429, 429, retry_after=1.5)
        fake.reset_next(after_store=True)
        telemetry = Recording()
        async with connector_for(fake, telemetry=telemetry) as connector:
            sent = (await connector.send_message(hello())).unwrap()
        [watched] = telemetry.sends
        assert watched.message_id == "order-1"
        kinds = [kind for kind, _ in watched.events]
        assert kinds == ["retrying", "reconciled", "ended"]
        notice = watched.events[0][1]
        assert notice == RetryNotice(
            message_id="order-1",
            attempt=1,
            failure="HTTP 429, Twilio 20429",
            wait=1.5,
            provider_code=20429,
            http_status=429,
        )
        assert watched.events[1][1] == (sent.provider_message_id, "found")
        end = watched.events[2][1]
        assert isinstance(end, SendEnd)
        assert (end.outcome, end.sid, end.to) == ("SENT", sent.provider_message_id, CUSTOMER)
        assert (end.attempts, end.reconciled, end.replayed) == (2, True, False)
        assert end.duration == pytest.approx(1.5)  # the retry's wait, on the fake's clock

    async def test_a_refusal_ends_with_its_code_and_no_attempt(self) -> None:
        """Refused before Twilio was asked: the end carries the code, zero attempts."""
        telemetry = Recording()
        async with connector_for(FakeTwilio(), telemetry=telemetry) as connector:
            bad = MessageBuilder().with_id("bad-1").to_phone("whatsapp:12").with_text("x").build()
            result = await connector.send_message(bad)
        assert result.error is not None
        [(kind, end)] = telemetry.sends[0].events
        assert kind == "ended"
        assert isinstance(end, SendEnd)
        assert (end.outcome, end.attempts, end.sid) == (result.error.code, 0, None)

    async def test_twilio_refusing_ends_with_the_code_and_twilios_code(self) -> None:
        fake = FakeTwilio()
        fake.fail_next(21610, 400)
        telemetry = Recording()
        async with connector_for(fake, telemetry=telemetry) as connector:
            result = await connector.send_message(hello())
        assert result.error is not None
        end = telemetry.sends[0].events[-1][1]
        assert isinstance(end, SendEnd)
        assert (end.outcome, end.provider_code, end.attempts) == (result.error.code, 21610, 1)

    async def test_a_lost_answer_not_found_is_told_as_a_reconcile_that_found_nothing(self) -> None:
        fake = FakeTwilio()
        fake.reset_next(after_store=False)  # a read-phase loss: Twilio never stored it
        telemetry = Recording()
        async with connector_for(fake, telemetry=telemetry) as connector:
            result = await connector.send_message(hello())
        reconciles = [what for kind, what in telemetry.sends[0].events if kind == "reconciled"]
        assert len(reconciles) == 1
        assert isinstance(reconciles[0], tuple)
        sid, why = reconciles[0]
        assert sid is None
        assert why
        end = telemetry.sends[0].events[-1][1]
        assert isinstance(end, SendEnd)
        assert result.error is not None
        assert end.outcome == result.error.code

    async def test_a_second_call_of_one_message_id_ends_as_replayed(self) -> None:
        telemetry = Recording()
        async with connector_for(FakeTwilio(), telemetry=telemetry) as connector:
            await connector.send_message(hello())
            await connector.send_message(hello())
        second = telemetry.sends[1].events[-1][1]
        assert isinstance(second, SendEnd)
        assert (second.outcome, second.replayed) == ("SENT", True)

    async def test_a_cancelled_send_still_ends(self) -> None:
        """Cancelled mid-create: the observation ends (CANCELLED), so no span is left open."""
        fake = FakeTwilio()
        fake.fail_next(20429, 429, retry_after=30.0)
        telemetry = Recording()
        gate = asyncio.Event()

        async def hold(notice: RetryNotice) -> None:
            gate.set()
            await asyncio.sleep(3600)

        async with connector_for(fake, telemetry=telemetry, on_retry=hold) as connector:
            task = asyncio.create_task(connector.send_message(hello()))
            await gate.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        end = telemetry.sends[0].events[-1][1]
        assert isinstance(end, SendEnd)
        assert end.outcome == "CANCELLED"

    async def test_telemetry_that_raises_changes_nothing(self) -> None:
        """Retry, reconcile and end all raise in telemetry: the send's result is the same."""
        fake = FakeTwilio()
        fake.fail_next(20429, 429)
        fake.reset_next(after_store=True)
        async with connector_for(fake, telemetry=Raising()) as connector:
            sent = (await connector.send_message(hello())).unwrap()
        assert sent.data["attempts"] == 2
        assert sent.data["reconciled"] is True
        assert len(fake.outbox) == 1


class TestOnRetry:
    async def test_a_plain_function_is_called_once_per_retry(self) -> None:
        fake = FakeTwilio()
        fake.fail_next(20429, 429, retry_after=1.0, times=2)
        notices: list[RetryNotice] = []
        async with connector_for(fake, on_retry=notices.append) as connector:
            sent = (await connector.send_message(hello())).unwrap()
        assert sent.data["attempts"] == 3
        assert [(n.message_id, n.attempt, n.wait) for n in notices] == [
            ("order-1", 1, 1.0),
            ("order-1", 2, 1.0),
        ]
        assert notices[0].failure == "HTTP 429, Twilio 20429"

    async def test_a_coroutine_function_is_awaited_and_its_time_counts_as_waited(self) -> None:
        """An async hook that takes 0.4 s of a 1 s wait: the retry comes 1 s after, not 1.4 s."""
        fake = FakeTwilio()
        fake.fail_next(20429, 429, retry_after=1.0)
        seen: list[RetryNotice] = []

        async def hook(notice: RetryNotice) -> None:
            await fake.clock.sleep(0.4)
            seen.append(notice)

        async with connector_for(fake, on_retry=hook) as connector:
            before = fake.clock.monotonic()
            sent = (await connector.send_message(hello())).unwrap()
        assert [n.attempt for n in seen] == [1]
        assert sent.data["attempts"] == 2
        assert fake.clock.monotonic() - before == pytest.approx(1.0)

    async def test_no_retry_no_call(self) -> None:
        notices: list[RetryNotice] = []
        async with connector_for(FakeTwilio(), on_retry=notices.append) as connector:
            (await connector.send_message(hello())).unwrap()
        assert notices == []

    async def test_a_hook_that_raises_does_not_stop_the_retry(self) -> None:
        fake = FakeTwilio()
        fake.fail_next(20429, 429)

        def hook(notice: RetryNotice) -> None:
            raise ValueError("bug in the user's hook")

        async with connector_for(fake, on_retry=hook) as connector:
            sent = (await connector.send_message(hello())).unwrap()
        assert sent.data["attempts"] == 2

    def test_a_hook_that_is_not_callable_is_refused(self) -> None:
        with pytest.raises(TypeError, match="on_retry"):
            connector_for(FakeTwilio(), on_retry="print")  # type: ignore[arg-type]
