"""Sending ports: per-sender pacing, and the ledger of sends by message id and lane."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import attrs


@runtime_checkable
class RateLimiter(Protocol):
    """Books the next request slot for a sender, shared by everyone who sends as it.

    Twilio counts every request, retries included, against the sender's
    throughput; several processes sending as one number must share the count,
    so this is a port (in memory by default, a shared store when scaled out).
    """

    async def reserve(self, key: str) -> float:
        """Book one request for ``key``; the seconds to wait before making it (0: now)."""
        ...


#: Seconds a ``SendLedger.begin`` holds an id unless told otherwise: far beyond the
#: default policy's longest send (a 60 s deadline, a 15 s reconcile wait, two list calls).
DEFAULT_SEND_LEASE = 600.0


class LedgerState(enum.Enum):
    """What the ledger knows about a message id when a send begins."""

    NEW = "new"  #: never seen: this call sends it
    IN_FLIGHT = "in_flight"  #: another call is sending it right now (its lease runs)
    DONE = "done"  #: sent (or left unknown) before: answer with that outcome
    CONFLICT = "conflict"  #: seen before with different content
    #: another call held it and its lease ran out (its process died mid-send): this call
    #: holds it now, and Twilio may have the message. One caller gets it, never two.
    ABANDONED = "abandoned"
    #: ``begin(reopen=True)`` found an outcome finished as unsettled: this call holds the
    #: id again to look once more (``outcome`` is the unsettled one). One caller gets it.
    REOPENED = "reopened"


@attrs.frozen(kw_only=True)
class LedgerEntry:
    """The ledger's answer to ``begin``: the state and, when done, the stored outcome.

    ``outcome`` is plain JSON-able data (the connector writes and reads it),
    so a shared store can keep it as text. ``first_attempt`` is the ``at``
    of the ``begin`` that first took the id (kept through takeovers and
    outcomes), so a later look at Twilio knows from when to search; None
    when that ``begin`` gave no time.
    """

    state: LedgerState
    outcome: Mapping[str, object] | None = None
    first_attempt: dt.datetime | None = None


@attrs.frozen
class LaneMember:
    """A send in a lane: what its message looks like (``key``), and whether it is looking."""

    key: str
    reconciling: bool = False


@runtime_checkable
class SendLedger(Protocol):
    """Sends by message id, and which Twilio SIDs are already somebody's.

    Two jobs that several processes must share:

    * **idempotency**: sending one ``Message.id`` twice sends once; the second
      call gets the first call's outcome (``begin`` / ``finish``);
    * **reconciliation**: after a lost answer the connector may adopt a
      message it finds at Twilio only if no other send could have created it.
      Sends are grouped in *lanes* (recipient and sender); the ledger knows
      which sends of a lane are still waiting for Twilio's answer, and which
      SIDs are already claimed, so two sends never report one SID.

    A ``begin`` that takes an id holds it for a *lease* (the adapter's
    ``lease``, longer than any send can take): a process that dies mid-send
    leaves its id held only until the lease runs out, then the next ``begin``
    takes it over as ABANDONED, atomically, so only one caller does.
    """

    async def begin(
        self,
        message_id: str,
        fingerprint: str,
        *,
        at: dt.datetime | None = None,
        reopen: bool = False,
    ) -> LedgerEntry:
        """Take ``message_id`` to send it, or say why not.

        NEW (never seen) and ABANDONED (the holder's lease ran out) mean this
        call holds the id now, for a lease; IN_FLIGHT, DONE and CONFLICT that
        it does not. ``at`` (the caller's time of day) is kept as the entry's
        ``first_attempt`` when the id is new. ``reopen=True`` takes an outcome
        finished with ``settled=False`` back as REOPENED instead of answering
        DONE; a settled outcome is DONE either way.
        """
        ...

    async def finish(
        self, message_id: str, outcome: Mapping[str, object] | None, *, settled: bool = True
    ) -> None:
        """Store the outcome of a send and release the hold; None forgets the id.

        None: nothing was sent, a later send of the id may go. ``settled=False``:
        the outcome is not the last word (Twilio may or may not have the
        message), so ``begin(reopen=True)`` may take it back to look again.
        """
        ...

    async def lane_enter(self, lane: str, send: str, key: str) -> None:
        """``send`` is about to ask Twilio to create a message in ``lane``.

        ``key`` says what its message looks like to a reconcile (see
        ``twilio.send.stage.match_key``); a send re-entering clears ``reconciling``.
        """
        ...

    async def lane_reconciling(self, lane: str, send: str) -> None:
        """``send`` lost its answer and is looking for its message (Twilio will not answer)."""
        ...

    async def lane_leave(self, lane: str, send: str, *, settled: bool = True) -> None:
        """``send`` is done with Twilio.

        ``settled=False``: its outcome stayed unknown, so Twilio may hold a
        message of it that nobody claimed. It then stays in the lane as
        looking for a while (a few minutes: longer than any send in flight
        at that moment), so no other reconcile adopts that message.
        """
        ...

    async def lane_others(self, lane: str, send: str) -> Mapping[str, LaneMember]:
        """The other sends now in ``lane``, by send."""
        ...

    async def claim_sid(self, sid: str, send: str, *, adopted: bool) -> str | None:
        """Record ``sid`` as ``send``'s; returns the send that held it already, if any.

        ``adopted=True`` (a reconcile) claims only an unclaimed SID: a
        non-None answer means it was taken and the reconcile must not use it.
        ``adopted=False`` (Twilio answered ``send`` with ``sid``) always
        records; a non-None answer means an earlier reconcile adopted it
        wrongly, which the connector logs as an error.
        """
        ...

    async def claimed(self, sids: Sequence[str]) -> frozenset[str]:
        """Which of ``sids`` already belong to some send."""
        ...
