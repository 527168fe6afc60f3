"""Each send stage alone, with a tiny stub inside it: what it decides, and nothing more."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import random
from collections.abc import Sequence

import pytest

from ratatosk.adapters.clock import ManualClock
from ratatosk.adapters.memory import InMemorySendLedger, InMemoryTemplateCache
from ratatosk.domain.content import TemplateContent
from ratatosk.ports import (
    AccountResource,
    ApiError,
    CreateMessageRequest,
    MessagePage,
    MessageQuery,
    MessageResource,
    TemplateInfo,
    TransportError,
)
from ratatosk.twilio.errors import TwilioErrorCodes
from ratatosk.twilio.outbound import SendPlan
from ratatosk.twilio.resilience import RetryPolicy
from ratatosk.twilio.send import OutcomeUnknown, SendTrace, TemplateResolver
from ratatosk.twilio.send.call import CallTwilio
from ratatosk.twilio.send.reconcile import Reconcile
from ratatosk.twilio.send.retry import Retry
from ratatosk.twilio.send.stage import confusable, lane_of, match_key
from ratatosk.twilio.send.throttle import Throttle

TO = "whatsapp:+15550002222"
FROM = "whatsapp:+14155238886"
REQUEST = CreateMessageRequest(to=TO, from_=FROM, body="hello")


def resource(sid: str = "SM" + "1" * 32, body: str = "hello", **kw: object) -> MessageResource:
    fields: dict[str, object] = {
        "sid": sid,
        "account_sid": "AC" + "0" * 32,
        "status": "queued",
        "to": TO,
        "from_": FROM,
        "body": body,
        "num_media": 0,
        "direction": "outbound-api",
        "date_created": dt.datetime(2026, 1, 1, 12, 0, 1, tzinfo=dt.UTC),
    }
    fields.update(kw)
    return MessageResource(**fields)  # type: ignore[arg-type]


def trace(
    clock: ManualClock, *, send: str = "m1", request: CreateMessageRequest = REQUEST
) -> SendTrace:
    return SendTrace(
        send=send,
        lane=lane_of(request),
        key=match_key(request),
        started=clock.now(),
        deadline=clock.monotonic() + 60.0,
    )


class Scripted:
    """An inner stage answering from a script: a value to return, or an exception to raise."""

    def __init__(self, *answers: MessageResource | ApiError | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def create(
        self, request: CreateMessageRequest, trace: SendTrace
    ) -> MessageResource | ApiError:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Listing:
    """The Twilio API as far as a reconcile reads it: one page of messages."""

    def __init__(self, messages: Sequence[MessageResource] = ()) -> None:
        self.messages = list(messages)
        self.queries = 0

    async def list_messages(self, query: MessageQuery) -> MessagePage | ApiError:
        self.queries += 1
        return MessagePage(messages=tuple(self.messages))

    async def create_message(self, request: CreateMessageRequest) -> MessageResource | ApiError:
        raise AssertionError("a reconcile never creates")

    async def fetch_message(self, sid: str) -> MessageResource | ApiError:
        raise AssertionError("not used")

    async def fetch_account(self) -> AccountResource | ApiError:
        raise AssertionError("not used")

    async def close(self) -> None:
        return None


THROTTLED = ApiError(status=429, code=20429, message="Too Many Requests")


# --- call --------------------------------------------------------------------------------


async def test_an_answer_past_the_deadline_is_a_lost_answer() -> None:
    class Hanging(Listing):
        async def create_message(self, request: CreateMessageRequest) -> MessageResource:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    clock = ManualClock()
    t = trace(clock)
    t.deadline = clock.monotonic()  # already over
    with pytest.raises(TransportError) as caught:
        await CallTwilio(Hanging(), clock).create(REQUEST, t)
    assert caught.value.maybe_delivered


class Bounded(Listing):
    """A transport that says its calls end within ``request_timeout`` (the aiohttp adapter)."""

    def __init__(self, bound: float, *, hang: bool = False) -> None:
        super().__init__()
        self.bound = bound
        self.hang = hang

    @property
    def request_timeout(self) -> float:
        return self.bound

    async def create_message(self, request: CreateMessageRequest) -> MessageResource:
        if self.hang:
            await asyncio.Event().wait()
        return resource()


def timers_armed(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays of the ``asyncio.timeout`` timers armed from now on."""
    armed: list[float] = []
    real = asyncio.timeout

    def spy(delay: float | None) -> asyncio.Timeout:
        armed.append(delay if delay is not None else math.inf)
        return real(delay)

    monkeypatch.setattr(asyncio, "timeout", spy)
    return armed


