"""The ``ConversationWindow`` port's contract: one suite for every adapter in ``ADAPTERS``.

What the port promises (its docstring, and the window guard that reads it):
the latest inbound time per (customer, business number) and per customer,
later times winning whatever order webhooks arrive in, timezone-aware times
only, and each time remembered at least as long as the 24-hour window it
opens. Everything below speaks only through the port; the Redis adapter
runs on the suite's real redis-server, its keys aged by a ``RedisTimeMachine``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import pytest

from ratatosk.adapters.memory import InMemoryConversationWindows
from ratatosk.adapters.redis import RedisConversationWindows
from ratatosk.ports import ConversationWindow
from redis_support import RedisTimeMachine, shared_redis

CUSTOMER = "whatsapp:+15550002222"
OTHER_CUSTOMER = "whatsapp:+15550003333"
SHOP = "whatsapp:+14155238886"
OTHER_SHOP = "whatsapp:+14155230000"
T0 = dt.datetime(2026, 5, 1, 9, 30, 15, 123456, tzinfo=dt.UTC)


async def _nothing(seconds: float = 0.0) -> None:
    return None


@attrs.frozen
class Subject:
    make: Callable[[], ConversationWindow]
    advance: Callable[[float], Awaitable[None]]
    close: Callable[[], Awaitable[None]] = _nothing


def in_memory() -> Subject:
    # No clock: entries leave only when the bound pushes them out.
    return Subject(InMemoryConversationWindows, _nothing)


def redis() -> Subject:
    machine = RedisTimeMachine(shared_redis())
    return Subject(
        lambda: RedisConversationWindows(machine.client, prefix=machine.prefix),
        machine.advance,
        machine.close,
    )


ADAPTERS: dict[str, Callable[[], Subject]] = {"in-memory": in_memory, "redis": redis}


@pytest.fixture(params=sorted(ADAPTERS))
async def subject(request: Any) -> AsyncIterator[Subject]:
    built = ADAPTERS[request.param]()
    try:
        yield built
    finally:
        await built.close()


class TestRecordAndRead:
    async def test_is_the_port(self, subject: Subject) -> None:
        assert isinstance(subject.make(), ConversationWindow)

    async def test_nothing_is_known_until_a_customer_writes(self, subject: Subject) -> None:
        windows = subject.make()
        assert await windows.last_inbound(CUSTOMER, SHOP) is None
        assert await windows.last_inbound(CUSTOMER, None) is None

    async def test_the_time_comes_back_as_the_same_aware_instant(self, subject: Subject) -> None:
        """To the microsecond, timezone-aware, whatever zone it was given in."""
        windows = subject.make()
        local = T0.astimezone(dt.timezone(dt.timedelta(hours=-7)))
        await windows.record_inbound(CUSTOMER, SHOP, local)
        for business in (SHOP, None):
            held = await windows.last_inbound(CUSTOMER, business)
            assert held == T0
            assert held is not None
            assert held.tzinfo is not None

    async def test_a_naive_time_is_refused(self, subject: Subject) -> None:
        windows = subject.make()
        with pytest.raises(ValueError, match="timezone-aware"):
            await windows.record_inbound(CUSTOMER, SHOP, T0.replace(tzinfo=None))
        assert await windows.last_inbound(CUSTOMER, None) is None

    async def test_pairs_and_customers_are_independent(self, subject: Subject) -> None:
        windows = subject.make()
        await windows.record_inbound(CUSTOMER, SHOP, T0)
        assert await windows.last_inbound(CUSTOMER, OTHER_SHOP) is None
        assert await windows.last_inbound(OTHER_CUSTOMER, SHOP) is None
        assert await windows.last_inbound(OTHER_CUSTOMER, None) is None


class TestLaterTimesWin:
    async def test_an_older_message_never_moves_the_window_back(self, subject: Subject) -> None:
        """Webhooks arrive out of order: the latest time stays, for the pair and the customer."""
        windows = subject.make()
        later = T0 + dt.timedelta(hours=2)
        await windows.record_inbound(CUSTOMER, SHOP, later)
        await windows.record_inbound(CUSTOMER, SHOP, T0)
        assert await windows.last_inbound(CUSTOMER, SHOP) == later
        assert await windows.last_inbound(CUSTOMER, None) == later
        newest = later + dt.timedelta(microseconds=1)
        await windows.record_inbound(CUSTOMER, SHOP, newest)
        assert await windows.last_inbound(CUSTOMER, SHOP) == newest

    async def test_any_business_means_the_latest_to_any_of_them(self, subject: Subject) -> None:
        windows = subject.make()
        await windows.record_inbound(CUSTOMER, SHOP, T0 + dt.timedelta(hours=1))
        await windows.record_inbound(CUSTOMER, OTHER_SHOP, T0)
        assert await windows.last_inbound(CUSTOMER, None) == T0 + dt.timedelta(hours=1)
        assert await windows.last_inbound(CUSTOMER, OTHER_SHOP) == T0

    async def test_concurrent_records_keep_the_latest(self, subject: Subject) -> None:
        windows = subject.make()
        times = [T0 + dt.timedelta(seconds=n) for n in range(50)]
        random.Random(7).shuffle(times)
        await asyncio.gather(*(windows.record_inbound(CUSTOMER, SHOP, t) for t in times))
        assert await windows.last_inbound(CUSTOMER, SHOP) == max(times)
        assert await windows.last_inbound(CUSTOMER, None) == max(times)


class TestMemory:
    async def test_a_time_is_remembered_through_the_window_it_opens(self, subject: Subject) -> None:
        """A day later the guard must still see the message (to tell the window just closed)."""
        windows = subject.make()
        await windows.record_inbound(CUSTOMER, SHOP, T0)
        await subject.advance(24 * 3600.0)
        assert await windows.last_inbound(CUSTOMER, SHOP) == T0
        assert await windows.last_inbound(CUSTOMER, None) == T0
