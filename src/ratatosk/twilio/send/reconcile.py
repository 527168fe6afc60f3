"""After a lost or ambiguous answer: find out whether Twilio created the message.

Twilio's Create Message has no idempotency key, so after an answer that may
hide a created message the only safe move is to look, never to resend
(adr/0005). Looking has its own trap: the recipient's recent messages may
hold another send's message that looks just like ours. So a message is
adopted only when nothing else could have created it (adr/0016):

* while another send whose message could pass for ours (same recipient and
  sender, same media count, same body unless one is a template) is still
  waiting for Twilio's answer, wait for it: once answered, its SID is
  claimed and can no longer be mistaken for ours;
* if such a send is itself looking, the candidates cannot be told apart:
  refuse to guess (the outcome stays unknown);
* a SID already claimed by any send is never adopted, and adoption is itself
  a claim, so two sends can never report one SID.

The lane bookkeeping lives in the ``SendLedger`` port, so it holds across
processes when the ledger is shared.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Final

import attrs

from ...ports import (
    ApiError,
    Clock,
    CreateMessageRequest,
    LaneMember,
    MessageQuery,
    MessageResource,
    MessagingApi,
    SendLedger,
    StateStoreError,
    TransportError,
)
from ..resilience import AMBIGUOUS_STATUSES, sent_matches
from .stage import CreateStage, OutcomeUnknown, SendTrace, confusable, describe, notify

log = logging.getLogger("ratatosk.twilio")

#: The recipient's newest messages a reconcile reads: a busy recipient still fits in one page.
PAGE_SIZE: Final = 200
#: How often a reconcile looks again at the lane while another send awaits its answer.
POLL_SECONDS: Final = 0.05
#: How long at most a reconcile waits for the other sends of its lane to be answered.
MAX_WAIT_SECONDS: Final = 15.0


@attrs.frozen
class Looked:
    """What a look at the recipient's messages saw.

    ``found``: the message, now claimed by the send. ``absent``: the list
    was read and nothing unclaimed matched, with no rival to wait for: the
    only answer on which a recheck may act (see ``recheck``); every other
    miss means the look could not tell (``why`` says why).
    """

    found: MessageResource | None
    why: str
    absent: bool = False


class Finder:
    """Looks for the message a send may have created, by the rules above (adr/0016)."""

    def __init__(self, api: MessagingApi, ledger: SendLedger, clock: Clock) -> None:
        self._api = api
        self._ledger = ledger
        self._clock = clock

    async def look(
        self, request: CreateMessageRequest, trace: SendTrace, *, own_claims: bool = False
    ) -> Looked:
        """Found (and claimed), absent, or cannot tell.

        ``own_claims``: a SID the ledger already gives to this very send is
        its message (Twilio answered it before the send's process stopped);
        without it, any claimed SID is skipped, as a reconcile mid-send must.
        """
        give_up = min(trace.deadline, self._clock.monotonic() + MAX_WAIT_SECONDS)
        while True:
            if await self._rivals_waiting(trace):
                if self._clock.monotonic() >= give_up:
                    return Looked(None, "another send to the same recipient was never answered")
                await self._clock.sleep(POLL_SECONDS)
                continue
            listed = await self._candidates(request, trace, own_claims)
            if isinstance(listed, MessageResource):
                return Looked(listed, "found: claimed by this send already")
            if listed is None:
                return Looked(None, "Twilio's message list could not be read")
            # Read the lane again: a rival that entered while we listed may own a candidate.
            if await self._rivals_waiting(trace):
                continue
            if not listed:
                return Looked(None, "not found among the recipient's recent messages", absent=True)
            if await self._rivals_looking(trace):
                return Looked(None, "another lost send to the same recipient could have created it")
            for found in listed:
                if await self._ledger.claim_sid(found.sid, trace.send, adopted=True) is None:
                    return Looked(found, "found")
            # Every candidate was claimed meanwhile by a send that got its answer: look again.

    async def _rivals(self, trace: SendTrace) -> list[LaneMember]:
        others = await self._ledger.lane_others(trace.lane, trace.send)
        return [m for m in others.values() if confusable(trace.key, m.key)]

    async def _rivals_waiting(self, trace: SendTrace) -> bool:
        return any(not m.reconciling for m in await self._rivals(trace))

    async def _rivals_looking(self, trace: SendTrace) -> bool:
        return any(m.reconciling for m in await self._rivals(trace))

    async def _candidates(
        self, request: CreateMessageRequest, trace: SendTrace, own_claims: bool
    ) -> list[MessageResource] | MessageResource | None:
        """Unclaimed matches, oldest first; this send's own claimed match; None: unreadable."""
        query = MessageQuery(
            to=request.to,
            from_=request.from_,
            date_sent_after=(trace.started - dt.timedelta(days=1)).date(),
            page_size=PAGE_SIZE,
        )
        for _ in range(2):
            try:
                page = await self._api.list_messages(query)
            except TransportError:
                continue
            if isinstance(page, ApiError):
                return None
            matches = sent_matches(request, page.messages, not_before=trace.started)
            claimed = await self._ledger.claimed([m.sid for m in matches])
            if own_claims:
                for mine in (m for m in matches if m.sid in claimed):
                    if await self._ledger.claim_sid(mine.sid, trace.send, adopted=True) is None:
                        return mine
            return [m for m in matches if m.sid not in claimed]
        return None


class Reconcile:
    """Turns an ambiguous failure into the created message, a safe retry, or an unknown outcome.

    * a lost answer or a 500/502/504: look; found -> the message, else
      :class:`OutcomeUnknown` (never resent);
    * a 503 (normally safe to retry, but Twilio's 5xx are ambiguous): look
      first; found -> the message, else the 503 goes on to the retry stage.
    """

    def __init__(
        self, inner: CreateStage, api: MessagingApi, ledger: SendLedger, clock: Clock
    ) -> None:
        self._inner = inner
        self._ledger = ledger
        self._finder = Finder(api, ledger, clock)

    async def create(
        self, request: CreateMessageRequest, trace: SendTrace
    ) -> MessageResource | ApiError:
        try:
            answer = await self._inner.create(request, trace)
        except OutcomeUnknown:
            raise
        except TransportError as exc:
            if not exc.maybe_delivered:
                raise
            return await self._settle(request, trace, exc)
        if isinstance(answer, ApiError) and answer.status >= 500:
            return await self._settle(request, trace, answer)
        return answer

    async def _settle(
        self, request: CreateMessageRequest, trace: SendTrace, failure: ApiError | TransportError
    ) -> MessageResource | ApiError:
        try:
            await self._ledger.lane_reconciling(trace.lane, trace.send)
            try:
                looked = await self._finder.look(request, trace)
            finally:
                # Back among the senders of the lane: a retry may follow (after a 503).
                await self._ledger.lane_enter(trace.lane, trace.send, trace.key)
        except StateStoreError as exc:  # Twilio may have it; without the ledger, never adopt
            if trace.observation is not None:
                notify(trace.observation.reconciled, None, f"the send ledger failed: {exc}")
            raise OutcomeUnknown(failure, f"{describe(failure)}; {exc}") from exc
        found, why = looked.found, looked.why
        if trace.observation is not None:
            notify(trace.observation.reconciled, found.sid if found is not None else None, why)
        if found is not None:
            trace.reconciled = True
            log.info("ambiguous send %s reconciled: Twilio has %s", trace.send, found.sid)
            return found
        if isinstance(failure, ApiError) and failure.status not in AMBIGUOUS_STATUSES:
            return failure  # a 503 with nothing created: the retry stage may resend
        raise OutcomeUnknown(failure, f"{describe(failure)}; {why}")
