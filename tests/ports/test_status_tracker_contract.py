"""The ``StatusTracker`` port's contract: one suite every adapter passes unchanged.

An adapter joins by adding a builder to ``ADAPTERS``. Everything below goes
through the port, so a shared store (Redis) runs the same checks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from ratatosk.adapters.memory import InMemoryStatusTracker
from ratatosk.ports import StatusEvent, StatusTracker

ADAPTERS: dict[str, Callable[[], StatusTracker]] = {"in-memory": InMemoryStatusTracker}
T0 = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)


@pytest.fixture(params=sorted(ADAPTERS))
def tracker(request: Any) -> StatusTracker:
    return ADAPTERS[request.param]()


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
