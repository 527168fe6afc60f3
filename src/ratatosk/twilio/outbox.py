"""Submitting messages to the outbound queue, and reading their results (connector layer).

The sending side of ``ratatosk worker``: an application process submits, a
fleet of workers sends. A submitted message is checked first by the very
planning the connector runs before it sends (``outbound.plan_send``: content,
numbers, sender, properties, limits), so a message the connector would
refuse without asking Twilio is refused here and never enters the queue; a
queued one gets a :class:`Ticket`. Its final result (the ``SendResult`` or the
coded error) is stored by the worker and read back by message id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from ..domain.message import Message
from ..domain.result import ConnectorError, ConnectorResult, SendResult
from ..domain.schema import ChannelSchema
from ..domain.settings import ConnectionSettings
from ..ports import OutboundQueue, StateStoreError
from .errors import TwilioErrorCodes, error
from .outbound import SendConfig, plan_send
from .schema import TwilioChannelSchemas
from .wire.queued import message_to_data, result_from_data

#: Seconds between two looks for a result while waiting, at first and at most.
FIRST_POLL: Final = 0.05
MAX_POLL: Final = 1.0


@attrs.frozen
class Ticket:
    """A message accepted into the queue: its id (the key of its result) and its entry."""

    message_id: str
    entry_id: str


class Outbox:
    """Submit messages to an :class:`~ratatosk.ports.OutboundQueue`; read their results.

    ``schema`` and ``config`` must be those of the workers' connector (the
    same settings), so a message accepted here is planned the same way there.
    """

    def __init__(self, queue: OutboundQueue, schema: ChannelSchema, config: SendConfig) -> None:
        self._queue = queue
        self._schema = schema
        self._config = config

    @classmethod
    def from_settings(
        cls,
        queue: OutboundQueue,
        settings: ConnectionSettings,
        schema: ChannelSchema = TwilioChannelSchemas.TWILIO_WHATSAPP,
    ) -> Outbox:
        return cls(queue, schema, SendConfig.from_settings(settings))

    def __repr__(self) -> str:
        return f"Outbox({self._queue!r})"

    @property
    def queue(self) -> OutboundQueue:
        return self._queue

    async def submit(self, message: Message) -> ConnectorResult[Ticket]:
        """Queue one message; its ticket, or why it was not queued.

        Codes: every code ``plan_send`` gives (INVALID_MESSAGE, INVALID_RECIPIENT,
        MISSING_FROM_NUMBER ...), MESSAGE_SERIALIZATION_FAILED (a property
        value with no JSON form), STATE_STORE_UNAVAILABLE (the queue could not
        be asked: nothing was queued).
        """
        (ticket,) = await self.submit_many([message])
        return ticket

    async def submit_many(self, messages: Iterable[Message]) -> list[ConnectorResult[Ticket]]:
        """Queue many at once (one round trip, all or none); one result per message, in order.

        A refused message is refused alone; the others are queued.
        """
        results: list[ConnectorResult[Ticket] | None] = []
        accepted: list[tuple[int, str, Mapping[str, object]]] = []
        for message in messages:
            refused = self._refusal(message)
            if isinstance(refused, ConnectorError):
                results.append(ConnectorResult.failure(refused))
                continue
            accepted.append((len(results), message.id, refused))
            results.append(None)
        if accepted:
            try:
                entry_ids = await self._queue.add([(mid, data) for _, mid, data in accepted])
            except StateStoreError as exc:
                for index, message_id, _ in accepted:
                    results[index] = ConnectorResult.failure(_not_queued(message_id, exc))
            else:
                for (index, message_id, _), entry_id in zip(accepted, entry_ids, strict=True):
                    results[index] = ConnectorResult.success(Ticket(message_id, entry_id))
        return [r for r in results if r is not None]

    def _refusal(self, message: Message) -> ConnectorError | dict[str, Any]:
        """Why ``message`` may not be queued, or its queued form."""
        if not isinstance(message, Message):
            raise TypeError(f"submit takes a Message, not {type(message).__name__}")
        plan = plan_send(self._schema, self._config, message)
        if isinstance(plan, ConnectorError):
            return plan.with_details(message_id=message.id)
        return message_to_data(message)

    async def result(self, ticket: Ticket | str) -> ConnectorResult[SendResult] | None:
        """The message's final result; None while it has none yet.

        Given a :class:`Ticket`, a message the queue no longer knows (neither
        its entry nor a result: the result outlived the queue's TTL, or the
        queue is not the one the ticket came from) fails with
        QUEUED_MESSAGE_UNKNOWN instead of looking forever unfinished. Given
        only a message id, that case cannot be told from "still queued"
        (None). A result that cannot be read back fails with
        MESSAGE_DESERIALIZATION_FAILED; a queue that cannot be asked raises
        ``StateStoreError``.
        """
        if isinstance(ticket, Ticket):
            (found,) = await self.results([ticket])
            return found
        stored = await self._queue.result(ticket)
        return None if stored is None else result_from_data(stored)

    async def results(self, tickets: Sequence[Ticket]) -> list[ConnectorResult[SendResult] | None]:
        """:meth:`result` for each ticket, in order: one lookup each, then one look at the queue.

        A ticket with no result is looked for in the queue; one it no longer
        holds is asked for its result once more before it is called unknown,
        since a worker stores the result and drops the entry in one step and
        may have done so between the two looks.
        """
        found = list(await asyncio.gather(*(self._stored(t.message_id) for t in tickets)))
        missing = [i for i, f in enumerate(found) if f is None]
        if not missing:
            return found
        held = await self._queue.holds([tickets[i].entry_id for i in missing])
        gone = [i for i, h in zip(missing, held, strict=True) if not h]
        again = await asyncio.gather(*(self._stored(tickets[i].message_id) for i in gone))
        for i, late in zip(gone, again, strict=True):
            found[i] = late if late is not None else ConnectorResult.failure(_unknown(tickets[i]))
        return found

    async def _stored(self, message_id: str) -> ConnectorResult[SendResult] | None:
        stored = await self._queue.result(message_id)
        return None if stored is None else result_from_data(stored)

    async def wait(
        self, ticket: Ticket | str, *, timeout: float | None = None
    ) -> ConnectorResult[SendResult] | None:
        """The final result once there is one; None if ``timeout`` seconds pass first.

        Polls the result store, from every 50 ms up to once a second, so a
        waiter costs the store little however long the queue is. With a
        :class:`Ticket` the wait also ends when the queue no longer knows the
        message (QUEUED_MESSAGE_UNKNOWN, see :meth:`result`); with a bare
        message id only the result or the timeout ends it.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        pause = FIRST_POLL
        while True:
            found = await self.result(ticket)
            if found is not None:
                return found
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    return None
                pause = min(pause, left)
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_POLL)

    async def wait_all(
        self, tickets: Sequence[Ticket | str], *, timeout: float | None = None
    ) -> list[ConnectorResult[SendResult] | None]:
        """:meth:`wait` for each, concurrently; results in the tickets' order."""
        return list(await asyncio.gather(*(self.wait(t, timeout=timeout) for t in tickets)))


def _unknown(ticket: Ticket) -> ConnectorError:
    return error(
        TwilioErrorCodes.QUEUED_MESSAGE_UNKNOWN,
        f"the send queue no longer knows message {ticket.message_id!r} (entry "
        f"{ticket.entry_id}): it holds neither the entry nor a result, so the result outlived "
        "the queue's TTL (24 h by default) or this is not the queue (Redis, queue name) it was "
        "submitted to; a worker may have sent it: look for it at Twilio (the console's message "
        "log, by recipient and time) before sending it again",
        message_id=ticket.message_id,
        entry_id=ticket.entry_id,
    )


def _not_queued(message_id: str, exc: StateStoreError) -> ConnectorError:
    return error(
        TwilioErrorCodes.STATE_STORE_UNAVAILABLE,
        f"the outbound queue could not be asked; message {message_id!r} was not queued; "
        f"submit it again later ({exc})",
        message_id=message_id,
    )


__all__ = ["Outbox", "Ticket"]
