"""The queue worker (adapters layer): drains an ``OutboundQueue`` through a connector.

What ``ratatosk worker`` runs, one per process, as many processes as the
send rate needs. Each worker reads entries as a named consumer, at most
``concurrency`` at once, and hands each message to the connector's
``recheck_message``: for a message never seen that is an ordinary send; for
one a dead worker had begun, or one whose outcome stayed unknown, the send
ledger and Twilio's message list decide (replayed, adopted, reported not
sent, or sent again under at-least-once delivery), so a redelivered message
is never sent twice by the queue. The shared rate limiter and ledger come
with the connector (Redis), so every worker together keeps one sender's rate.

What happens to an entry after its send is decided by
``twilio.queue_policy`` (complete, leave for a re-check after the visibility
timeout, dead-letter); this loop only acts. Entries being worked on are kept
from reclaim by a heartbeat (``extend``). On :meth:`QueueWorker.stop`
(SIGTERM, SIGINT) it stops reading, lets the sends in flight finish within
``grace`` seconds, cancels the rest (the ledger records a cancelled create
as unknown) and hands their entries back (``release``) for another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Final

import attrs

from ..domain.message import Message
from ..domain.result import ConnectorError, ConnectorResult, SendResult
from ..ports import OutboundQueue, QueuedSend, StateStoreError
from ..twilio.connector import TwilioWhatsAppConnector
from ..twilio.queue_policy import Action, Decision, decide, on_arrival, unreadable
from ..twilio.send import Delivery
from ..twilio.wire.queued import message_from_data, result_to_data
from .log_budget import LogBudget

log = logging.getLogger("ratatosk.worker")

#: Seconds between two attempts to reach a queue that did not answer.
STORE_BACKOFF: Final = 1.0


@attrs.frozen(kw_only=True)
class WorkerSettings:
    """How one worker drains the queue.

    ``max_deliveries`` times the queue's visibility timeout must outlast the
    send ledger's lease, so a message a dead worker held is looked at again
    (its lease run out) before it is dead-lettered as unknown.
    """

    consumer: str
    concurrency: int = attrs.field(default=16, validator=attrs.validators.ge(1))
    delivery: Delivery = Delivery.AT_MOST_ONCE
    max_deliveries: int = attrs.field(default=30, validator=attrs.validators.ge(1))
    block: float = 1.0  #: seconds one read waits for work
    grace: float = 30.0  #: seconds the sends in flight get to finish on stop
    reclaim_every: float | None = None  #: seconds between reclaims; a quarter of the timeout


@attrs.define
class WorkerReport:
    """What a worker did, counted by what became of each entry it was handed."""

    completed: int = 0  #: a final result stored
    left: int = 0  #: left unacknowledged to be looked at again
    dead_lettered: int = 0
    handed_back: int = 0  #: released on stop, unfinished
    failed_to_record: int = 0  #: the queue did not answer the acknowledgement (redelivered later)

    def count(self, action: Action) -> None:
        if action is Action.COMPLETE:
            self.completed += 1
        elif action is Action.LEAVE:
            self.left += 1
        else:
            self.dead_lettered += 1


class QueueWorker:
    """One consumer draining ``queue`` through an initialised ``connector``."""

    def __init__(
        self,
        connector: TwilioWhatsAppConnector,
        queue: OutboundQueue,
        settings: WorkerSettings,
    ) -> None:
        self._connector = connector
        self._queue = queue
        self._settings = settings
        visibility = queue.visibility_timeout
        self._reclaim_every = settings.reclaim_every or visibility / 4
        self._heartbeat_every = visibility / 3
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._in_flight: dict[asyncio.Task[None], QueuedSend] = {}
        self._settled: set[str] = set()
        self._store_log = LogBudget(5, 60.0)
        self.report = WorkerReport()

    def __repr__(self) -> str:
        s = self._settings
        return (
            f"QueueWorker(consumer={s.consumer!r}, concurrency={s.concurrency}, "
            f"delivery={s.delivery.value!r}, queue={self._queue!r})"
        )

    @property
    def connector(self) -> TwilioWhatsAppConnector:
        return self._connector

    def stop(self) -> None:
        """Stop reading and finish what is in flight; a second call cuts the grace short."""
        if self._stopping.is_set():
            self._hurry.set()
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> WorkerReport:
        """Drain until :meth:`stop`; then finish or hand back what is in flight."""
        heartbeat = asyncio.create_task(self._heartbeat(), name="ratatosk-worker-heartbeat")
        try:
            await self._drain()
        finally:
            try:
                await self._finish_in_flight()
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
        return self.report

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        next_reclaim = 0.0
        s = self._settings
        while not self._stopping.is_set():
            free = s.concurrency - len(self._in_flight)
            if free <= 0:
                await self._until_a_slot_frees()
                continue
            try:
                entries: list[QueuedSend] = []
                if loop.time() >= next_reclaim:
                    entries = list(await self._queue.reclaim(s.consumer, count=free))
                    if len(entries) < free:
                        next_reclaim = loop.time() + self._reclaim_every
                if not entries:
                    entries = list(await self._queue.read(s.consumer, count=free, block=s.block))
            except StateStoreError as exc:
                self._store_trouble("read", exc)
                await self._pause(STORE_BACKOFF)
                continue
            if self._stopping.is_set() and entries:
                await self._hand_back(entries)
                return
            for entry in entries:
                task = asyncio.create_task(self._handle(entry), name=f"send-{entry.message_id}")
                self._in_flight[task] = entry
                task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)

    async def _until_a_slot_frees(self) -> None:
        stop = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({stop, *self._in_flight}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _handle(self, entry: QueuedSend) -> None:
        s = self._settings
        decision = on_arrival(entry.message_id, entry.deliveries, s.max_deliveries)
        if decision is None:
            message = message_from_data(entry.payload)
            if isinstance(message, ConnectorError):
                decision = unreadable(message, entry.deliveries)
            else:
                result = await self._send(entry, message)
                if result is None:  # an unexpected error, logged: let a later delivery try
                    self.report.count(Action.LEAVE)
                    return
                decision = decide(result, entry.deliveries, s.max_deliveries)
        await self._act(entry, decision)

    async def _send(
        self, entry: QueuedSend, message: Message
    ) -> ConnectorResult[SendResult] | None:
        try:
            return await self._connector.recheck_message(message, delivery=self._settings.delivery)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "sending queued message %s (delivery %d) raised; it stays in the queue",
                entry.message_id,
                entry.deliveries,
            )
            return None

    async def _act(self, entry: QueuedSend, decision: Decision) -> None:
        try:
            if decision.action is Action.COMPLETE:
                assert decision.result is not None
                first = await self._queue.complete(
                    entry, result_to_data(entry.message_id, decision.result)
                )
                if not first:
                    log.info("message %s already had a final result", entry.message_id)
            elif decision.action is Action.DEAD_LETTER:
                assert decision.result is not None
                await self._queue.dead_letter(
                    entry, decision.reason, result_to_data(entry.message_id, decision.result)
                )
                log.warning("message %s dead-lettered: %s", entry.message_id, decision.reason)
            else:
                log.info("message %s left for a re-check: %s", entry.message_id, decision.reason)
        except StateStoreError as exc:
            # Unacknowledged, the entry comes back; the ledger then replays this outcome.
            self.report.failed_to_record += 1
            self._store_trouble(f"record the result of {entry.message_id}", exc)
            return
        self._settled.add(entry.entry_id)
        self.report.count(decision.action)

    async def _heartbeat(self) -> None:
        """Keep the entries being worked on from being reclaimed by another consumer."""
        while True:
            await asyncio.sleep(self._heartbeat_every)
            held = [e.entry_id for e in self._in_flight.values()]
            if not held:
                continue
            try:
                await self._queue.extend(self._settings.consumer, held)
            except StateStoreError as exc:
                self._store_trouble("keep its entries", exc)

    async def _finish_in_flight(self) -> None:
        """Let sends in flight finish within the grace; cancel and hand back the rest."""
        tasks = set(self._in_flight)
        if tasks:
            hurry = asyncio.create_task(self._hurry.wait())
            deadline = time.monotonic() + self._settings.grace
            try:
                while tasks and not self._hurry.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    done, _ = await asyncio.wait(
                        {*tasks, hurry}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                    )
                    tasks -= done
            finally:
                hurry.cancel()
        unfinished = [self._in_flight[t] for t in tasks if t in self._in_flight]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._hand_back([e for e in unfinished if e.entry_id not in self._settled])

    async def _hand_back(self, entries: list[QueuedSend]) -> None:
        if not entries:
            return
        try:
            await self._queue.release(self._settings.consumer, [e.entry_id for e in entries])
        except StateStoreError as exc:  # they come back after the visibility timeout anyway
            self._store_trouble("hand back its entries", exc)
        self.report.handed_back += len(entries)
        log.info("handed back %d unfinished entries", len(entries))

    def _store_trouble(self, what: str, exc: StateStoreError) -> None:
        notes = self._store_log.admit()
        if notes is not None:
            log.warning(
                "the queue could not %s: %s%s", what, exc, "".join("; " + note for note in notes)
            )


__all__ = ["QueueWorker", "WorkerReport", "WorkerSettings"]
