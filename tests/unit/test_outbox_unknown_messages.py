"""A ticket the queue no longer knows ends its wait with a coded outcome; a live one is waited for.

The queue keeps a message's final result for a while (24 h by default), and
the entry only until it is finished. A ticket whose result has expired, or
that names an entry of another queue (another Redis, a flushed one), used to
look exactly like a message still queued: ``Outbox.wait`` polled it forever.
These cases run on the in-memory queue with a manual clock (the result TTL
is a step, not a wait); the ``timeout`` given to ``wait`` only bounds a
regression, it is never what a passing case measures.
"""

from __future__ import annotations

import pytest

from port_subjects import ManualMonotonic
from ratatosk.adapters.memory.outbound_queue import InMemoryOutboundQueue
from ratatosk.domain.message import Message, MessageBuilder
from ratatosk.domain.result import ConnectorResult, SendResult
from ratatosk.domain.settings import ConnectionSettings
from ratatosk.twilio.errors import TwilioErrorCodes, error
from ratatosk.twilio.outbox import Outbox, Ticket
from ratatosk.twilio.wire.queued import result_to_data

TTL = 600.0
#: Bounds a wait that would otherwise never end (the bug); a passing case answers at once.
GUARD = 2.0


def settings() -> ConnectionSettings:
    return (
        ConnectionSettings()
        .set_parameter("AccountSid", "AC" + "2" * 32)
        .set_parameter("AuthToken", "tok-SECRET-unknown-0123")
        .set_parameter("FromNumber", "whatsapp:+14155238886")
    )


def message(n: int) -> Message:
    return (
        MessageBuilder().with_id(f"m{n}").to_phone("whatsapp:+15550003333").with_text("hi").build()
    )


@pytest.fixture
def clock() -> ManualMonotonic:
    return ManualMonotonic()


@pytest.fixture
def queue(clock: ManualMonotonic) -> InMemoryOutboundQueue:
    return InMemoryOutboundQueue(clock, visibility_timeout=30.0, result_ttl=TTL)


@pytest.fixture
def outbox(queue: InMemoryOutboundQueue) -> Outbox:
    return Outbox.from_settings(queue, settings())


def _unknown(found: ConnectorResult[SendResult] | None, ticket: Ticket) -> None:
    assert found is not None, "waited as if the message were still queued"
    assert found.error is not None
    assert found.error.code == TwilioErrorCodes.QUEUED_MESSAGE_UNKNOWN
    assert found.error.details["message_id"] == ticket.message_id
    assert found.error.details["entry_id"] == ticket.entry_id
    assert "Twilio" in found.error.message  # says where to look before sending it again


async def _finish(
    queue: InMemoryOutboundQueue, *, dead: bool = False
) -> ConnectorResult[SendResult]:
    """What a worker does: take the entry, store its final result, acknowledge it."""
    (entry,) = await queue.read("w1", count=1)
    final: ConnectorResult[SendResult] = ConnectorResult.failure(
        error(TwilioErrorCodes.INVALID_SENDER, "refused by Twilio", message_id=entry.message_id)
    )
    stored = result_to_data(entry.message_id, final)
    if dead:
        await queue.dead_letter(entry, "handed out too often", stored)
    else:
        await queue.complete(entry, stored)
    return final


class TestUnknownToTheQueue:
    async def test_a_result_past_its_ttl_ends_the_wait_with_queued_message_unknown(
        self, outbox: Outbox, queue: InMemoryOutboundQueue, clock: ManualMonotonic
    ) -> None:
        ticket = (await outbox.submit(message(1))).unwrap()
        await _finish(queue)
        await clock.advance(TTL + 1)
        _unknown(await outbox.result(ticket), ticket)
        _unknown(await outbox.wait(ticket, timeout=GUARD), ticket)

    async def test_a_ticket_of_another_queue_ends_the_wait(self, outbox: Outbox) -> None:
        """A results file carried to another Redis, or a queue emptied since: nothing known."""
        ticket = Ticket("m9", "41-0")
        _unknown(await outbox.wait(ticket, timeout=GUARD), ticket)
        [found] = await outbox.wait_all([ticket], timeout=GUARD)
        _unknown(found, ticket)


class TestStillInTheQueue:
    async def test_a_waiting_or_pending_message_is_waited_for(
        self, outbox: Outbox, queue: InMemoryOutboundQueue, clock: ManualMonotonic
    ) -> None:
        """Not yet read, or read by a worker and not finished (even past the TTL): no result yet."""
        waiting = (await outbox.submit(message(1))).unwrap()
        assert await outbox.result(waiting) is None
        await queue.read("w1", count=1)  # now pending: a worker sends it
        await clock.advance(TTL + 1)  # a send left for a re-check may outlive the TTL
        assert await outbox.result(waiting) is None
        assert await outbox.wait(waiting, timeout=0.05) is None

    async def test_a_finished_message_gives_its_result(
        self, outbox: Outbox, queue: InMemoryOutboundQueue
    ) -> None:
        ticket = (await outbox.submit(message(1))).unwrap()
        sent = await _finish(queue)
        assert await outbox.wait(ticket, timeout=GUARD) == sent

    async def test_a_dead_lettered_message_ends_the_wait_with_its_outcome(
        self, outbox: Outbox, queue: InMemoryOutboundQueue
    ) -> None:
        ticket = (await outbox.submit(message(1))).unwrap()
        sent = await _finish(queue, dead=True)
        assert await outbox.wait(ticket, timeout=GUARD) == sent
