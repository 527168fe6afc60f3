"""The ``Deduplicator`` port's contract: one suite that every adapter must pass unchanged.

An adapter joins by adding one entry to ``ADAPTERS``: a function that builds
it with a given TTL and lease, and a way to let time pass (the in-memory
store moves a manual clock; the Redis store, on the suite's real
redis-server, has its keys aged by a ``RedisTimeMachine``). Everything
below speaks only through the port, so the same checks hold for any store
that several webhook servers could share.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from port_subjects import ManualMonotonic, Subject
from ratatosk.adapters.memory import InMemoryDeduplicator
from ratatosk.adapters.redis import RedisDeduplicator
from ratatosk.ports import Claim, Deduplicator
from redis_support import RedisTimeMachine, shared_redis

#: Long enough that nothing lapses while a test runs, however slow the machine.
LONG = 3600.0


def in_memory() -> Subject:
    clock = ManualMonotonic()

    def make(*, ttl: float = LONG, lease: float = LONG) -> Deduplicator:
        return InMemoryDeduplicator(ttl=ttl, lease=lease, monotonic=clock)

    return Subject(make, clock.advance)


def redis() -> Subject:
    machine = RedisTimeMachine(shared_redis())

    def make(*, ttl: float = LONG, lease: float = LONG) -> Deduplicator:
        return RedisDeduplicator(machine.client, prefix=machine.prefix, ttl=ttl, lease=lease)

    return Subject(make, machine.advance, machine.close)


ADAPTERS: dict[str, Callable[[], Subject]] = {"in-memory": in_memory, "redis": redis}


@pytest.fixture(params=sorted(ADAPTERS))
async def subject(request: Any) -> AsyncIterator[Subject]:
    built = ADAPTERS[request.param]()
    try:
        yield built
    finally:
        await built.close()


async def settle_soon(action: Awaitable[None], delay: float = 0.05) -> None:
    """Run ``action`` after the waiters under test have started waiting."""
    await asyncio.sleep(delay)
    await action


class TestClaims:
    """Claim, complete, release: who handles a delivery."""

    async def test_is_the_port(self, subject: Subject) -> None:
        """The adapter satisfies the Protocol at run time."""
        assert isinstance(subject.make(), Deduplicator)

    async def test_first_claim_holds_the_key(self, subject: Subject) -> None:
        """The first claim is FIRST; another one while it is held is IN_FLIGHT, never REPEAT."""
        store = subject.make()
        assert await store.claim("event:a") is Claim.FIRST
        assert await store.claim("event:a") is Claim.IN_FLIGHT
        assert await store.claim("event:a", wait=0.0) is Claim.IN_FLIGHT

    async def test_completed_key_is_a_repeat(self, subject: Subject) -> None:
        """After complete, every claim is REPEAT."""
        store = subject.make()
        assert await store.claim("event:a") is Claim.FIRST
        await store.complete("event:a")
        assert await store.claim("event:a") is Claim.REPEAT
        assert await store.claim("event:a", wait=1.0) is Claim.REPEAT

    async def test_released_key_is_claimed_again(self, subject: Subject) -> None:
        """After release (the handler failed), the next delivery is FIRST."""
        store = subject.make()
        assert await store.claim("event:a") is Claim.FIRST
        await store.release("event:a")
        assert await store.claim("event:a") is Claim.FIRST
        assert await store.claim("event:a") is Claim.IN_FLIGHT

    async def test_a_late_release_does_not_undo_a_completion(self, subject: Subject) -> None:
        """release only forgets a claim in flight."""
        store = subject.make()
        await store.claim("event:a")
        await store.complete("event:a")
        await store.release("event:a")
        assert await store.claim("event:a") is Claim.REPEAT

    async def test_release_and_complete_of_unknown_keys(self, subject: Subject) -> None:
        """Releasing an unknown key does nothing; completing one records it as handled."""
        store = subject.make()
        await store.release("event:never")
        assert await store.claim("event:never") is Claim.FIRST
        await store.complete("event:other")
        assert await store.claim("event:other") is Claim.REPEAT

    async def test_keys_are_independent(self, subject: Subject) -> None:
        """A key's state says nothing about another key's."""
        store = subject.make()
        assert await store.claim("event:a") is Claim.FIRST
        await store.complete("event:a")
        assert await store.claim("token:a") is Claim.FIRST
        assert await store.claim("event:b") is Claim.FIRST


class TestExpiry:
    """Entries do not live for ever, and a dead holder does not block for ever."""

    async def test_a_completed_key_expires_after_the_ttl(self, subject: Subject) -> None:
        """Within the TTL: REPEAT; after it: FIRST again."""
        store = subject.make(ttl=0.4)
        await store.claim("event:a")
        await store.complete("event:a")
        assert await store.claim("event:a") is Claim.REPEAT
        await subject.advance(0.6)
        assert await store.claim("event:a") is Claim.FIRST

    async def test_a_claim_lapses_after_its_lease(self, subject: Subject) -> None:
        """A holder that neither completes nor releases loses the key when its lease ends."""
        store = subject.make(lease=0.3)
        assert await store.claim("event:a") is Claim.FIRST
        await subject.advance(0.5)
        assert await store.claim("event:a") is Claim.FIRST

    async def test_a_waiter_takes_over_a_lapsed_claim(self, subject: Subject) -> None:
        """A repeat waiting on a dead holder gets FIRST once the lease ends, not IN_FLIGHT."""
        store = subject.make(lease=0.3)
        assert await store.claim("event:a") is Claim.FIRST
        waiter = asyncio.create_task(store.claim("event:a", wait=30.0))
        await settle_soon(subject.advance(0.5))
        assert await waiter is Claim.FIRST


class TestWaiting:
    """A repeat that arrives while the first delivery is handled waits for its outcome."""

    async def test_waiter_sees_a_completion_as_a_repeat(self, subject: Subject) -> None:
        """The holder succeeds: the waiting repeat is a REPEAT."""
        store = subject.make()
        await store.claim("event:a")
        waiter = asyncio.create_task(store.claim("event:a", wait=30.0))
        await settle_soon(store.complete("event:a"))
        assert await waiter is Claim.REPEAT

    async def test_waiter_takes_over_after_a_release(self, subject: Subject) -> None:
        """The holder fails: the waiting repeat becomes the delivery that is handled."""
        store = subject.make()
        await store.claim("event:a")
        waiter = asyncio.create_task(store.claim("event:a", wait=30.0))
        await settle_soon(store.release("event:a"))
        assert await waiter is Claim.FIRST
        assert await store.claim("event:a") is Claim.IN_FLIGHT

    async def test_waiting_is_bounded(self, subject: Subject) -> None:
        """No outcome within the wait: IN_FLIGHT, and the holder still holds the key."""
        store = subject.make()
        await store.claim("event:a")
        assert await store.claim("event:a", wait=0.05) is Claim.IN_FLIGHT
        await store.complete("event:a")
        assert await store.claim("event:a") is Claim.REPEAT

    async def test_one_of_many_waiters_takes_over(self, subject: Subject) -> None:
        """Ten repeats wait on a holder that fails: exactly one of them gets the key."""
        store = subject.make()
        await store.claim("event:a")
        waiters = [asyncio.create_task(store.claim("event:a", wait=0.5)) for _ in range(10)]
        await settle_soon(store.release("event:a"))
        outcomes = await asyncio.gather(*waiters)
        assert outcomes.count(Claim.FIRST) == 1
        assert set(outcomes) == {Claim.FIRST, Claim.IN_FLIGHT}


class TestConcurrency:
    """Simultaneous claims of one key: one winner."""

    async def test_simultaneous_claims_have_one_winner(self, subject: Subject) -> None:
        """Twenty claims at once: one FIRST, the others IN_FLIGHT."""
        store = subject.make()
        outcomes = await asyncio.gather(*(store.claim("event:a") for _ in range(20)))
        assert outcomes.count(Claim.FIRST) == 1
        assert outcomes.count(Claim.IN_FLIGHT) == 19

    async def test_many_keys_at_once(self, subject: Subject) -> None:
        """Claims of distinct keys do not disturb each other."""
        store = subject.make()
        keys = [f"event:{n}" for n in range(200)]
        assert set(await asyncio.gather(*(store.claim(k) for k in keys))) == {Claim.FIRST}
        await asyncio.gather(*(store.complete(k) for k in keys[::2]))
        await asyncio.gather(*(store.release(k) for k in keys[1::2]))
        again = await asyncio.gather(*(store.claim(k) for k in keys))
        assert again == [Claim.REPEAT, Claim.FIRST] * 100
