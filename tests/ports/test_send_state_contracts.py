"""The send-side state ports' contracts: ``RateLimiter``, ``SendLedger``, ``TemplateCache``.

One suite per port, run against every adapter in its ``*_ADAPTERS`` table.
An adapter joins by adding a builder that takes a monotonic time source
(and a way to let that time pass): everything below speaks only through the
port, so a shared store (Redis) runs the same checks unchanged. The Redis
adapters run on the suite's real redis-server, their time given by a
``RedisTimeMachine`` (a manual clock whose advance also ages their keys).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from port_subjects import ManualMonotonic, Subject
from ratatosk.adapters.memory import (
    InMemoryRateLimiter,
    InMemorySendLedger,
    InMemoryTemplateCache,
)
from ratatosk.adapters.redis import RedisRateLimiter, RedisSendLedger, RedisTemplateCache
from ratatosk.ports import LedgerState, RateLimiter, SendLedger, TemplateCache, TemplateInfo
from redis_support import RedisTimeMachine, shared_redis


def _in_memory(build: Callable[..., Any]) -> Callable[[], Subject]:
    def subject() -> Subject:
        clock = ManualMonotonic()
        return Subject(lambda **kw: build(clock, **kw), clock.advance)

    return subject


def _redis(build: Callable[..., Any]) -> Callable[[], Subject]:
    def subject() -> Subject:
        machine = RedisTimeMachine(shared_redis())
        return Subject(lambda **kw: build(machine, **kw), machine.advance, machine.close)

    return subject


LIMITER_ADAPTERS = {
    "in-memory": _in_memory(
        lambda clock, rate=10.0, burst=2.0, rates=None: InMemoryRateLimiter(
            rate, burst, clock, rates=rates
        )
    ),
    "redis": _redis(
        lambda m, rate=10.0, burst=2.0, rates=None: RedisRateLimiter(
            m.client, rate, burst, prefix=m.prefix, now=m, rates=rates
        )
    ),
}
LEDGER_ADAPTERS = {
    "in-memory": _in_memory(
        lambda clock, ttl=3600.0, lease=600.0: InMemorySendLedger(clock, ttl=ttl, lease=lease)
    ),
    "redis": _redis(
        lambda m, ttl=3600.0, lease=600.0: RedisSendLedger(
            m.client, prefix=m.prefix, ttl=ttl, lease=lease, now=m
        )
    ),
}
CACHE_ADAPTERS = {
    "in-memory": _in_memory(InMemoryTemplateCache),
    "redis": _redis(lambda m: RedisTemplateCache(m.client, prefix=m.prefix)),
}


async def _open(table: dict[str, Callable[[], Subject]], name: str) -> AsyncIterator[Subject]:
    subject = table[name]()
    try:
        yield subject
    finally:
        await subject.close()


@pytest.fixture(params=sorted(LIMITER_ADAPTERS))
async def limiter_subject(request: Any) -> AsyncIterator[Subject]:
    async for subject in _open(LIMITER_ADAPTERS, request.param):
        yield subject


@pytest.fixture(params=sorted(LEDGER_ADAPTERS))
async def ledger_subject(request: Any) -> AsyncIterator[Subject]:
    async for subject in _open(LEDGER_ADAPTERS, request.param):
        yield subject


@pytest.fixture(params=sorted(CACHE_ADAPTERS))
async def cache_subject(request: Any) -> AsyncIterator[Subject]:
    async for subject in _open(CACHE_ADAPTERS, request.param):
        yield subject


# --- RateLimiter -------------------------------------------------------------------------


class TestRateLimiter:
    async def test_a_burst_goes_at_once_then_requests_are_spaced_by_the_rate(
        self, limiter_subject: Subject
    ) -> None:
        limiter: RateLimiter = limiter_subject.make(rate=10.0, burst=2.0)
        waits = [await limiter.reserve("whatsapp:+14155238886") for _ in range(4)]
        assert waits[:2] == [0.0, 0.0]
        assert waits[2] == pytest.approx(0.1)
        assert waits[3] == pytest.approx(0.2)  # booked behind the one before: fair queueing

    async def test_senders_do_not_share_a_budget(self, limiter_subject: Subject) -> None:
        limiter: RateLimiter = limiter_subject.make(rate=10.0, burst=1.0)
        assert await limiter.reserve("a") == 0.0
        assert await limiter.reserve("b") == 0.0
        assert await limiter.reserve("a") > 0.0

    async def test_the_budget_refills_with_time(self, limiter_subject: Subject) -> None:
        limiter: RateLimiter = limiter_subject.make(rate=10.0, burst=1.0)
        assert await limiter.reserve("a") == 0.0
        await limiter_subject.advance(0.1)
        assert await limiter.reserve("a") == pytest.approx(0.0, abs=1e-9)

    async def test_a_sender_with_a_rate_of_its_own_is_paced_by_it(
        self, limiter_subject: Subject
    ) -> None:
        """``SenderRates``: one number at 2/s beside the default 10/s, its burst capped at 2."""
        limiter: RateLimiter = limiter_subject.make(
            rate=10.0, burst=5.0, rates={"whatsapp:+14155238886": 2.0}
        )
        slow = [await limiter.reserve("whatsapp:+14155238886") for _ in range(4)]
        fast = [await limiter.reserve("whatsapp:+15005550006") for _ in range(6)]
        assert slow == pytest.approx([0.0, 0.0, 0.5, 1.0])
        assert fast == pytest.approx([0.0] * 5 + [0.1])

    async def test_concurrent_reservations_never_share_a_slot(
        self, limiter_subject: Subject
    ) -> None:
        limiter: RateLimiter = limiter_subject.make(rate=100.0, burst=1.0)
        waits = await asyncio.gather(*(limiter.reserve("a") for _ in range(20)))
        assert sorted(round(w, 6) for w in waits) == [round(i / 100, 6) for i in range(20)]


# --- SendLedger ----------------------------------------------------------------------------


class TestSendLedgerIdempotency:
    async def test_a_new_id_is_sent_and_its_outcome_answers_a_repeat(
        self, ledger_subject: Subject
    ) -> None:
        ledger: SendLedger = ledger_subject.make()
        assert (await ledger.begin("m1", "f")).state is LedgerState.NEW
        assert (await ledger.begin("m1", "f")).state is LedgerState.IN_FLIGHT
        await ledger.finish("m1", {"sid": "SM1"})
        again = await ledger.begin("m1", "f")
        assert again.state is LedgerState.DONE
        assert again.outcome == {"sid": "SM1"}

    async def test_other_content_under_a_used_id_is_a_conflict(
        self, ledger_subject: Subject
    ) -> None:
        ledger: SendLedger = ledger_subject.make()
        await ledger.begin("m1", "f")
        assert (await ledger.begin("m1", "g")).state is LedgerState.CONFLICT
        await ledger.finish("m1", {"sid": "SM1"})
        assert (await ledger.begin("m1", "g")).state is LedgerState.CONFLICT

    async def test_finishing_with_nothing_sent_forgets_the_id(
        self, ledger_subject: Subject
    ) -> None:
        ledger: SendLedger = ledger_subject.make()
        await ledger.begin("m1", "f")
        await ledger.finish("m1", None)
        assert (await ledger.begin("m1", "g")).state is LedgerState.NEW

    async def test_outcomes_expire(self, ledger_subject: Subject) -> None:
        ledger: SendLedger = ledger_subject.make(ttl=60.0)
        await ledger.begin("m1", "f")
        await ledger.finish("m1", {"sid": "SM1"})
        await ledger_subject.advance(61.0)
        assert (await ledger.begin("m1", "f")).state is LedgerState.NEW

    async def test_only_one_of_many_concurrent_begins_is_new(self, ledger_subject: Subject) -> None:
        ledger: SendLedger = ledger_subject.make()
        states = await asyncio.gather(*(ledger.begin("m1", "f") for _ in range(10)))
        assert [s.state for s in states].count(LedgerState.NEW) == 1


T0 = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
LOST = {"error": {"code": "SEND_OUTCOME_UNKNOWN"}}


class TestSendLedgerLeases:
    """A holder that died stops holding its id when its lease runs out; one caller takes over."""

    async def test_a_held_id_is_in_flight_until_the_lease_runs_out(
        self, ledger_subject: Subject
    ) -> None:
        ledger: SendLedger = ledger_subject.make(lease=30.0)
        assert (await ledger.begin("m1", "f", at=T0)).state is LedgerState.NEW
        await ledger_subject.advance(29.0)
        assert (await ledger.begin("m1", "f")).state is LedgerState.IN_FLIGHT
        await ledger_subject.advance(2.0)
        taken = await ledger.begin("m1", "f", at=T0 + dt.timedelta(minutes=5))
        assert taken.state is LedgerState.ABANDONED
        assert taken.first_attempt == T0  # the first attempt's, not the taker's
        assert taken.outcome is None
        # The taker holds it for a lease of its own.
        assert (await ledger.begin("m1", "f")).state is LedgerState.IN_FLIGHT

    async def test_only_one_of_many_racing_callers_takes_an_abandoned_id(
        self, ledger_subject: Subject
    ) -> None:
        ledger: SendLedger = ledger_subject.make(lease=30.0)
        await ledger.begin("m1", "f", at=T0)
        await ledger_subject.advance(31.0)
        states = await asyncio.gather(*(ledger.begin("m1", "f") for _ in range(10)))
        assert sorted(s.state.value for s in states) == ["abandoned"] + ["in_flight"] * 9

    async def test_an_abandoned_id_with_other_content_is_still_a_conflict(
        self, ledger_subject: Subject
    ) -> None:
        ledger: SendLedger = ledger_subject.make(lease=30.0)
        await ledger.begin("m1", "f")
        await ledger_subject.advance(31.0)
        assert (await ledger.begin("m1", "g")).state is LedgerState.CONFLICT
        assert (await ledger.begin("m1", "f")).state is LedgerState.ABANDONED

    async def test_a_finished_id_is_never_abandoned(self, ledger_subject: Subject) -> None:
        ledger: SendLedger = ledger_subject.make(lease=30.0)
        await ledger.begin("m1", "f", at=T0)
        await ledger.finish("m1", {"sid": "SM1"})
        await ledger_subject.advance(60.0)
        done = await ledger.begin("m1", "f", reopen=True)
        assert done.state is LedgerState.DONE
        assert done.outcome == {"sid": "SM1"}
        assert done.first_attempt == T0

    async def test_the_first_attempt_comes_back_the_same_instant_in_its_own_zone(
        self, ledger_subject: Subject
    ) -> None:
        """A zone under a second from UTC survives the store (CPython's fromisoformat
        reads isoformat's +00:00:00.000001 back as UTC)."""
        zone = dt.timezone(dt.timedelta(microseconds=1))
        first = T0.astimezone(zone)
        ledger: SendLedger = ledger_subject.make(lease=30.0)
        await ledger.begin("m1", "f", at=first)
        await ledger.finish("m1", {"sid": "SM1"})
        done = await ledger.begin("m1", "f")
        assert done.first_attempt == first
        assert done.first_attempt is not None
        assert done.first_attempt.utcoffset() == zone.utcoffset(None)

    async def test_the_taker_finishes_what_the_dead_holder_began(
        self, ledger_subject: Subject
    ) -> None:
        ledger: SendLedger = ledger_subject.make(lease=30.0)
        await ledger.begin("m1", "f", at=T0)
        await ledger_subject.advance(31.0)
        await ledger.begin("m1", "f")
        await ledger.finish("m1", {"sid": "SM1"})
        again = await ledger.begin("m1", "f")
        assert (again.state, again.outcome, again.first_attempt) == (
            LedgerState.DONE,
            {"sid": "SM1"},
            T0,
        )


class TestSendLedgerUnsettledOutcomes:
    """An outcome that may hide a message answers repeats, and a recheck may take it back."""

    async def test_an_unsettled_outcome_answers_a_plain_begin_and_reopens_for_a_recheck(
        self, ledger_subject: Subject
    ) -> None:
        ledger: SendLedger = ledger_subject.make()
        await ledger.begin("m1", "f", at=T0)
        await ledger.finish("m1", LOST, settled=False)
        plain = await ledger.begin("m1", "f")
        assert (plain.state, plain.outcome) == (LedgerState.DONE, LOST)
        reopened = await ledger.begin("m1", "f", reopen=True)
        assert (reopened.state, reopened.outcome) == (LedgerState.REOPENED, LOST)
        assert reopened.first_attempt == T0
        assert (await ledger.begin("m1", "f", reopen=True)).state is LedgerState.IN_FLIGHT
        await ledger.finish("m1", {"sid": "SM1"})
        settled = await ledger.begin("m1", "f", reopen=True)
        assert (settled.state, settled.outcome) == (LedgerState.DONE, {"sid": "SM1"})

    async def test_only_one_of_many_racing_rechecks_reopens(self, ledger_subject: Subject) -> None:
        ledger: SendLedger = ledger_subject.make()
        await ledger.begin("m1", "f")
        await ledger.finish("m1", LOST, settled=False)
        states = await asyncio.gather(*(ledger.begin("m1", "f", reopen=True) for _ in range(10)))
        assert sorted(s.state.value for s in states) == ["in_flight"] * 9 + ["reopened"]

    async def test_a_reopened_id_whose_rechecker_died_is_abandoned_with_its_outcome(
        self, ledger_subject: Subject
    ) -> None:
        ledger: SendLedger = ledger_subject.make(lease=30.0)
        await ledger.begin("m1", "f", at=T0)
        await ledger.finish("m1", LOST, settled=False)
        await ledger.begin("m1", "f", reopen=True)
        await ledger_subject.advance(31.0)
        taken = await ledger.begin("m1", "f")
        assert (taken.state, taken.outcome, taken.first_attempt) == (
            LedgerState.ABANDONED,
            LOST,
            T0,
        )

    async def test_forgetting_a_reopened_id_lets_it_begin_anew(
        self, ledger_subject: Subject
    ) -> None:
        ledger: SendLedger = ledger_subject.make()
        await ledger.begin("m1", "f", at=T0)
        await ledger.finish("m1", LOST, settled=False)
        await ledger.begin("m1", "f", reopen=True)
        await ledger.finish("m1", None)
        later = T0 + dt.timedelta(hours=1)
        fresh = await ledger.begin("m1", "f", at=later)
        assert (fresh.state, fresh.first_attempt) == (LedgerState.NEW, later)


class TestSendLedgerLanesAndClaims:
    async def test_lanes_list_the_other_sends_with_their_keys(
        self, ledger_subject: Subject
    ) -> None:
        ledger: SendLedger = ledger_subject.make()
        await ledger.lane_enter("lane", "a", "0|x")
        await ledger.lane_enter("lane", "b", "0|*")
        await ledger.lane_enter("other", "c", "0|x")
        others = await ledger.lane_others("lane", "a")
        assert set(others) == {"b"}
        assert others["b"].key == "0|*"
        assert not others["b"].reconciling
        await ledger.lane_reconciling("lane", "b")
        assert (await ledger.lane_others("lane", "a"))["b"].reconciling
        await ledger.lane_enter("lane", "b", "0|*")  # back to sending: a retry follows
        assert not (await ledger.lane_others("lane", "a"))["b"].reconciling
        await ledger.lane_leave("lane", "b")
        assert await ledger.lane_others("lane", "a") == {}

    async def test_an_unsettled_send_stays_in_its_lane_as_looking_for_a_while(
        self, ledger_subject: Subject
    ) -> None:
        """Its message may be at Twilio, unclaimed: no other reconcile may take it."""
        ledger: SendLedger = ledger_subject.make()
        await ledger.lane_enter("lane", "lost", "0|x")
        await ledger.lane_enter("lane", "done", "0|x")
        await ledger.lane_leave("lane", "lost", settled=False)
        await ledger.lane_leave("lane", "done")
        others = await ledger.lane_others("lane", "me")
        assert set(others) == {"lost"}
        assert others["lost"].reconciling
        await ledger_subject.advance(3600.0)
        assert await ledger.lane_others("lane", "me") == {}

    async def test_an_adopting_claim_never_takes_a_claimed_sid(
        self, ledger_subject: Subject
    ) -> None:
        ledger: SendLedger = ledger_subject.make()
        assert await ledger.claim_sid("SM1", "a", adopted=False) is None
        assert await ledger.claim_sid("SM1", "b", adopted=True) == "a"
        assert await ledger.claimed(["SM1", "SM2"]) == frozenset({"SM1"})
        assert await ledger.claim_sid("SM2", "b", adopted=True) is None
        assert await ledger.claim_sid("SM2", "b", adopted=True) is None  # its own: fine

    async def test_an_answer_for_an_adopted_sid_names_the_adopter(
        self, ledger_subject: Subject
    ) -> None:
        ledger: SendLedger = ledger_subject.make()
        await ledger.claim_sid("SM1", "a", adopted=True)
        assert await ledger.claim_sid("SM1", "b", adopted=False) == "a"

    async def test_only_one_of_concurrent_adoptions_wins(self, ledger_subject: Subject) -> None:
        ledger: SendLedger = ledger_subject.make()
        holders = await asyncio.gather(
            *(ledger.claim_sid("SM1", f"s{i}", adopted=True) for i in range(10))
        )
        assert holders.count(None) == 1


# --- TemplateCache -------------------------------------------------------------------------

ORDER = TemplateInfo(sid="HX" + "a" * 32, friendly_name="order_confirmed", language="en")


class TestTemplateCache:
    async def test_nothing_is_known_until_stored(self, cache_subject: Subject) -> None:
        cache: TemplateCache = cache_subject.make()
        assert await cache.get("order_confirmed", None) == (False, None)

    async def test_hits_and_remembered_misses_until_they_expire(
        self, cache_subject: Subject
    ) -> None:
        cache: TemplateCache = cache_subject.make()
        await cache.put("order_confirmed", "en", ORDER, 300.0)
        await cache.put("typo", None, None, 10.0)
        assert await cache.get("order_confirmed", "en") == (True, ORDER)
        assert await cache.get("order_confirmed", None) == (False, None)  # language is the key
        assert await cache.get("typo", None) == (True, None)
        await cache_subject.advance(11.0)
        assert await cache.get("typo", None) == (False, None)
        assert await cache.get("order_confirmed", "en") == (True, ORDER)
        await cache_subject.advance(300.0)
        assert await cache.get("order_confirmed", "en") == (False, None)
