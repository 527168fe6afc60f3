"""The recheck alone, with a listing stub and a resend stub: what it decides for a held id."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from ratatosk.adapters.clock import ManualClock
from ratatosk.adapters.memory import InMemorySendLedger
from ratatosk.domain.result import ConnectorResult, SendResult
from ratatosk.domain.status import MessageStatus
from ratatosk.ports import (
    DEFAULT_SEND_LEASE,
    AccountResource,
    ApiError,
    CreateMessageRequest,
    LedgerEntry,
    LedgerState,
    MessagePage,
    MessageQuery,
    MessageResource,
)
from ratatosk.twilio.errors import TwilioErrorCodes
from ratatosk.twilio.resilience import RetryPolicy, SendPolicy
from ratatosk.twilio.send import Delivery
from ratatosk.twilio.send.recheck import Recheck, Settled, lease_for
from ratatosk.twilio.send.reconcile import MAX_WAIT_SECONDS, Finder
from ratatosk.twilio.send.stage import lane_of, match_key

TO = "whatsapp:+15550002222"
FROM = "whatsapp:+14155238886"
REQUEST = CreateMessageRequest(to=TO, from_=FROM, body="hello")

LOST = {"error": {"code": "SEND_OUTCOME_UNKNOWN", "message": "lost", "domain": "Twilio",
                  "provider_code": None, "details": {}}}  # fmt: skip
SID = "SM" + "1" * 32


def resource(sid: str = SID) -> MessageResource:
    return MessageResource(
        sid=sid,
        account_sid="AC" + "0" * 32,
        status="queued",
        to=TO,
        from_=FROM,
        body="hello",
        num_media=0,
        direction="outbound-api",
        date_created=dt.datetime(2026, 1, 1, 12, 0, 1, tzinfo=dt.UTC),
    )


class Listing:
    """The Twilio API as far as a look reads it: one page of messages; it never creates."""

    def __init__(self, messages: Sequence[MessageResource] = ()) -> None:
        self.messages = list(messages)
        self.queries = 0

    async def list_messages(self, query: MessageQuery) -> MessagePage | ApiError:
        self.queries += 1
        return MessagePage(messages=tuple(self.messages))

    async def create_message(self, request: CreateMessageRequest) -> MessageResource | ApiError:
        raise AssertionError("a recheck creates only through its resend")

    async def fetch_message(self, sid: str) -> MessageResource | ApiError:
        raise AssertionError("not used")

    async def fetch_account(self) -> AccountResource | ApiError:
        raise AssertionError("not used")

    async def close(self) -> None:
        return None


class Resend:
    """The pipeline's create, as the recheck sees it: counted, answering a fixed result."""

    def __init__(self, sid: str = "SM" + "9" * 32) -> None:
        self.calls = 0
        self.sid = sid

    async def __call__(self) -> ConnectorResult[SendResult]:
        self.calls += 1
        return ConnectorResult.success(
            SendResult(
                message_id="m1",
                provider_message_id=self.sid,
                status=MessageStatus.QUEUED,
                timestamp=dt.datetime(2026, 1, 1, 12, 5, tzinfo=dt.UTC),
                data={"attempts": 1},
            )
        )


class Unreadable(Listing):
    async def list_messages(self, query: MessageQuery) -> MessagePage | ApiError:
        self.queries += 1
        return ApiError(status=500, code=None, message="list down")


def held(clock: ManualClock, state: LedgerState = LedgerState.REOPENED) -> LedgerEntry:
    outcome = LOST if state is LedgerState.REOPENED else None
    return LedgerEntry(state=state, outcome=outcome, first_attempt=clock.now())


async def settle(
    api: Listing,
    delivery: Delivery | None,
    *,
    ledger: InMemorySendLedger | None = None,
    clock: ManualClock | None = None,
    resend: Resend | None = None,
    entry: LedgerEntry | None = None,
) -> Settled:
    clock = clock or ManualClock()
    ledger = ledger or InMemorySendLedger(clock.monotonic)
    recheck = Recheck(Finder(api, ledger, clock), ledger, clock, deadline=60.0)
    return await recheck.settle(
        "m1", REQUEST, entry or held(clock), delivery, resend=resend or Resend()
    )


async def test_a_message_twilio_lists_now_is_adopted_and_kept_as_sent() -> None:
    clock = ManualClock()
    ledger = InMemorySendLedger(clock.monotonic)
    resend = Resend()
    done = await settle(
        Listing([resource(SID)]),
        Delivery.AT_LEAST_ONCE,
        ledger=ledger,
        clock=clock,
        resend=resend,
    )
    sent = done.result.unwrap()
    assert sent.provider_message_id == SID
    assert (sent.data["rechecked"], sent.data["reconciled"]) == (True, True)
    assert done.settled
    assert done.outcome is not None
    assert done.outcome["sid"] == SID
    assert resend.calls == 0
    assert await ledger.claim_sid(SID, "someone else", adopted=True) == "m1"


