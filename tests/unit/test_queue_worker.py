"""The Outbox and the QueueWorker in one process: the in-memory queue, a connector on FakeTwilio.

The worker's loop is the real one (reads, heartbeats, reclaims, acts on the
decisions); the queue's visibility timeout runs on a manual clock, so "after
the timeout" is a step, not a wait. Real processes, Redis and SIGKILL are
tests/integration/test_queue_workers.py's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from ratatosk.adapters.memory.outbound_queue import InMemoryOutboundQueue
from ratatosk.adapters.worker import QueueWorker, WorkerSettings
from ratatosk.domain.errors import MessagingErrorCodes
from ratatosk.domain.message import Message, MessageBuilder
from ratatosk.domain.settings import ConnectionSettings
from ratatosk.testing import FakeTwilio
from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector
from ratatosk.twilio.errors import TwilioErrorCodes
from ratatosk.twilio.outbox import Outbox, Ticket
from ratatosk.twilio.send import Delivery

ACCOUNT = "AC" + "1" * 32
TOKEN = "tok-SECRET-5e4d3c2b1a"
SENDER = "whatsapp:+14155238886"


class ManualMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settings() -> ConnectionSettings:
    return (
        ConnectionSettings()
        .set_parameter("AccountSid", ACCOUNT)
        .set_parameter("AuthToken", TOKEN)
        .set_parameter("FromNumber", SENDER)
    )


def message(n: int, to: str = "whatsapp:+15550002222") -> Message:
    return MessageBuilder().with_id(f"m{n}").to_phone(to).with_text(f"order {n} shipped").build()


@pytest.fixture
def fake() -> FakeTwilio:
    return FakeTwilio(account_sid=ACCOUNT, auth_token=TOKEN)


@pytest.fixture
async def connector(fake: FakeTwilio) -> AsyncIterator[TwilioWhatsAppConnector]:
    async with TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP, settings(), transport=fake
    ) as ready:
        yield ready


@pytest.fixture
def clock() -> ManualMonotonic:
    return ManualMonotonic()


@pytest.fixture
def queue(clock: ManualMonotonic) -> InMemoryOutboundQueue:
    return InMemoryOutboundQueue(clock, visibility_timeout=30.0)


@pytest.fixture
def outbox(queue: InMemoryOutboundQueue) -> Outbox:
    return Outbox.from_settings(queue, settings())


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait (bounded) until ``check`` holds; fails rather than hangs."""
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.01)
    pytest.fail("the worker never got there")


async def run_worker(
    connector: TwilioWhatsAppConnector,
    queue: InMemoryOutboundQueue,
    until: Callable[[], Awaitable[bool]],
    **options: object,
) -> QueueWorker:
    settings = WorkerSettings(consumer="w1", block=0.02, reclaim_every=0.01, **options)  # type: ignore[arg-type]
    worker = QueueWorker(connector, queue, settings)
    running = asyncio.create_task(worker.run())
    try:
        await eventually(until)
    finally:
        worker.stop()
        await running
    return worker


class TestOutbox:
    async def test_a_message_refused_by_planning_never_enters_the_queue(
        self, outbox: Outbox, queue: InMemoryOutboundQueue
    ) -> None:
        """The connector's own plan_send decides, before any I/O: nothing queued."""
        bad = MessageBuilder().with_id("bad").to_phone("+1 not a number").with_text("x").build()
        refused = await outbox.submit(bad)
        assert refused.error is not None
        assert refused.error.code == MessagingErrorCodes.INVALID_RECIPIENT
        assert refused.error.details["message_id"] == "bad"
        stats = await queue.stats()
        assert (stats.waiting, stats.pending) == (0, 0)

    async def test_submit_many_queues_the_good_and_refuses_the_bad_in_order(
        self, outbox: Outbox, queue: InMemoryOutboundQueue
    ) -> None:
        empty = MessageBuilder().with_id("empty").to_phone("whatsapp:+15550002222").build()
        results = await outbox.submit_many([message(1), empty, message(2)])
        assert [r.successful for r in results] == [True, False, True]
        tickets = [r.unwrap() for r in results if r.value is not None]
        assert [t.message_id for t in tickets] == ["m1", "m2"]
        assert results[1].error is not None
        assert results[1].error.code == TwilioErrorCodes.INVALID_MESSAGE
        assert (await queue.stats()).waiting == 2

    async def test_a_property_with_no_json_form_is_refused(self, outbox: Outbox) -> None:
        odd = MessageBuilder().with_id("odd").to_phone("whatsapp:+15550002222")
        refused = await outbox.submit(odd.with_text("hi").with_property("x", object()).build())
        assert refused.error is not None
        assert refused.error.code == MessagingErrorCodes.MESSAGE_SERIALIZATION_FAILED

    async def test_wait_gives_up_after_its_timeout(self, outbox: Outbox) -> None:
        ticket = (await outbox.submit(message(1))).unwrap()
        assert await outbox.wait(ticket, timeout=0.05) is None
        assert await outbox.result("m1") is None


