"""A send whose outcome stayed unknown, or whose process died, looked at again.

Two things leave a message id without a final outcome: a send whose answer
was lost and whose reconcile could not find the message (Twilio's list had
not caught up: ``SEND_OUTCOME_UNKNOWN``, kept *unsettled* in the ledger), and
a send whose process died while it held the id (its lease ran out: the
ledger answers ABANDONED to the next ``begin``, atomically, to one caller).
The caller that now holds the id looks at Twilio again, by the reconcile's
rules (``reconcile.Finder``: the match key, a lane's rivals, never a SID
another send claimed, the adoption itself a claim), among the recipient's
messages since the *first* attempt, and then:

* found: the send succeeded (``rechecked`` and ``reconciled`` in its data);
* absent (the list was read, nothing matched, no rival could own it): what
  the :class:`Delivery` policy says: at-most-once reports ``MESSAGE_NOT_SENT``
  for good; at-least-once sends it again through the whole pipeline,
  accepting that a message Twilio stored but did not yet list is duplicated;
  ``send_message`` (no policy) keeps it unknown;
* cannot tell (the list unreadable, a rival's message could be ours, the
  ledger failed): ``SEND_OUTCOME_UNKNOWN``, still unsettled, to look later.

Decided here, recorded by the pipeline (``records.record_of``, except that
an undecided recheck keeps the id unsettled whatever the failure says).
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import attrs

from ...domain.result import ConnectorError, ConnectorResult, SendResult
from ...ports import (
    DEFAULT_SEND_LEASE,
    Clock,
    CreateMessageRequest,
    LedgerEntry,
    SendLedger,
    SendObservation,
    StateStoreError,
)
from ..errors import TwilioErrorCodes, error
from ..resilience import SendPolicy
from .reconcile import MAX_WAIT_SECONDS, Finder, Looked
from .records import kept_error, record_of
from .stage import SendTrace, lane_of, match_key, notify, sender_of, sent_result

log = logging.getLogger("ratatosk.twilio")

#: How far back a recheck looks when the ledger does not know the first attempt.
UNKNOWN_START_LOOKBACK: Final = dt.timedelta(days=1)


def lease_for(policy: SendPolicy) -> float:
    """How long a send ledger should hold an id for sends under ``policy``.

    Four times the longest a send can take (its retry deadline and a
    reconcile's wait; the reconcile's two list calls fit in the margin), and
    never less than ``DEFAULT_SEND_LEASE``: a live holder must never lose
    its id, and a dead one blocks it only that long.
    """
    return max(DEFAULT_SEND_LEASE, 4 * (policy.retry.deadline + MAX_WAIT_SECONDS))


class Delivery(enum.Enum):
    """What a recheck does with a message Twilio does not have.

    ``AT_MOST_ONCE``: report it as not sent (``MESSAGE_NOT_SENT``), for good:
    a message is never sent twice, and may never be sent at all.
    ``AT_LEAST_ONCE``: send it again: every message is sent, and a message
    Twilio had stored but not yet listed is sent twice.
    """

    AT_MOST_ONCE = "at-most-once"
    AT_LEAST_ONCE = "at-least-once"


@attrs.frozen
class Settled:
    """A held id's result, and what the ledger keeps for it (None forgets the id)."""

    result: ConnectorResult[SendResult]
    outcome: Mapping[str, object] | None
    settled: bool


Resend = Callable[[], Awaitable[ConnectorResult[SendResult]]]