async def test_no_timer_when_the_transport_ends_the_call_before_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    armed = timers_armed(monkeypatch)
    clock = ManualClock()
    answer = await CallTwilio(Bounded(31.0), clock).create(REQUEST, trace(clock))  # 60 s left
    assert answer == resource()
    assert armed == []


async def test_a_timer_when_the_deadline_comes_before_the_transport_gives_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    armed = timers_armed(monkeypatch)
    clock = ManualClock()
    t = trace(clock)
    t.deadline = clock.monotonic() + 12.5
    assert await CallTwilio(Bounded(31.0), clock).create(REQUEST, t) == resource()
    assert armed == [12.5]


async def test_a_timer_on_every_call_of_a_transport_that_names_no_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Answering(Listing):
        async def create_message(self, request: CreateMessageRequest) -> MessageResource:
            return resource()

    armed = timers_armed(monkeypatch)
    clock = ManualClock()
    await CallTwilio(Answering(), clock).create(REQUEST, trace(clock))
    assert armed == [60.0]


async def test_a_bounded_transport_past_the_deadline_is_still_cut_off() -> None:
    clock = ManualClock()
    t = trace(clock)
    t.deadline = clock.monotonic() - 1.0  # over: shorter than any bound
    with pytest.raises(TransportError, match="send deadline passed") as caught:
        await CallTwilio(Bounded(31.0, hang=True), clock).create(REQUEST, t)
    assert caught.value.maybe_delivered


async def test_the_bound_is_read_on_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    armed = timers_armed(monkeypatch)
    clock = ManualClock()
    api = Bounded(31.0)
    call = CallTwilio(api, clock)
    await call.create(REQUEST, trace(clock))
    api.bound = math.inf  # e.g. a closed session replaced by one with no total timeout
    await call.create(REQUEST, trace(clock))
    assert armed == [60.0]


# --- throttle ----------------------------------------------------------------------------


async def test_throttle_waits_on_the_clock_for_the_booked_slot() -> None:
    class Booked:
        async def reserve(self, key: str) -> float:
            assert key == FROM
            return 0.5

    clock = ManualClock()
    t = trace(clock)
    inner = Scripted(resource())
    await Throttle(inner, Booked(), clock, max_in_flight=1).create(REQUEST, t)
    assert t.paced == 0.5
    assert clock.monotonic() == 0.5  # waited on the clock, not on real time


