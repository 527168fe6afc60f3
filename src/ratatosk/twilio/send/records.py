"""What the send ledger keeps of a send, and how a kept outcome answers again.

One place for the rule, because two paths write it (a send, a recheck):

* a message Twilio has: its SID, status and data, settled;
* a failure that may hide a message (``SEND_OUTCOME_UNKNOWN``, or no usable
  answer after the request may have gone out): kept *unsettled*, so a blind
  retry of the id never duplicates it and ``recheck_message`` may look again;
* ``MESSAGE_NOT_SENT`` (a recheck under at-most-once found nothing): kept
  settled, so the id is never sent afterwards;
* any other failure: Twilio certainly has nothing; the id is forgotten.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from ...domain.result import ConnectorError, ConnectorResult, SendResult
from ...domain.status import MessageStatus
from ..errors import TwilioErrorCodes
from ..outbound import SendPlan
from ..wire.times import datetime_from_iso


def fingerprint(plan: SendPlan) -> str:
    """What makes two sends of one message id 'the same message' (``SendLedger.begin``)."""
    r, template = plan.request, plan.template
    fields = (
        r.to,
        r.from_,
        r.messaging_service_sid,
        r.body,
        r.media_urls,
        r.persistent_action,
        r.content_sid,
        r.content_variables,
        r.status_callback,
        r.validity_period,
        template.template_id if template is not None else None,
        template.language if template is not None else None,
    )
    text = "\x1f".join(map(str, fields))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def record_of(result: ConnectorResult[SendResult]) -> tuple[Mapping[str, object] | None, bool]:
    """(what the ledger keeps for the id, whether that is settled); None forgets the id."""
    if result.value is not None:
        sent = result.value
        kept = {
            "sid": sent.provider_message_id,
            "status": sent.status.value,
            "timestamp": sent.timestamp.isoformat(),
            "data": dict(sent.data),
        }
        return kept, True
    failure = result.error
    assert failure is not None
    if failure.code == TwilioErrorCodes.MESSAGE_NOT_SENT:
        return {"error": failure.to_dict()}, True
    if maybe_sent(failure):
        return {"error": failure.to_dict()}, False
    return None, True


def maybe_sent(failure: ConnectorError) -> bool:
    """Whether Twilio may hold the message this failure is about."""
    return failure.code == TwilioErrorCodes.SEND_OUTCOME_UNKNOWN or (
        failure.code == TwilioErrorCodes.SEND_WHATSAPP_MESSAGE_FAILED
        and failure.details.get("maybe_delivered") is True
    )


def replay(message_id: str, outcome: Mapping[str, Any]) -> ConnectorResult[SendResult]:
    """The first send's outcome, again: the second call of one message id sends nothing."""
    if "error" in outcome:
        return ConnectorResult.failure(kept_error(outcome).with_details(replayed=True))
    return ConnectorResult.success(
        SendResult(
            message_id=message_id,
            provider_message_id=outcome["sid"],
            status=MessageStatus(outcome["status"]),
            timestamp=datetime_from_iso(outcome["timestamp"]),
            data={**outcome["data"], "replayed": True},
        )
    )


def kept_error(outcome: Mapping[str, Any]) -> ConnectorError:
    """The failure a ledger outcome holds (``outcome["error"]``), as an error again."""
    first: Mapping[str, Any] = outcome["error"]
    return ConnectorError(
        code=first["code"],
        message=first["message"],
        domain=first["domain"],
        provider_code=first["provider_code"],
        details=dict(first["details"]),
    )