class Recheck:
    """Looks again for the message of an id this call holds (ABANDONED or REOPENED)."""

    def __init__(self, finder: Finder, ledger: SendLedger, clock: Clock, deadline: float) -> None:
        self._finder = finder
        self._ledger = ledger
        self._clock = clock
        self._deadline = deadline

    async def settle(
        self,
        message_id: str,
        request: CreateMessageRequest,
        entry: LedgerEntry,
        delivery: Delivery | None,
        *,
        resend: Resend,
        observation: SendObservation | None = None,
    ) -> Settled:
        """Found, resent, not sent, or still unknown; ``resend`` is the pipeline's create."""
        since = entry.first_attempt or (self._clock.now() - UNKNOWN_START_LOOKBACK)
        trace = SendTrace(
            send=message_id,
            lane=lane_of(request),
            key=match_key(request),
            started=since,
            deadline=self._clock.monotonic() + self._deadline,
            observation=observation,
        )
        try:
            looked = await self._look(request, trace)
        except StateStoreError as exc:
            return self.undecided(message_id, entry, f"the send ledger failed: {exc}")
        if observation is not None:
            sid = looked.found.sid if looked.found is not None else None
            notify(observation.reconciled, sid, f"recheck: {looked.why}")
        if looked.found is not None:
            trace.reconciled = True
            log.info("message %s rechecked: Twilio has %s", message_id, looked.found.sid)
            sent = sent_result(message_id, looked.found, trace, self._clock.now)
            sent = attrs.evolve(sent, data={**sent.data, "rechecked": True})
            return _recorded(ConnectorResult.success(sent))
        if not looked.absent or delivery is None:
            return self.undecided(message_id, entry, looked.why)
        if delivery is Delivery.AT_MOST_ONCE:
            return _recorded(ConnectorResult.failure(_not_sent(message_id, request, since)))
        log.info("message %s rechecked: not at Twilio, sending it again", message_id)
        return _recorded(_marked_resent(await resend()))

    def undecided(self, message_id: str, entry: LedgerEntry, why: str) -> Settled:
        """Still unknown: the id stays unsettled (its earlier outcome, if any), for a later look."""
        unknown = error(
            TwilioErrorCodes.SEND_OUTCOME_UNKNOWN,
            f"message {message_id!r} was looked at again and it is still not known whether "
            f"Twilio has it ({why}); it was not resent",
            message_id=message_id,
            rechecked=True,
            first_attempt=_iso(entry.first_attempt),
        )
        kept = entry.outcome if entry.outcome is not None else {"error": unknown.to_dict()}
        if entry.outcome is not None and "error" in entry.outcome:
            cause = kept_error(entry.outcome)
            unknown = unknown.with_details(first_outcome=cause.code)
        return Settled(ConnectorResult.failure(unknown), kept, False)

    async def _look(self, request: CreateMessageRequest, trace: SendTrace) -> Looked:
        """The finder's look, with this send in its lane as looking while it looks."""
        await self._ledger.lane_enter(trace.lane, trace.send, trace.key)
        await self._ledger.lane_reconciling(trace.lane, trace.send)
        looked: Looked | None = None
        try:
            looked = await self._finder.look(request, trace, own_claims=True)
        finally:
            # Not found: Twilio may still list it later, so it stays guarded as looking.
            settled = looked is not None and looked.found is not None
            await self._ledger.lane_leave(trace.lane, trace.send, settled=settled)
        assert looked is not None
        return looked


def _recorded(result: ConnectorResult[SendResult]) -> Settled:
    outcome, settled = record_of(result)
    return Settled(result, outcome, settled)


def _marked_resent(result: ConnectorResult[SendResult]) -> ConnectorResult[SendResult]:
    if result.value is not None:
        data = {**result.value.data, "rechecked": True, "resent": True}
        return ConnectorResult.success(attrs.evolve(result.value, data=data))
    assert result.error is not None
    return ConnectorResult.failure(result.error.with_details(rechecked=True, resent=True))


def _not_sent(message_id: str, request: CreateMessageRequest, since: dt.datetime) -> ConnectorError:
    return error(
        TwilioErrorCodes.MESSAGE_NOT_SENT,
        f"Twilio has no message for {message_id!r} since its first attempt "
        f"({since.isoformat()}); under at-most-once delivery it is reported as not sent and "
        "is never sent under this id",
        message_id=message_id,
        to=request.to,
        sender=sender_of(request),
        first_attempt=since.isoformat(),
        rechecked=True,
        delivery=Delivery.AT_MOST_ONCE.value,
    )


def _iso(when: dt.datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


__all__ = ["Delivery", "Recheck", "Settled", "lease_for"]
