"""The bounded in-memory stores: webhook dedup, conversation windows, template cache."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from ratatosk.adapters.memory import InMemoryConversationWindows, InMemoryDeduplicator
from ratatosk.adapters.templates import ContentApiTemplateCatalog
from ratatosk.emulator.app import start_emulator
from ratatosk.ports import Claim, ConversationWindow, Deduplicator


class Ticker:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_dedup_claims_once_until_expiry_or_release() -> None:
    clock = Ticker()
    seen = InMemoryDeduplicator(ttl=10, monotonic=clock)
    assert isinstance(seen, Deduplicator)
    assert await seen.claim("a") is Claim.FIRST
    assert await seen.claim("a") is Claim.IN_FLIGHT
    await seen.release("a")
    assert await seen.claim("a") is Claim.FIRST
    await seen.complete("a")
    clock.now = 9.9
    assert await seen.claim("a") is Claim.REPEAT
    clock.now = 10.0
    assert await seen.claim("a") is Claim.FIRST  # expired, so a new delivery


async def test_dedup_is_bounded_oldest_first() -> None:
    seen = InMemoryDeduplicator(max_entries=3, monotonic=Ticker())
    for key in "abcd":
        assert await seen.claim(key) is Claim.FIRST
        await seen.complete(key)
    assert len(seen) == 3
    assert await seen.claim("a") is Claim.FIRST  # dropped first, so no longer remembered
    assert await seen.claim("d") is Claim.REPEAT


async def test_dedup_wakes_a_waiter_on_a_dropped_claim() -> None:
    """A claim pushed out by the bound stops blocking its waiters at once."""
    seen = InMemoryDeduplicator(max_entries=1, monotonic=Ticker())
    assert await seen.claim("a") is Claim.FIRST
    waiter = asyncio.create_task(seen.claim("a", wait=30.0))
    await asyncio.sleep(0.01)
    assert await seen.claim("b") is Claim.FIRST  # drops "a"
    assert await waiter is Claim.FIRST


def test_dedup_refuses_nonsense_bounds() -> None:
    with pytest.raises(ValueError, match="ttl"):
        InMemoryDeduplicator(ttl=0)
    with pytest.raises(ValueError, match="lease"):
        InMemoryDeduplicator(lease=0)
    with pytest.raises(ValueError, match="max_entries"):
        InMemoryDeduplicator(max_entries=0)


T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


async def test_windows_keep_the_latest_time_per_pair_and_per_customer() -> None:
    windows = InMemoryConversationWindows()
    assert isinstance(windows, ConversationWindow)
    await windows.record_inbound("c", "b1", T0 + dt.timedelta(hours=2))
    await windows.record_inbound("c", "b1", T0)  # late, out-of-order webhook
    await windows.record_inbound("c", "b2", T0 + dt.timedelta(hours=3))
    assert await windows.last_inbound("c", "b1") == T0 + dt.timedelta(hours=2)
    assert await windows.last_inbound("c", None) == T0 + dt.timedelta(hours=3)
    assert await windows.last_inbound("c", "b3") is None
    with pytest.raises(ValueError, match="timezone"):
        await windows.record_inbound("c", "b1", dt.datetime(2026, 1, 1))


async def test_windows_are_bounded() -> None:
    windows = InMemoryConversationWindows(max_entries=2)
    for customer in "xyz":
        await windows.record_inbound(customer, "b", T0)
    assert await windows.last_inbound("x", "b") is None
    assert await windows.last_inbound("z", "b") == T0


async def test_content_catalog_caches_for_its_ttl_and_refreshes_misses_rarely() -> None:
    emulator = await start_emulator()
    clock = Ticker()
    try:
        catalog = ContentApiTemplateCatalog(
            emulator.account_sid,
            emulator.auth_token,
            base_url=emulator.url,
            ttl_seconds=300,
            negative_ttl_seconds=10,
            monotonic=clock,
        )
        first = await catalog.find("order_confirmed")
        assert first is not None
        emulator.model.add_template("late_arrival", "Your parcel is late.")
        assert await catalog.find("late_arrival") is None  # cached list, miss within 10 s
        clock.now = 11
        assert await catalog.find("late_arrival") is not None  # a miss refreshes after 10 s
        assert await catalog.find("order_confirmed") == first
    finally:
        await emulator.close()
