"""Errors and failed statuses say what to do next, from the one table, on every code path.

A create Twilio refuses, a status query, a status callback: each carries the
code's retry class (``retry``) and remediation in ``details`` / ``data``, and
an empty Twilio message is filled from the table. Through FakeTwilio, the
same behaviour model the emulator serves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlencode

import pytest

from ratatosk import (
    ConnectionSettings,
    MessageBuilder,
    MessageSource,
    MessageStatus,
    MessagingErrorCodes,
)
from ratatosk.domain.message import Message
from ratatosk.ports import ApiError, CreateMessageRequest, MessageResource
from ratatosk.testing import FakeTwilio
from ratatosk.twilio import TwilioChannelSchemas, TwilioErrorCodes, TwilioWhatsAppConnector
from ratatosk.twilio.provider_errors import BY_CODE
from ratatosk.twilio.resilience import RetryPolicy, SendPolicy
from ratatosk.twilio.send import api_failure

SENDER = "whatsapp:+14155238886"
RECIPIENT = "whatsapp:+15550002222"


def connector_for(fake: FakeTwilio, **kw: object) -> TwilioWhatsAppConnector:
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
        **kw,  # type: ignore[arg-type]
    )


def hello() -> Message:
    return MessageBuilder().to_phone(RECIPIENT).with_text("hello").build()


@pytest.fixture
def fake() -> FakeTwilio:
    return FakeTwilio()


@pytest.fixture
async def connector(fake: FakeTwilio) -> AsyncIterator[TwilioWhatsAppConnector]:
    async with connector_for(fake) as ready:
        yield ready


class TestCreate:
    async def test_a_refusal_says_never_and_what_to_do(
        self, connector: TwilioWhatsAppConnector, fake: FakeTwilio
    ) -> None:
        """21610 (unsubscribed): INVALID_RECIPIENT, retry "never", the table's remediation."""
        fake.fail_next(21610)
        failure = (await connector.send_message(hello())).error
        assert failure is not None
        assert (failure.code, failure.provider_code) == (
            MessagingErrorCodes.INVALID_RECIPIENT,
            21610,
        )
        assert failure.details["retry"] == "never"
        assert failure.details["remediation"] == BY_CODE[21610].remediation
        assert fake.outbox == []

    async def test_20429_is_retried_and_says_now_once_retries_run_out(
        self, fake: FakeTwilio
    ) -> None:
        """A 429 with 20429 goes again; when every attempt meets it, the error says "now"."""
        policy = SendPolicy(retry=RetryPolicy(max_attempts=2, base_delay=0.001))
        async with connector_for(fake, send_policy=policy) as connector:
            fake.fail_next(20429, status=429, retry_after=0)
            sent = (await connector.send_message(hello())).unwrap()
            assert sent.data["attempts"] == 2
            with fake.fail_all(20429, status=429, retry_after=0):
                limited = (await connector.send_message(hello())).error
        assert limited is not None
        assert limited.code == MessagingErrorCodes.RATE_LIMITED
        assert limited.details["attempts"] == 2
        assert limited.details["retry"] == "now"
        assert limited.details["remediation"] == BY_CODE[20429].remediation

    async def test_a_known_code_on_a_429_is_final(self, fake: FakeTwilio) -> None:
        """63018 on a 429 is a WhatsApp limit: one attempt, retry "later"."""
        policy = SendPolicy(retry=RetryPolicy(max_attempts=3, base_delay=0.001))
        async with connector_for(fake, send_policy=policy) as connector:
            with fake.fail_all(63018, status=429, retry_after=0):
                failure = (await connector.send_message(hello())).error
        assert failure is not None
        assert failure.details["attempts"] == 1
        assert failure.details["retry"] == "later"

    async def test_a_code_outside_the_table_gets_no_guess(
        self, connector: TwilioWhatsAppConnector, fake: FakeTwilio
    ) -> None:
        """30008 is not in the table: SEND_MESSAGE_FAILED, and no retry or remediation."""
        fake.fail_next(30008)
        failure = (await connector.send_message(hello())).error
        assert failure is not None
        assert failure.code == MessagingErrorCodes.SEND_MESSAGE_FAILED
        assert "retry" not in failure.details
        assert "remediation" not in failure.details


class SilentTwilio(FakeTwilio):
    """Twilio answering a create with a code and an empty message."""

    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code

    async def create_message(self, request: CreateMessageRequest) -> MessageResource | ApiError:
        return ApiError(status=400, code=self.code, message="")


