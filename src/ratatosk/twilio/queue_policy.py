"""What a queue worker does with each entry and each send's result (connector layer, pure).

A worker hands every queued message to the connector and then does one of
three things with the entry, decided here, never by the loop (which only
acts, like the retry stage acting on ``resilience.classify``):

* **complete**: the result is final (sent, refused, or reported not sent):
  store it as the message's result and acknowledge the entry;
* **leave**: the outcome may still change (unknown, being sent elsewhere,
  or certainly not sent for a passing reason: the shared state, the network,
  Twilio's 20429): keep the entry unacknowledged, so after the queue's
  visibility timeout a consumer reclaims it and the connector looks again
  (``recheck_message``: the ledger replays what is known, Twilio's message
  list is read for what is not), which is the delay Twilio's list needs to
  catch up;
* **dead-letter**: the entry cannot be read, or has been handed out
  ``max_deliveries`` times without a final result: move it aside with the
  reason, and store the last result (or an unknown outcome) as final.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from ..domain.result import ConnectorError, ConnectorResult, SendResult
from .errors import TwilioErrorCodes, error
from .provider_errors import Retry

#: Failures after which a later delivery may end differently, and nothing is lost by waiting.
LOOK_AGAIN: Final = frozenset(
    {
        TwilioErrorCodes.SEND_OUTCOME_UNKNOWN,  # Twilio may have it: re-check after a delay
        TwilioErrorCodes.SEND_IN_PROGRESS,  # another call holds the id (or held it and died)
        TwilioErrorCodes.STATE_STORE_UNAVAILABLE,  # nothing was sent: the shared state was down
        TwilioErrorCodes.TEMPLATE_LOOKUP_FAILED,  # nothing was sent: the catalog was unreachable
    }
)


class Action(enum.Enum):
    COMPLETE = "complete"
    LEAVE = "leave"
    DEAD_LETTER = "dead_letter"


@attrs.frozen
class Decision:
    """What to do with an entry: ``result`` is what ``complete`` or ``dead_letter`` store."""

    action: Action
    result: ConnectorResult[SendResult] | None = None
    reason: str = ""


def on_arrival(message_id: str, deliveries: int, max_deliveries: int) -> Decision | None:
    """Before sending: an entry handed out more than ``max_deliveries`` times goes aside.

    That only happens when the consumer holding it for the last allowed time
    stopped before deciding (it died, or was stopped past its grace), so its
    outcome is unknown; None means "go on and send".
    """
    if deliveries <= max_deliveries:
        return None
    unknown = error(
        TwilioErrorCodes.SEND_OUTCOME_UNKNOWN,
        f"message {message_id!r} was handed to workers {deliveries} times and none reported an "
        "outcome; it was dead-lettered without being tried again",
        message_id=message_id,
        deliveries=deliveries,
        dead_lettered=True,
    )
    return Decision(
        Action.DEAD_LETTER,
        ConnectorResult.failure(unknown),
        f"handed out {deliveries} times (max {max_deliveries}) without an outcome",
    )


def unreadable(problem: ConnectorError, deliveries: int) -> Decision:
    """An entry whose message cannot be decoded is dead-lettered at once, with why."""
    return Decision(
        Action.DEAD_LETTER,
        ConnectorResult.failure(problem.with_details(dead_lettered=True, deliveries=deliveries)),
        f"{problem.code}: {problem.message}",
    )


def decide(result: ConnectorResult[SendResult], deliveries: int, max_deliveries: int) -> Decision:
    """After a send (or a re-check): complete, leave for a later look, or dead-letter."""
    failure = result.error
    if failure is None or not may_change(failure):
        return Decision(Action.COMPLETE, result)
    if deliveries < max_deliveries:
        return Decision(Action.LEAVE, result, f"{failure.code}: looked at again after a delay")
    kept = failure.with_details(dead_lettered=True, deliveries=deliveries)
    return Decision(
        Action.DEAD_LETTER,
        ConnectorResult.failure(kept),
        f"{failure.code} after {deliveries} deliveries (max {max_deliveries})",
    )


def may_change(failure: ConnectorError) -> bool:
    """Whether a later delivery of the same message may end otherwise (and safely)."""
    if failure.code in LOOK_AGAIN:
        return True
    if failure.code == TwilioErrorCodes.SEND_WHATSAPP_MESSAGE_FAILED:
        return True  # no usable answer: not sent (try again) or maybe sent (re-check)
    # Twilio said "not now" (20429 after the connector's own retries): a later try may pass.
    return failure.details.get("retry") == Retry.NOW.value


__all__ = ["LOOK_AGAIN", "Action", "Decision", "decide", "may_change", "on_arrival", "unreadable"]
