"""What a queue worker does with each send's result: the pure decisions (twilio.queue_policy)."""

from __future__ import annotations

import datetime as dt

import pytest

from ratatosk.domain.errors import MessagingErrorCodes
from ratatosk.domain.result import ConnectorError, ConnectorResult, SendResult
from ratatosk.domain.status import MessageStatus
from ratatosk.twilio.errors import TwilioErrorCodes, error
from ratatosk.twilio.queue_policy import Action, decide, may_change, on_arrival, unreadable

SENT: ConnectorResult[SendResult] = ConnectorResult.success(
    SendResult(
        message_id="m1",
        provider_message_id="SM" + "1" * 32,
        status=MessageStatus.QUEUED,
        timestamp=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
)


def failed(code: str, **details: object) -> ConnectorResult[SendResult]:
    return ConnectorResult.failure(error(code, "it failed", **details))


class TestAfterASend:
    def test_a_sent_message_is_completed_with_its_result(self) -> None:
        decision = decide(SENT, deliveries=1, max_deliveries=5)
        assert decision.action is Action.COMPLETE
        assert decision.result == SENT

    @pytest.mark.parametrize(
        "code",
        [
            TwilioErrorCodes.INVALID_MESSAGE,
            TwilioErrorCodes.MESSAGE_NOT_SENT,
            TwilioErrorCodes.MESSAGE_ID_REUSED,
            TwilioErrorCodes.OUTSIDE_CONVERSATION_WINDOW,
            MessagingErrorCodes.SEND_MESSAGE_FAILED,
            MessagingErrorCodes.INVALID_RECIPIENT,
        ],
    )
    def test_a_final_refusal_is_completed_as_it_is(self, code: str) -> None:
        """Refused for good (or reported not sent): sending again would end the same."""
        result = failed(code)
        decision = decide(result, deliveries=1, max_deliveries=5)
        assert decision.action is Action.COMPLETE
        assert decision.result == result

    @pytest.mark.parametrize(
        "result",
        [
            failed(TwilioErrorCodes.SEND_OUTCOME_UNKNOWN),
            failed(TwilioErrorCodes.SEND_IN_PROGRESS),
            failed(TwilioErrorCodes.STATE_STORE_UNAVAILABLE),
            failed(TwilioErrorCodes.TEMPLATE_LOOKUP_FAILED),
            failed(TwilioErrorCodes.SEND_WHATSAPP_MESSAGE_FAILED, maybe_delivered=False),
            failed(TwilioErrorCodes.SEND_WHATSAPP_MESSAGE_FAILED, maybe_delivered=True),
            failed(MessagingErrorCodes.RATE_LIMITED, retry="now"),
        ],
    )
    def test_an_outcome_that_may_still_change_is_left_for_a_later_look(
        self, result: ConnectorResult[SendResult]
    ) -> None:
        """Unknown, held elsewhere, or not sent for a passing reason: no result stored yet."""
        decision = decide(result, deliveries=2, max_deliveries=5)
        assert decision.action is Action.LEAVE
        assert result.error is not None
        assert result.error.code in decision.reason

    def test_a_limit_twilio_says_waiting_will_not_cure_is_final(self) -> None:
        """63018 (a WhatsApp tier limit, retry "later") is not retried every visibility timeout."""
        result = failed(MessagingErrorCodes.RATE_LIMITED, retry="later")
        assert decide(result, deliveries=1, max_deliveries=5).action is Action.COMPLETE

    def test_the_last_allowed_delivery_dead_letters_with_the_last_result(self) -> None:
        """Still unknown on the last delivery: set aside, the unknown outcome kept as final."""
        decision = decide(failed(TwilioErrorCodes.SEND_OUTCOME_UNKNOWN), 5, max_deliveries=5)
        assert decision.action is Action.DEAD_LETTER
        assert decision.result is not None
        kept = decision.result.error
        assert kept is not None
        assert kept.code == TwilioErrorCodes.SEND_OUTCOME_UNKNOWN
        assert kept.details["dead_lettered"] is True
        assert kept.details["deliveries"] == 5
        assert "after 5 deliveries" in decision.reason

    def test_a_final_result_on_the_last_delivery_is_still_completed(self) -> None:
        assert decide(SENT, deliveries=5, max_deliveries=5).action is Action.COMPLETE


class TestBeforeASend:
    def test_within_the_limit_the_message_is_sent(self) -> None:
        assert on_arrival("m1", deliveries=5, max_deliveries=5) is None

    def test_past_the_limit_it_is_dead_lettered_as_unknown_without_a_try(self) -> None:
        """A worker died holding it on its last allowed delivery: nobody knows what happened."""
        decision = on_arrival("m1", deliveries=6, max_deliveries=5)
        assert decision is not None
        assert decision.action is Action.DEAD_LETTER
        assert decision.result is not None
        assert decision.result.error is not None
        assert decision.result.error.code == TwilioErrorCodes.SEND_OUTCOME_UNKNOWN
        assert decision.result.error.details["deliveries"] == 6

    def test_an_unreadable_entry_is_dead_lettered_with_why(self) -> None:
        problem = ConnectorError(
            code=MessagingErrorCodes.MESSAGE_DESERIALIZATION_FAILED, message="not JSON"
        )
        decision = unreadable(problem, deliveries=1)
        assert decision.action is Action.DEAD_LETTER
        assert decision.reason == "MESSAGE_DESERIALIZATION_FAILED: not JSON"
        assert decision.result is not None
        assert decision.result.error is not None
        assert decision.result.error.code == MessagingErrorCodes.MESSAGE_DESERIALIZATION_FAILED


def test_may_change_reads_twilios_retry_class() -> None:
    now = error(MessagingErrorCodes.RATE_LIMITED, "429", retry="now")
    never = error(MessagingErrorCodes.INVALID_RECIPIENT, "21211", retry="never")
    assert may_change(now)
    assert not may_change(never)
