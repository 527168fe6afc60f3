"""The ``OutboundQueue`` port's contract: one suite every adapter passes unchanged.

An adapter joins by adding a builder to ``ADAPTERS``: it makes a queue with a
given visibility timeout and result TTL, and lets time pass. The in-memory
queue moves a manual clock; the Redis queue, on the suite's real
redis-server, has its pending entries aged (``XCLAIM ... IDLE``, to the
consumer that holds them, counting no delivery) and its keys' TTLs shortened
by a ``RedisTimeMachine``, so "after the visibility timeout" needs no sleep
and no timing luck. Everything below speaks only through the port.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from port_subjects import ManualMonotonic, Subject
from ratatosk.adapters.memory.outbound_queue import InMemoryOutboundQueue
from ratatosk.adapters.redis.outbound_queue import RedisOutboundQueue
from ratatosk.ports import OutboundQueue, QueuedSend, QueueStats
from redis_support import RedisTimeMachine, shared_redis

#: Long enough that nothing lapses while a test runs, however slow the machine.
LONG = 3600.0


def in_memory() -> Subject:
    clock = ManualMonotonic()

    def make(*, visibility: float = LONG, result_ttl: float = LONG) -> OutboundQueue:
        return InMemoryOutboundQueue(clock, visibility_timeout=visibility, result_ttl=result_ttl)

    return Subject(make, clock.advance)


def redis() -> Subject:
    machine = RedisTimeMachine(shared_redis())
    made: list[RedisOutboundQueue] = []

    def make(*, visibility: float = LONG, result_ttl: float = LONG) -> OutboundQueue:
        queue = RedisOutboundQueue(
            machine.client,
            prefix=machine.prefix,
            name=f"q{len(made)}",
            visibility_timeout=visibility,
            result_ttl=result_ttl,
        )
        made.append(queue)
        return queue

    async def advance(seconds: float) -> None:
        await machine.advance(seconds)
        for queue in made:
            await _age_pending(machine, queue, seconds)

    return Subject(make, advance, machine.close)


async def _age_pending(
    machine: RedisTimeMachine, queue: RedisOutboundQueue, seconds: float
) -> None:
    """Make every pending entry ``seconds`` idler, still its consumer's, no delivery counted."""
    client = machine.client
    if not await client.exists(queue.stream_key):
        return
    for held in await client.xpending_range(queue.stream_key, queue.group, "-", "+", 10_000):
        idle = int(held["time_since_delivered"]) + round(seconds * 1000)
        await client.xclaim(
            queue.stream_key,
            queue.group,
            held["consumer"],
            0,
            [held["message_id"]],
            idle=idle,
            justid=True,
        )


ADAPTERS: dict[str, Callable[[], Subject]] = {"in-memory": in_memory, "redis": redis}


@pytest.fixture(params=sorted(ADAPTERS))
async def subject(request: Any) -> AsyncIterator[Subject]:
    built = ADAPTERS[request.param]()
    try:
        yield built
    finally:
        await built.close()


def payload(n: int) -> dict[str, object]:
    return {"v": 1, "id": f"m{n}", "content": {"kind": "text", "text": f"hello {n} ✓"}}


async def add(queue: OutboundQueue, *numbers: int) -> list[str]:
    return list(await queue.add([(f"m{n}", payload(n)) for n in numbers]))


SENT = {"message_id": "m1", "sid": "SM1", "status": "Queued", "timestamp": "2026-01-01T00:00:00"}


class TestAddAndRead:
    async def test_is_the_port(self, subject: Subject) -> None:
        """The adapter satisfies the Protocol at run time."""
        assert isinstance(subject.make(), OutboundQueue)

    async def test_entries_come_out_in_order_with_their_payload(self, subject: Subject) -> None:
        """What is added is read back, in order, payload intact, first delivery."""
        queue = subject.make()
        ids = await add(queue, 1, 2, 3)
        assert len(set(ids)) == 3
        got = await queue.read("w1", count=10)
        assert [e.entry_id for e in got] == ids
        assert [e.message_id for e in got] == ["m1", "m2", "m3"]
        assert [dict(e.payload) for e in got] == [payload(1), payload(2), payload(3)]
        assert {e.deliveries for e in got} == {1}

    async def test_a_read_takes_at_most_count(self, subject: Subject) -> None:
        """A bounded batch; the rest stays for the next read, by any consumer."""
        queue = subject.make()
        await add(queue, 1, 2, 3)
        first = await queue.read("w1", count=2)
        second = await queue.read("w2", count=2)
        assert [e.message_id for e in first] == ["m1", "m2"]
        assert [e.message_id for e in second] == ["m3"]
        assert await queue.read("w3", count=2) == []

    async def test_each_entry_goes_to_one_consumer(self, subject: Subject) -> None:
        """Consumers reading at once never get the same entry."""
        queue = subject.make()
        await add(queue, *range(30))
        batches = await asyncio.gather(*(queue.read(f"w{i}", count=4) for i in range(10)))
        seen = [e.message_id for batch in batches for e in batch]
        assert len(seen) == len(set(seen)) == 30

    async def test_an_empty_read_waits_for_an_add(self, subject: Subject) -> None:
        """A blocked read returns the entry added while it waits."""
        queue = subject.make()
        reader = asyncio.create_task(queue.read("w1", count=5, block=5.0))
        await asyncio.sleep(0.05)
        await add(queue, 7)
        got = await reader
        assert [e.message_id for e in got] == ["m7"]

    async def test_an_empty_read_without_block_returns_nothing(self, subject: Subject) -> None:
        queue = subject.make()
        assert await queue.read("w1", count=5) == []
        assert await queue.read("w1", count=5, block=0.05) == []

    async def test_adding_nothing_adds_nothing(self, subject: Subject) -> None:
        queue = subject.make()
        assert list(await queue.add([])) == []
        assert await queue.stats() == QueueStats(waiting=0, pending=0, dead=0)