async def test_a_sid_this_send_claimed_before_its_process_died_is_its_own() -> None:
    clock = ManualClock()
    ledger = InMemorySendLedger(clock.monotonic)
    await ledger.claim_sid(SID, "m1", adopted=False)  # Twilio answered, then the process died
    done = await settle(
        Listing([resource(SID)]),
        Delivery.AT_LEAST_ONCE,
        ledger=ledger,
        clock=clock,
        entry=held(clock, LedgerState.ABANDONED),
    )
    assert done.result.unwrap().provider_message_id == SID


async def test_a_sid_another_send_claimed_is_never_adopted() -> None:
    clock = ManualClock()
    ledger = InMemorySendLedger(clock.monotonic)
    await ledger.claim_sid(SID, "another send", adopted=False)
    done = await settle(Listing([resource(SID)]), Delivery.AT_MOST_ONCE, ledger=ledger, clock=clock)
    assert done.result.error is not None
    assert done.result.error.code == TwilioErrorCodes.MESSAGE_NOT_SENT


async def test_at_most_once_records_an_absent_message_as_not_sent_for_good() -> None:
    resend = Resend()
    done = await settle(Listing(), Delivery.AT_MOST_ONCE, resend=resend)
    failure = done.result.error
    assert failure is not None
    assert failure.code == TwilioErrorCodes.MESSAGE_NOT_SENT
    assert failure.details["first_attempt"] == "2026-01-01T12:00:00+00:00"
    assert done.settled
    assert done.outcome is not None
    assert done.outcome["error"]["code"] == "MESSAGE_NOT_SENT"
    assert resend.calls == 0


async def test_at_least_once_sends_an_absent_message_again_once() -> None:
    resend = Resend()
    done = await settle(Listing(), Delivery.AT_LEAST_ONCE, resend=resend)
    sent = done.result.unwrap()
    assert resend.calls == 1
    assert (sent.data["rechecked"], sent.data["resent"]) == (True, True)
    assert done.settled
    assert done.outcome is not None
    assert done.outcome["sid"] == resend.sid


async def test_a_message_older_than_the_first_attempt_is_not_this_send() -> None:
    clock = ManualClock()
    clock.advance(3600.0)  # the first attempt was an hour after the listed message
    done = await settle(Listing([resource(SID)]), Delivery.AT_MOST_ONCE, clock=clock)
    assert done.result.error is not None
    assert done.result.error.code == TwilioErrorCodes.MESSAGE_NOT_SENT


async def test_send_message_on_an_abandoned_id_never_resends_what_it_cannot_find() -> None:
    clock = ManualClock()
    resend = Resend()
    done = await settle(
        Listing(), None, clock=clock, resend=resend, entry=held(clock, LedgerState.ABANDONED)
    )
    assert done.result.error is not None
    assert done.result.error.code == TwilioErrorCodes.SEND_OUTCOME_UNKNOWN
    assert not done.settled  # a recheck_message may still decide
    assert resend.calls == 0


async def test_an_unreadable_list_decides_nothing_whatever_the_policy() -> None:
    resend = Resend()
    done = await settle(Unreadable(), Delivery.AT_LEAST_ONCE, resend=resend)
    assert done.result.error is not None
    assert done.result.error.code == TwilioErrorCodes.SEND_OUTCOME_UNKNOWN
    assert "could not be read" in done.result.error.message
    assert (done.outcome, done.settled) == (LOST, False)  # the earlier unknown, kept
    assert resend.calls == 0


async def test_beside_another_lost_look_alike_it_refuses_to_guess() -> None:
    clock = ManualClock()
    ledger = InMemorySendLedger(clock.monotonic)
    await ledger.lane_enter(lane_of(REQUEST), "other", match_key(REQUEST))
    await ledger.lane_leave(lane_of(REQUEST), "other", settled=False)  # its outcome unknown
    resend = Resend()
    done = await settle(
        Listing([resource(SID)]),
        Delivery.AT_LEAST_ONCE,
        ledger=ledger,
        clock=clock,
        resend=resend,
    )
    assert done.result.error is not None
    assert done.result.error.code == TwilioErrorCodes.SEND_OUTCOME_UNKNOWN
    assert resend.calls == 0
    assert await ledger.claimed([SID]) == frozenset()


async def test_an_absent_message_stays_guarded_in_its_lane_a_found_one_does_not() -> None:
    clock = ManualClock()
    ledger = InMemorySendLedger(clock.monotonic)
    await settle(Listing(), Delivery.AT_MOST_ONCE, ledger=ledger, clock=clock)
    others = await ledger.lane_others(lane_of(REQUEST), "me")
    assert set(others) == {"m1"}
    assert others["m1"].reconciling  # Twilio may list it later: no one else adopts it
    ledger = InMemorySendLedger(clock.monotonic)
    await settle(Listing([resource(SID)]), Delivery.AT_MOST_ONCE, ledger=ledger, clock=clock)
    assert await ledger.lane_others(lane_of(REQUEST), "me") == {}


def test_the_lease_outlasts_the_longest_send_the_policy_allows() -> None:
    assert lease_for(SendPolicy()) == DEFAULT_SEND_LEASE  # 60 s deadline: far inside 10 min
    slow = SendPolicy(retry=RetryPolicy(deadline=300.0))
    assert lease_for(slow) >= 4 * (300.0 + MAX_WAIT_SECONDS)