async def test_throttle_caps_the_calls_in_flight() -> None:
    running = peak = 0
    release = asyncio.Event()

    class Slow:
        async def create(self, request: CreateMessageRequest, trace: SendTrace) -> MessageResource:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await release.wait()
            running -= 1
            return resource()

    clock = ManualClock()
    stage = Throttle(Slow(), None, clock, max_in_flight=2)
    calls = [asyncio.create_task(stage.create(REQUEST, trace(clock))) for _ in range(5)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert peak == 2
    release.set()
    await asyncio.gather(*calls)
    assert peak == 2


# --- retry -------------------------------------------------------------------------------


def retry(inner: Scripted, clock: ManualClock, **policy: float) -> Retry:
    return Retry(inner, RetryPolicy(**policy), clock, random.Random(1))  # type: ignore[arg-type]


async def test_retry_tries_again_after_a_safe_failure_and_counts_what_it_took() -> None:
    clock = ManualClock()
    t = trace(clock)
    inner = Scripted(THROTTLED, TransportError("refused", maybe_delivered=False), resource())
    assert isinstance(await retry(inner, clock).create(REQUEST, t), MessageResource)
    assert t.attempts == 3
    assert t.waited > 0
    assert clock.monotonic() == pytest.approx(t.waited)


async def test_retry_honours_retry_after() -> None:
    clock = ManualClock()
    t = trace(clock)
    hinted = ApiError(status=429, code=20429, message="slow down", retry_after=2.0)
    await retry(Scripted(hinted, resource()), clock).create(REQUEST, t)
    assert t.waited == 2.0


@pytest.mark.parametrize(
    "failure",
    [
        ApiError(status=400, code=21211, message="bad To"),
        ApiError(status=429, code=63018, message="WhatsApp tier limit"),
        ApiError(status=500, code=None, message="?"),
    ],
)
async def test_retry_returns_a_failure_a_resend_would_meet_again(failure: ApiError) -> None:
    clock = ManualClock()
    inner = Scripted(failure, resource())
    assert await retry(inner, clock).create(REQUEST, trace(clock)) == failure
    assert inner.calls == 1


async def test_retry_never_resends_what_may_have_been_delivered() -> None:
    clock = ManualClock()
    lost = TransportError("reset", maybe_delivered=True)
    inner = Scripted(lost, resource())
    with pytest.raises(TransportError):
        await retry(inner, clock).create(REQUEST, trace(clock))
    assert inner.calls == 1


async def test_retry_stops_at_max_attempts_and_before_the_deadline() -> None:
    clock = ManualClock()
    inner = Scripted(*([THROTTLED] * 10))
    assert await retry(inner, clock, max_attempts=3).create(REQUEST, trace(clock)) == THROTTLED
    assert inner.calls == 3
    hinted = ApiError(status=429, code=20429, message="later", retry_after=30.0)
    inner = Scripted(hinted, resource())
    t = trace(clock)
    t.deadline = clock.monotonic() + 10.0
    assert await retry(inner, clock).create(REQUEST, t) == hinted
    assert inner.calls == 1


# --- reconcile ---------------------------------------------------------------------------

LOST = TransportError("connection reset", maybe_delivered=True)


def reconcile(
    inner: Scripted, api: Listing, ledger: InMemorySendLedger, clock: ManualClock
) -> Reconcile:
    return Reconcile(inner, api, ledger, clock)


async def test_a_lost_answer_is_found_adopted_and_claimed() -> None:
    clock = ManualClock()
    ledger = InMemorySendLedger(clock.monotonic)
    t = trace(clock)
    found = await reconcile(Scripted(LOST), Listing([resource()]), ledger, clock).create(REQUEST, t)
    assert isinstance(found, MessageResource)
    assert t.reconciled
    assert await ledger.claimed([found.sid]) == {found.sid}


async def test_a_claimed_sid_is_never_adopted() -> None:
    clock = ManualClock()
    ledger = InMemorySendLedger(clock.monotonic)
    await ledger.claim_sid(resource().sid, "another send", adopted=False)
    with pytest.raises(OutcomeUnknown):
        await reconcile(Scripted(LOST), Listing([resource()]), ledger, clock).create(
            REQUEST, trace(clock)
        )


async def test_a_503_with_nothing_created_goes_on_to_the_retry_stage() -> None:
    clock = ManualClock()
    unavailable = ApiError(status=503, code=None, message="unavailable")
    ledger = InMemorySendLedger(clock.monotonic)
    stage = reconcile(Scripted(unavailable), Listing(), ledger, clock)
    assert await stage.create(REQUEST, trace(clock)) == unavailable


async def test_a_500_with_nothing_found_is_an_unknown_outcome_never_a_resend() -> None:
    clock = ManualClock()
    ledger = InMemorySendLedger(clock.monotonic)
    failed = ApiError(status=500, code=None, message="oops")
    with pytest.raises(OutcomeUnknown) as caught:
        await reconcile(Scripted(failed), Listing(), ledger, clock).create(REQUEST, trace(clock))
    assert caught.value.cause == failed


async def test_a_reconcile_waits_for_a_confusable_send_to_be_answered() -> None:
    """The other send's message is in the list; once it is answered (claimed), it is not ours."""
    clock = ManualClock()
    ledger = InMemorySendLedger(clock.monotonic)
    theirs = resource()
    await ledger.lane_enter(lane_of(REQUEST), "other", match_key(REQUEST))

    async def answer_later() -> None:
        await asyncio.sleep(0.01)
        await ledger.claim_sid(theirs.sid, "other", adopted=False)
        await ledger.lane_leave(lane_of(REQUEST), "other")

    answering = asyncio.create_task(answer_later())
    with pytest.raises(OutcomeUnknown):
        await reconcile(Scripted(LOST), Listing([theirs]), ledger, clock).create(
            REQUEST, trace(clock)
        )
    await answering


async def test_a_reconcile_refuses_to_guess_between_two_lost_sends() -> None:
    clock = ManualClock()
    ledger = InMemorySendLedger(clock.monotonic)
    await ledger.lane_enter(lane_of(REQUEST), "other", match_key(REQUEST))
    await ledger.lane_reconciling(lane_of(REQUEST), "other")
    with pytest.raises(OutcomeUnknown) as caught:
        await reconcile(Scripted(LOST), Listing([resource()]), ledger, clock).create(
            REQUEST, trace(clock)
        )
    assert "could have created it" in caught.value.why


async def test_a_send_that_cannot_be_confused_is_not_waited_for() -> None:
    clock = ManualClock()
    ledger = InMemorySendLedger(clock.monotonic)
    other = CreateMessageRequest(to=TO, from_=FROM, body="something else")
    await ledger.lane_enter(lane_of(other), "other", match_key(other))  # never answers
    found = await reconcile(Scripted(LOST), Listing([resource()]), ledger, clock).create(
        REQUEST, trace(clock)
    )
    assert isinstance(found, MessageResource)


def test_what_a_reconcile_can_confuse() -> None:
    text = match_key(REQUEST)
    same = match_key(CreateMessageRequest(to=TO, from_=FROM, body="hello"))
    other = match_key(CreateMessageRequest(to=TO, from_=FROM, body="bye"))
    template = match_key(CreateMessageRequest(to=TO, from_=FROM, content_sid="HX" + "a" * 32))
    media = match_key(CreateMessageRequest(to=TO, from_=FROM, media_urls=("https://x/y.jpg",)))
    assert confusable(text, same)
    assert not confusable(text, other)
    assert confusable(text, template)  # a template's body is Twilio's to render
    assert confusable(template, template)
    assert not confusable(template, media)  # media counts differ


# --- templates ---------------------------------------------------------------------------


async def test_the_template_cache_answers_repeats_and_remembers_misses() -> None:
    class Counting:
        def __init__(self) -> None:
            self.finds = 0

        async def find(self, name: str, language: str | None = None) -> TemplateInfo | None:
            self.finds += 1
            if name != "order_confirmed":
                return None
            return TemplateInfo(sid="HX" + "a" * 32, friendly_name=name, whatsapp_status="approved")

        async def list(self) -> Sequence[TemplateInfo]:
            return ()

    catalog = Counting()
    clock = ManualClock()
    resolver = TemplateResolver(catalog, InMemoryTemplateCache(clock.monotonic))

    def plan(name: str) -> SendPlan:
        return SendPlan(request=REQUEST, template=TemplateContent(name, {}))

    for _ in range(3):
        resolved = await resolver.resolve(plan("order_confirmed"))
        assert isinstance(resolved, CreateMessageRequest)
        assert resolved.content_sid == "HX" + "a" * 32
        missing = await resolver.resolve(plan("typo"))
        assert not isinstance(missing, CreateMessageRequest)
        assert missing.code == TwilioErrorCodes.MISSING_CONTENT_SID
    assert catalog.finds == 2