class TestAcknowledgeAndResults:
    async def test_complete_stores_the_result_and_removes_the_entry(self, subject: Subject) -> None:
        """After complete, the result is there and the entry is never handed out again."""
        queue = subject.make()
        await add(queue, 1)
        (entry,) = await queue.read("w1", count=1)
        assert await queue.result("m1") is None
        assert await queue.complete(entry, SENT) is True
        assert await queue.result("m1") == SENT
        await subject.advance(LONG + 1)
        assert await queue.reclaim("w2", count=10) == []
        assert await queue.stats() == QueueStats(waiting=0, pending=0, dead=0)

    async def test_the_first_final_result_wins(self, subject: Subject) -> None:
        """One message id queued twice: the second result does not replace the first."""
        queue = subject.make()
        await queue.add([("m1", payload(1)), ("m1", payload(1))])
        first, second = await queue.read("w1", count=2)
        failed = {"message_id": "m1", "error": {"code": "SEND_OUTCOME_UNKNOWN"}}
        assert await queue.complete(first, SENT) is True
        assert await queue.complete(second, failed) is False
        assert await queue.result("m1") == SENT

    async def test_results_expire_after_their_ttl(self, subject: Subject) -> None:
        queue = subject.make(result_ttl=60.0)
        await add(queue, 1)
        (entry,) = await queue.read("w1", count=1)
        await queue.complete(entry, SENT)
        await subject.advance(30.0)
        assert await queue.result("m1") == SENT
        await subject.advance(31.0)
        assert await queue.result("m1") is None

    async def test_stats_count_waiting_pending_and_dead(self, subject: Subject) -> None:
        queue = subject.make()
        await add(queue, 1, 2, 3, 4)
        one, two = await queue.read("w1", count=2)
        assert await queue.stats() == QueueStats(waiting=2, pending=2, dead=0)
        await queue.complete(one, SENT)
        await queue.dead_letter(two, "because", {"message_id": "m2", "error": {}})
        assert await queue.stats() == QueueStats(waiting=2, pending=0, dead=1)


class TestHolds:
    """What a submitter asks to tell "still queued" from "the queue no longer knows it"."""

    async def test_waiting_and_pending_entries_are_held_finished_ones_not(
        self, subject: Subject
    ) -> None:
        queue = subject.make(visibility=30.0)
        waiting, pending, done, dead = await add(queue, 1, 2, 3, 4)
        assert list(await queue.holds([waiting, pending, done, dead])) == [True] * 4
        _, two, three, four = await queue.read("w1", count=4)
        await queue.complete(three, SENT)
        await queue.dead_letter(four, "because", {"message_id": "m4", "error": {}})
        await queue.release("w1", [two.entry_id])  # handed back: still the queue's to finish
        await subject.advance(31.0)  # past the visibility timeout: still held
        assert list(await queue.holds([dead, waiting, done, pending])) == [
            False,
            True,
            False,
            True,
        ]

    async def test_an_id_the_queue_never_gave_is_not_held(self, subject: Subject) -> None:
        """Another queue's entry id, or one edited by hand: the queue knows nothing of it."""
        queue = subject.make()
        (real,) = await add(queue, 1)
        other = subject.make()
        assert list(await other.holds([real])) == [False]
        assert list(await queue.holds(["99999-0", "not-an-id", "", real])) == [
            False,
            False,
            False,
            True,
        ]
        assert list(await queue.holds([])) == []

    async def test_a_held_entry_outlives_the_results_ttl(self, subject: Subject) -> None:
        """A send left for a re-check may stay pending past the TTL: still held, not unknown."""
        queue = subject.make(result_ttl=60.0)
        (entry_id,) = await add(queue, 1)
        await queue.read("w1", count=1)
        await subject.advance(61.0)
        assert await queue.result("m1") is None
        assert list(await queue.holds([entry_id])) == [True]


