"""The one table of Twilio codes: complete, consistent, and the only source of the code maps."""

from __future__ import annotations

import datetime as dt

import pytest

from ratatosk import MessageStatus, MessagingErrorCodes, StatusUpdate
from ratatosk.domain.errors import catalog
from ratatosk.ports import ApiError
from ratatosk.twilio import provider_errors
from ratatosk.twilio.errors import (
    PROVIDER_CODE_MAP,
    RETRYABLE_PROVIDER_CODES,
    TwilioErrorCodes,
    map_provider_code,
)
from ratatosk.twilio.provider_errors import (
    BY_CODE,
    PROVIDER_ERRORS,
    MetOn,
    ProviderError,
    Retry,
    annotate_status,
    guidance,
    provider_error,
)
from ratatosk.twilio.resilience import Outcome, classify

#: The codes issue 12 asks for, each checked against Twilio's error pages.
REQUIRED = (
    20003, 20404, 20429, 21211, 21408, 21610, 21614, 21617, 21619, 21656, 63003, 63005,
    63007, 63013, 63016, 63018, 63019, 63024, 63027, 63028, 63030, 63032, 63038, 63049, 63051,
)  # fmt: skip

#: The map as it stood before the table existed: every row must keep its kernel code.
MAP_BEFORE_THE_TABLE = {
    21211: "INVALID_RECIPIENT", 21604: "INVALID_RECIPIENT", 21610: "INVALID_RECIPIENT",
    63003: "INVALID_RECIPIENT", 63024: "INVALID_RECIPIENT", 21614: "INVALID_SENDER",
    21408: "INVALID_SENDER", 21603: "INVALID_SENDER", 63007: "INVALID_SENDER",
    20001: "INVALID_MESSAGE", 21602: "INVALID_MESSAGE", 21617: "INVALID_MESSAGE",
    21620: "INVALID_MESSAGE", 21623: "INVALID_MESSAGE", 21654: "INVALID_MESSAGE",
    21655: "INVALID_MESSAGE", 21656: "INVALID_MESSAGE", 21658: "INVALID_MESSAGE",
    20003: "INVALID_CREDENTIALS", 20429: "RATE_LIMITED", 63018: "RATE_LIMITED",
    63016: "OUTSIDE_CONVERSATION_WINDOW",
}  # fmt: skip

KERNEL_CODES = set(catalog(MessagingErrorCodes)) | set(catalog(TwilioErrorCodes))
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class TestTable:
    def test_every_code_the_connector_can_meet_has_a_row(self) -> None:
        """The issue's codes, the WhatsApp codes 63012/63021 and the old map are all rows."""
        wanted = {*REQUIRED, *MAP_BEFORE_THE_TABLE, 63012, 63021}
        assert wanted <= set(BY_CODE), sorted(wanted - set(BY_CODE))

    def test_rows_are_ordered_by_code_and_unique(self) -> None:
        """One row per code, in ascending order, so the doc reads like Twilio's dictionary."""
        codes = [row.code for row in PROVIDER_ERRORS]
        assert codes == sorted(set(codes))
        assert len(BY_CODE) == len(PROVIDER_ERRORS)

    def test_a_duplicate_code_is_refused(self) -> None:
        """Two rows for one code would make the answer depend on order: refused at import."""
        row = PROVIDER_ERRORS[0]
        with pytest.raises(ValueError, match=str(row.code)):
            provider_errors._index([row, row])

    @pytest.mark.parametrize("row", PROVIDER_ERRORS, ids=lambda row: str(row.code))
    def test_each_row_is_complete(self, row: ProviderError) -> None:
        """A kernel code that exists, a place, a class, one-line Markdown-safe texts."""
        assert row.kernel_code in KERNEL_CODES
        assert row.met
        assert isinstance(row.retry, Retry)
        for text in (row.meaning, row.remediation):
            assert text.strip() == text
            assert text
            assert "\n" not in text
            assert "|" not in text
            assert len(text) <= 100

    def test_the_window_code_is_the_twilio_constant(self) -> None:
        """63016 maps to TwilioErrorCodes.OUTSIDE_CONVERSATION_WINDOW, spelled in the table."""
        assert BY_CODE[63016].kernel_code == TwilioErrorCodes.OUTSIDE_CONVERSATION_WINDOW

    def test_only_unconfirmed_rows_say_so(self) -> None:
        """63051 has no Twilio page we could find; it is marked, and it is the only one."""
        assert [row.code for row in PROVIDER_ERRORS if not row.confirmed] == [63051]
        assert "not confirmed" in BY_CODE[63051].meaning

    @pytest.mark.parametrize(
        ("code", "retry", "met"),
        [
            (20429, Retry.NOW, MetOn.CREATE),
            (21610, Retry.NEVER, MetOn.CREATE),
            (63016, Retry.NEVER, MetOn.CALLBACK),
            (63018, Retry.LATER, MetOn.CALLBACK),
            (20404, Retry.NEVER, MetOn.FETCH),
        ],
    )
    def test_facts_the_connector_relies_on(self, code: int, retry: Retry, met: MetOn) -> None:
        """The retry classes the send path depends on, and where each code is met."""
        row = provider_error(code)
        assert row is not None
        assert row.retry is retry
        assert met in row.met