class TestWorker:
    async def test_every_queued_message_is_sent_once_and_its_result_kept(
        self,
        connector: TwilioWhatsAppConnector,
        fake: FakeTwilio,
        queue: InMemoryOutboundQueue,
        outbox: Outbox,
    ) -> None:
        tickets = [r.unwrap() for r in await outbox.submit_many([message(n) for n in range(25)])]

        async def all_done() -> bool:
            return all([await outbox.result(t.message_id) is not None for t in tickets])

        worker = await run_worker(connector, queue, all_done, concurrency=4)
        results = await outbox.wait_all(tickets, timeout=1.0)
        sids = {r.unwrap().provider_message_id for r in results if r is not None}
        assert len(sids) == 25
        assert sorted(m.params["Body"] for m in fake.outbox) == sorted(
            f"order {n} shipped" for n in range(25)
        )
        assert worker.report.completed == 25
        assert await queue.stats() == type(await queue.stats())(waiting=0, pending=0, dead=0)

    async def test_a_message_queued_twice_is_sent_once(
        self,
        connector: TwilioWhatsAppConnector,
        fake: FakeTwilio,
        queue: InMemoryOutboundQueue,
        outbox: Outbox,
    ) -> None:
        """Same id submitted twice: the ledger replays the first send for the second entry."""
        first = (await outbox.submit(message(1))).unwrap()
        second = (await outbox.submit(message(1))).unwrap()
        assert first.entry_id != second.entry_id

        async def drained() -> bool:
            return (await queue.stats()).pending + (await queue.stats()).waiting == 0

        await run_worker(connector, queue, drained)
        assert len(fake.outbox) == 1
        result = await outbox.result("m1")
        assert result is not None
        assert result.value is not None
        assert result.value.provider_message_id == fake.outbox[0].sid

    @pytest.mark.parametrize(
        ("delivery", "sent_again"),
        [(Delivery.AT_MOST_ONCE, False), (Delivery.AT_LEAST_ONCE, True)],
    )
    async def test_an_unknown_outcome_is_looked_at_again_after_the_visibility_timeout(
        self,
        *,
        connector: TwilioWhatsAppConnector,
        fake: FakeTwilio,
        queue: InMemoryOutboundQueue,
        outbox: Outbox,
        clock: ManualMonotonic,
        delivery: Delivery,
        sent_again: bool,
    ) -> None:
        """The connection dropped before Twilio stored it: unknown, left; then rechecked.

        At-most-once reports MESSAGE_NOT_SENT; at-least-once sends it (once).
        """
        fake.reset_next()  # the first create's connection drops; nothing stored
        ticket: Ticket = (await outbox.submit(message(1))).unwrap()
        worker = QueueWorker(
            connector,
            queue,
            WorkerSettings(consumer="w1", block=0.02, delivery=delivery, reclaim_every=0.01),
        )
        running = asyncio.create_task(worker.run())
        try:
            await eventually(lambda: _left(worker))
            assert await outbox.result("m1") is None  # not final: left for a later look
            assert (await queue.stats()).pending == 1
            clock.now += 31.0  # the visibility timeout passes: the entry is reclaimed
            assert await outbox.wait(ticket, timeout=5.0) is not None
        finally:
            worker.stop()
            await running
        result = await outbox.result("m1")
        assert result is not None
        if sent_again:
            assert result.value is not None
            assert result.value.data["resent"] is True
            assert len(fake.outbox) == 1
        else:
            assert result.error is not None
            assert result.error.code == TwilioErrorCodes.MESSAGE_NOT_SENT
            assert fake.outbox == []
        assert (await queue.stats()).pending == 0

    async def test_an_unreadable_entry_is_dead_lettered_with_a_coded_result(
        self, connector: TwilioWhatsAppConnector, queue: InMemoryOutboundQueue, outbox: Outbox
    ) -> None:
        await queue.add([("junk", {"v": 99})])

        async def dead() -> bool:
            return (await queue.stats()).dead == 1

        await run_worker(connector, queue, dead)
        result = await outbox.result("junk")
        assert result is not None
        assert result.error is not None
        assert result.error.code == MessagingErrorCodes.MESSAGE_DESERIALIZATION_FAILED
        (letter,) = await queue.dead_letters()
        assert letter.reason.startswith("MESSAGE_DESERIALIZATION_FAILED")

    async def test_an_entry_handed_out_too_often_is_dead_lettered_untried(
        self,
        connector: TwilioWhatsAppConnector,
        fake: FakeTwilio,
        queue: InMemoryOutboundQueue,
        outbox: Outbox,
        clock: ManualMonotonic,
    ) -> None:
        """Workers that died holding it used up its deliveries: set aside as unknown."""
        await outbox.submit(message(1))
        await queue.read("died-1", count=1)
        for n in range(2, 4):
            clock.now += 31.0
            await queue.reclaim(f"died-{n}", count=1)
        clock.now += 31.0

        async def dead() -> bool:
            return (await queue.stats()).dead == 1

        await run_worker(connector, queue, dead, max_deliveries=3)
        assert fake.outbox == []
        result = await outbox.result("m1")
        assert result is not None
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.SEND_OUTCOME_UNKNOWN
        assert result.error.details["deliveries"] == 4


async def _left(worker: QueueWorker) -> bool:
    return worker.report.left >= 1