class TestEmptyMessage:
    async def test_an_empty_twilio_message_is_filled_from_the_table(self) -> None:
        """Twilio said nothing: the error message gives the code's meaning instead."""
        async with connector_for(SilentTwilio(21610)) as connector:
            failure = (await connector.send_message(hello())).error
        assert failure is not None
        assert BY_CODE[21610].meaning in failure.message
        assert "(Twilio 21610)" in failure.message
        assert failure.details["retry"] == "never"

    def test_twilios_own_message_is_kept(self) -> None:
        """A message Twilio gave wins over the table's meaning."""
        answer = ApiError(status=400, code=21610, message="Attempt to send to unsubscribed")
        failure = api_failure(MessagingErrorCodes.INVALID_RECIPIENT, "refused", answer)
        assert failure.message == "refused: Attempt to send to unsubscribed (Twilio 21610)"
        assert BY_CODE[21610].meaning not in failure.message

    def test_a_blank_message_counts_as_empty(self) -> None:
        """Whitespace is no message either."""
        answer = ApiError(status=400, code=63007, message="  ")
        failure = api_failure(MessagingErrorCodes.INVALID_SENDER, "refused", answer)
        assert failure.message == f"refused: {BY_CODE[63007].meaning} (Twilio 63007)"


class TestStatusQuery:
    async def test_a_failed_message_carries_retry_and_remediation(
        self, connector: TwilioWhatsAppConnector, fake: FakeTwilio
    ) -> None:
        """get_message_status of a 63016 failure: the table's advice in data."""
        sid = (await connector.send_message(hello())).unwrap().provider_message_id
        fake.set_status(sid, "undelivered", error_code=63016)
        update = (await connector.get_message_status(sid)).unwrap()
        assert update.status is MessageStatus.DELIVERY_FAILED
        assert update.error_code == 63016
        assert update.data["retry"] == "never"
        assert update.data["remediation"] == BY_CODE[63016].remediation

    async def test_a_delivered_message_carries_none(
        self, connector: TwilioWhatsAppConnector, fake: FakeTwilio
    ) -> None:
        """No error code, no advice."""
        sid = (await connector.send_message(hello())).unwrap().provider_message_id
        fake.set_status(sid, "delivered")
        update = (await connector.get_message_status(sid)).unwrap()
        assert "retry" not in update.data
        assert "remediation" not in update.data

    async def test_a_refused_query_carries_the_fetch_advice(
        self, connector: TwilioWhatsAppConnector
    ) -> None:
        """An unknown SID (20404) is WHATSAPP_STATUS_QUERY_FAILED with its remediation."""
        failure = (await connector.get_message_status("SM" + "f" * 32)).error
        assert failure is not None
        assert failure.code == TwilioErrorCodes.WHATSAPP_STATUS_QUERY_FAILED
        assert failure.details["retry"] == "never"
        assert failure.details["remediation"] == BY_CODE[20404].remediation


def _callback(**fields: str) -> MessageSource:
    form = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "undelivered", **fields}
    return MessageSource.url_post(urlencode(form))


class TestStatusCallback:
    async def test_63016_carries_retry_remediation_and_a_message(
        self, connector: TwilioWhatsAppConnector
    ) -> None:
        """A callback with ErrorCode 63016 and no ErrorMessage: advice and meaning added."""
        update = (await connector.receive_message_status(_callback(ErrorCode="63016"))).unwrap()
        row = BY_CODE[63016]
        assert update.error_code == 63016
        assert update.error_message == row.meaning
        assert update.data["retry"] == "never"
        assert update.data["remediation"] == row.remediation
        assert update.data["twilio_status"] == "undelivered"

    async def test_twilios_channel_message_is_kept(
        self, connector: TwilioWhatsAppConnector
    ) -> None:
        """ChannelStatusMessage, when Twilio sends one, stays the error message."""
        source = _callback(ErrorCode="63018", ChannelStatusMessage="tier limit reached")
        update = (await connector.receive_message_status(source)).unwrap()
        assert update.error_message == "tier limit reached"
        assert update.data["retry"] == "later"

    async def test_an_unknown_code_is_passed_through(
        self, connector: TwilioWhatsAppConnector
    ) -> None:
        """30008 is reported as Twilio sent it, with nothing added."""
        update = (await connector.receive_message_status(_callback(ErrorCode="30008"))).unwrap()
        assert update.error_code == 30008
        assert update.error_message is None
        assert "retry" not in update.data
