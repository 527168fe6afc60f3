"""The ``StatusTracker`` port's contract: one suite every adapter passes unchanged.

An adapter joins by adding a builder to ``ADAPTERS``. Everything below goes
through the port, so a shared store runs the same checks: the Redis adapter
on the suite's real redis-server (``tests/redis_support.py``), with a key
prefix of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ratatosk.adapters.memory import InMemoryStatusTracker
from ratatosk.adapters.redis import RedisStatusTracker
from ratatosk.ports import StatusEvent, StatusTracker
from redis_support import RedisTimeMachine, fresh_prefix, shared_redis


@contextlib.asynccontextmanager
async def _in_memory() -> AsyncIterator[StatusTracker]:
    yield InMemoryStatusTracker()


@contextlib.asynccontextmanager
async def _redis() -> AsyncIterator[StatusTracker]:
    client = shared_redis().client()
    try:
        yield RedisStatusTracker(client, prefix=fresh_prefix())
    finally:
        await client.aclose()


ADAPTERS: dict[str, Callable[[], contextlib.AbstractAsyncContextManager[StatusTracker]]] = {
    "in-memory": _in_memory,
    "redis": _redis,
}
T0 = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)


@pytest.fixture(params=sorted(ADAPTERS))
async def tracker(request: Any) -> AsyncIterator[StatusTracker]:
    async with ADAPTERS[request.param]() as subject:
        yield subject


def at(status: str, seconds: float = 0.0, code: int | None = None) -> StatusEvent:
    return StatusEvent(status=status, error_code=code, at=T0 + dt.timedelta(seconds=seconds))


async def test_nothing_is_known_before_a_report(tracker: StatusTracker) -> None:
    assert await tracker.timeline("SM1") is None


async def test_reports_out_of_order_keep_the_highest_and_every_report(
    tracker: StatusTracker,
) -> None:
    steps = [
        await tracker.apply("SM1", at(s, i)) for i, s in enumerate(["read", "sent", "delivered"])
    ]
    assert [s.advanced for s in steps] == [True, False, False]
    timeline = await tracker.timeline("SM1")
    assert timeline is not None
    assert timeline.current == at("read", 0)
    assert timeline.history == (at("read", 0), at("sent", 1), at("delivered", 2))


async def test_in_order_reports_each_move_forward(tracker: StatusTracker) -> None:
    steps = [await tracker.apply("SM1", at(s)) for s in ["sent", "delivered", "read"]]
    assert [s.advanced for s in steps] == [True, True, True]
    assert steps[-1].current.status == "read"


async def test_a_redelivered_report_changes_nothing(tracker: StatusTracker) -> None:
    await tracker.apply("SM1", at("delivered", 0))
    again = await tracker.apply("SM1", at("delivered", 5))
    assert not again.advanced
    assert again.history == (at("delivered", 0),)


async def test_a_failure_after_sent_counts_with_its_code(tracker: StatusTracker) -> None:
    await tracker.apply("SM1", at("sent"))
    failed = await tracker.apply("SM1", at("undelivered", 1, code=63016))
    assert failed.advanced
    assert failed.current.error_code == 63016
    late = await tracker.apply("SM1", at("delivered", 2))
    assert not late.advanced  # delivered does not outrank a terminal failure


@pytest.mark.parametrize("micros", [1, -999_999])
async def test_a_report_time_comes_back_the_same_instant_in_its_own_zone(
    tracker: StatusTracker, micros: int
) -> None:
    """A zone under a second from UTC survives the store (isoformat writes it as
    +00:00:00.000001, which CPython's own fromisoformat reads back as UTC)."""
    zone = dt.timezone(dt.timedelta(microseconds=micros))
    event = StatusEvent(status="sent", error_code=None, at=T0.astimezone(zone))
    await tracker.apply("SM1", event)
    timeline = await tracker.timeline("SM1")
    assert timeline is not None
    assert timeline.current.at == event.at
    assert timeline.current.at.utcoffset() == zone.utcoffset(None)


async def test_messages_are_kept_apart(tracker: StatusTracker) -> None:
    await tracker.apply("SM1", at("read"))
    other = await tracker.apply("SM2", at("sent"))
    assert other.advanced
    assert other.history == (at("sent"),)


async def test_concurrent_reports_lose_nothing(tracker: StatusTracker) -> None:
    statuses = ["queued", "sending", "sent", "delivered", "read"]
    await asyncio.gather(*(tracker.apply("SM1", at(s, i)) for i, s in enumerate(statuses)))
    timeline = await tracker.timeline("SM1")
    assert timeline is not None
    assert timeline.current.status == "read"
    assert sorted(e.status for e in timeline.history) == sorted(statuses)


async def test_the_history_keeps_the_newest_reports_and_the_current_one_stays(
    tracker: StatusTracker,
) -> None:
    await tracker.apply("SM1", at("read"))
    for code in range(40):  # distinct failed reports, each a lower rank than read
        await tracker.apply("SM1", at("failed", code + 1, code=30000 + code))
    timeline = await tracker.timeline("SM1")
    assert timeline is not None
    assert timeline.current == at("read")  # dropped from the history, still what counts
    assert len(timeline.history) == 32
    assert timeline.history[-1] == at("failed", 40, code=30039)


async def test_a_redis_timeline_expires_its_ttl_after_the_last_report() -> None:
    """In Redis a timeline lives ``ttl`` past its last report (in memory: a bound on count)."""
    machine = RedisTimeMachine(shared_redis())
    try:
        tracker = RedisStatusTracker(machine.client, prefix=machine.prefix, ttl=60.0)
        await tracker.apply("SM1", at("sent"))
        await machine.advance(50.0)
        await tracker.apply("SM1", at("delivered", 50))  # a report keeps it another ttl
        await machine.advance(50.0)
        assert await tracker.timeline("SM1") is not None
        await machine.advance(11.0)
        assert await tracker.timeline("SM1") is None
    finally:
        await machine.close()