class TestReclaim:
    async def test_an_untouched_entry_is_reclaimed_after_the_timeout(
        self, subject: Subject
    ) -> None:
        """A consumer that died: its entry goes to another, its delivery counted."""
        queue = subject.make(visibility=30.0)
        await add(queue, 1)
        (entry,) = await queue.read("dead-worker", count=1)
        assert await queue.reclaim("w2", count=10) == []
        await subject.advance(31.0)
        (again,) = await queue.reclaim("w2", count=10)
        assert (again.entry_id, again.message_id, again.deliveries) == (entry.entry_id, "m1", 2)
        assert dict(again.payload) == payload(1)
        assert await queue.reclaim("w3", count=10) == []  # now w2's, touched just now
        await subject.advance(31.0)
        (third,) = await queue.reclaim("w3", count=10)
        assert third.deliveries == 3

    async def test_reclaim_takes_at_most_count(self, subject: Subject) -> None:
        queue = subject.make(visibility=30.0)
        await add(queue, 1, 2, 3)
        await queue.read("dead-worker", count=3)
        await subject.advance(31.0)
        first = await queue.reclaim("w2", count=2)
        rest = await queue.reclaim("w3", count=2)
        assert len(first) == 2
        assert len(rest) == 1
        assert {e.message_id for e in [*first, *rest]} == {"m1", "m2", "m3"}

    async def test_extend_keeps_an_entry_from_being_reclaimed(self, subject: Subject) -> None:
        """A consumer still working on an entry keeps it, without a delivery counted."""
        queue = subject.make(visibility=30.0)
        await add(queue, 1)
        (entry,) = await queue.read("w1", count=1)
        await subject.advance(20.0)
        await queue.extend("w1", [entry.entry_id])
        await subject.advance(20.0)
        assert await queue.reclaim("w2", count=10) == []
        await subject.advance(11.0)
        (again,) = await queue.reclaim("w2", count=10)
        assert again.deliveries == 2

    async def test_extend_by_a_consumer_that_lost_the_entry_changes_nothing(
        self, subject: Subject
    ) -> None:
        """A slow consumer cannot take back an entry another one reclaimed."""
        queue = subject.make(visibility=30.0)
        await add(queue, 1)
        (entry,) = await queue.read("slow", count=1)
        await subject.advance(31.0)
        (mine,) = await queue.reclaim("w2", count=1)
        await subject.advance(31.0)
        await queue.extend("slow", [entry.entry_id])
        (third,) = await queue.reclaim("w3", count=1)  # still idle: w2 never touched it
        assert third.entry_id == mine.entry_id

    async def test_release_hands_entries_back_at_once(self, subject: Subject) -> None:
        """A consumer stopping gives back what it will not finish; the next one has it now."""
        queue = subject.make(visibility=LONG)
        await add(queue, 1, 2)
        first, second = await queue.read("stopping", count=2)
        await queue.release("stopping", [first.entry_id])
        (back,) = await queue.reclaim("w2", count=10)
        assert (back.entry_id, back.deliveries) == (first.entry_id, 2)
        await queue.release("not-the-holder", [second.entry_id])
        assert await queue.reclaim("w3", count=10) == []

    async def test_a_completed_entry_is_not_reclaimed(self, subject: Subject) -> None:
        queue = subject.make(visibility=30.0)
        await add(queue, 1, 2)
        one, _ = await queue.read("w1", count=2)
        await queue.complete(one, SENT)
        await subject.advance(31.0)
        assert [e.message_id for e in await queue.reclaim("w2", count=10)] == ["m2"]


class TestDeadLetters:
    async def test_a_dead_letter_keeps_the_message_and_the_reason(self, subject: Subject) -> None:
        queue = subject.make(visibility=30.0)
        await add(queue, 1)
        await queue.read("w1", count=1)
        await subject.advance(31.0)
        (entry,) = await queue.reclaim("w2", count=1)
        result = {"message_id": "m1", "error": {"code": "SEND_OUTCOME_UNKNOWN"}}
        assert await queue.dead_letter(entry, "unknown after 2 deliveries", result) is True
        (letter,) = await queue.dead_letters()
        assert letter.message_id == "m1"
        assert letter.entry_id == entry.entry_id
        assert letter.deliveries == 2
        assert letter.reason == "unknown after 2 deliveries"
        assert dict(letter.payload) == payload(1)
        assert await queue.result("m1") == result
        await subject.advance(31.0)
        assert await queue.reclaim("w3", count=10) == []
        assert await queue.read("w3", count=10) == []

    async def test_dead_letters_come_oldest_first_and_bounded(self, subject: Subject) -> None:
        queue = subject.make()
        await add(queue, 1, 2, 3)
        entries: list[QueuedSend] = list(await queue.read("w1", count=3))
        for entry in entries:
            await queue.dead_letter(entry, f"r{entry.message_id}", {"message_id": entry.message_id})
        assert [d.reason for d in await queue.dead_letters(2)] == ["rm1", "rm2"]