class TestDerivedMaps:
    def test_the_map_is_the_table(self) -> None:
        """PROVIDER_CODE_MAP has exactly the table's rows, each with its kernel code."""
        assert dict(PROVIDER_CODE_MAP) == {row.code: row.kernel_code for row in PROVIDER_ERRORS}

    def test_no_earlier_mapping_changed(self) -> None:
        """Every code mapped before the table keeps its framework code."""
        for code, kernel in MAP_BEFORE_THE_TABLE.items():
            assert map_provider_code(code, 400) == kernel, code

    def test_new_rows_keep_the_fallback_where_they_name_no_better_code(self) -> None:
        """A code outside the table still falls back by HTTP status."""
        assert 30008 not in PROVIDER_CODE_MAP
        assert map_provider_code(30008, 400) == MessagingErrorCodes.SEND_MESSAGE_FAILED
        assert map_provider_code(None, 429) == MessagingErrorCodes.RATE_LIMITED

    def test_the_map_is_read_only(self) -> None:
        """Nobody can patch a code's mapping at run time behind the table's back."""
        with pytest.raises(TypeError):
            PROVIDER_CODE_MAP[99999] = "X"  # type: ignore[index]

    def test_retryable_codes_are_the_retry_now_rows(self) -> None:
        """RETRYABLE_PROVIDER_CODES is the class "now": today only 20429."""
        assert {row.code for row in PROVIDER_ERRORS if row.retry is Retry.NOW} == {20429}
        assert {20429} == RETRYABLE_PROVIDER_CODES


class TestClassifyReadsTheTable:
    @pytest.mark.parametrize("row", PROVIDER_ERRORS, ids=lambda row: str(row.code))
    @pytest.mark.parametrize("status", [429, 503])
    def test_a_safe_status_with_a_known_code_follows_its_class(
        self, row: ProviderError, status: int
    ) -> None:
        """429/503 with a table code: retried only for class "now", final otherwise."""
        outcome = classify(ApiError(status=status, code=row.code, message="m"))
        assert outcome is (Outcome.RETRY if row.retry is Retry.NOW else Outcome.FINAL)

    def test_a_safe_status_with_an_unknown_code_is_retried(self) -> None:
        """429/503 with a code the table does not know: Twilio did not process it."""
        assert classify(ApiError(status=503, code=20503, message="m")) is Outcome.RETRY
        assert classify(ApiError(status=429, code=None, message="m")) is Outcome.RETRY

    def test_class_now_is_retried_whatever_the_status(self) -> None:
        """20429 is retried even if a proxy relabels the status."""
        assert classify(ApiError(status=400, code=20429, message="m")) is Outcome.RETRY

    def test_a_plain_refusal_is_final(self) -> None:
        """400 with 21610: resending the same message fails the same way."""
        assert classify(ApiError(status=400, code=21610, message="m")) is Outcome.FINAL


class TestGuidance:
    def test_guidance_for_a_known_code(self) -> None:
        """retry and remediation, straight from the row."""
        row = BY_CODE[21610]
        assert guidance(21610) == {"retry": "never", "remediation": row.remediation}

    @pytest.mark.parametrize("code", [None, 30008])
    def test_no_guidance_for_an_unknown_code(self, code: int | None) -> None:
        """A code outside the table gets nothing rather than a guess."""
        assert guidance(code) == {}
        assert provider_error(code) is None

    def test_a_failed_status_gets_the_advice_and_a_message(self) -> None:
        """63016 without ErrorMessage: retry, remediation and the row's meaning are added."""
        update = StatusUpdate(
            message_id="SM" + "a" * 32,
            status=MessageStatus.DELIVERY_FAILED,
            timestamp=NOW,
            error_code=63016,
            data={"twilio_status": "undelivered"},
        )
        annotated = annotate_status(update)
        row = BY_CODE[63016]
        assert annotated.error_message == row.meaning
        assert annotated.data == {
            "twilio_status": "undelivered",
            "retry": "never",
            "remediation": row.remediation,
        }

    def test_twilios_own_message_is_kept(self) -> None:
        """A message Twilio did send is not overwritten."""
        update = StatusUpdate(
            message_id="SM" + "a" * 32,
            status=MessageStatus.DELIVERY_FAILED,
            timestamp=NOW,
            error_code=63018,
            error_message="tier limit",
        )
        assert annotate_status(update).error_message == "tier limit"

    @pytest.mark.parametrize("code", [None, 30008])
    def test_other_updates_are_left_alone(self, code: int | None) -> None:
        """No code, or a code outside the table: the very same update comes back."""
        update = StatusUpdate(
            message_id="SM" + "a" * 32, status=MessageStatus.SENT, timestamp=NOW, error_code=code
        )
        assert annotate_status(update) is update
