"""Handled deliveries the store could not mark: kept (bounded), retried, answered as duplicates.

A store behind the ``Deduplicator`` port that can be switched off stands in
for Redis going down; the real-Redis version is
tests/integration/test_webhook_redis_outage.py.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from ratatosk.adapters.memory import InMemoryDeduplicator
from ratatosk.adapters.webhook_core import WebhookStats, _Deliveries
from ratatosk.ports import Claim, StateStoreError


class SwitchableStore:
    """The in-memory deduplicator, whose ``complete`` fails while ``down``."""

    def __init__(self) -> None:
        self.inner = InMemoryDeduplicator()
        self.down = False
        self.completed: list[str] = []

    async def claim(self, key: str, *, wait: float = 0.0) -> Claim:
        return await self.inner.claim(key, wait=wait)

    async def complete(self, key: str) -> None:
        if self.down:
            raise StateStoreError("the store is down")
        self.completed.append(key)
        await self.inner.complete(key)

    async def release(self, key: str) -> None:
        await self.inner.release(key)


async def _handled(event: object) -> None:
    return None


async def test_unrecorded_keys_are_bounded_oldest_dropped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_Deliveries, "_UNRECORDED_KEYS", 3)
    store = SwitchableStore()
    stats = WebhookStats()
    deliveries = _Deliveries(store, stats, in_flight_wait=0.0, max_attempts=3)
    store.down = True
    with caplog.at_level(logging.WARNING, "ratatosk.webhooks"):
        for n in range(5):
            assert (await deliveries.deliver((f"event:{n}",), _handled, object())).status == 200
    assert stats.unrecorded == 3
    dropped = [r.getMessage() for r in caplog.records if "forgot" in r.getMessage()]
    assert len(dropped) == 2
    assert "event:0" in dropped[0]
    assert "event:1" in dropped[1]
    # The kept ones are still known here as handled; the forgotten one is not.
    assert (await deliveries.deliver(("event:4",), _handled, object())).duplicate
    assert not (await deliveries.deliver(("event:0",), _handled, object())).duplicate
    await deliveries.close()


async def test_marks_are_written_once_the_store_answers_and_close_tries_last() -> None:
    store = SwitchableStore()
    stats = WebhookStats()
    deliveries = _Deliveries(store, stats, in_flight_wait=0.0, max_attempts=3)
    store.down = True
    await deliveries.deliver(("event:a", "token:a"), _handled, object())
    await deliveries.deliver(("event:b",), _handled, object())
    assert stats.unrecorded == 3
    store.down = False
    await deliveries.close()  # the last try, at shutdown
    assert store.completed == ["event:a", "token:a", "event:b"]
    assert stats.unrecorded == 0
    assert stats.recorded_late == 3
    assert await store.inner.claim("event:b") is Claim.REPEAT


async def test_the_retry_runs_on_its_own_until_the_store_answers() -> None:
    store = SwitchableStore()
    stats = WebhookStats()
    deliveries = _Deliveries(store, stats, in_flight_wait=0.0, max_attempts=3)
    store.down = True
    await deliveries.deliver(("event:a",), _handled, object())
    store.down = False
    async with asyncio.timeout(30):  # a hang guard: the timer retries every 0.25 s
        while stats.unrecorded:
            await asyncio.sleep(0.02)
    assert store.completed == ["event:a"]
    assert stats.recorded_late == 1
    await deliveries.close()
