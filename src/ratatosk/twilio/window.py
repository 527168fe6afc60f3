"""WhatsApp's 24-hour customer-service window (pure policy).

Free-form messages (text, media, location) may only be sent within 24 hours
of the customer's last message; approved templates may be sent any time.
Twilio enforces this after the fact with error 63016 on a message it had
already accepted; the guard refuses such a send before any request, which is
cheaper and tells the caller to use a template.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from ..domain.result import ConnectorError
from ..ports import CreateMessageRequest
from .errors import TwilioErrorCodes, error
from .outbound import SendPlan

WINDOW: Final = dt.timedelta(hours=24)


def is_free_form(plan: SendPlan) -> bool:
    """Whether the window applies: anything but a template."""
    return plan.template is None and plan.request.content_sid is None


def business_of(request: CreateMessageRequest) -> str | None:
    """The number the customer must have written to; unknown behind a Messaging Service."""
    return request.from_


def check_window(
    request: CreateMessageRequest, last_inbound: dt.datetime | None, now: dt.datetime
) -> ConnectorError | None:
    """None when a free-form send to ``request.to`` is inside the window."""
    if last_inbound is not None and now - last_inbound < WINDOW:
        return None
    details: dict[str, Any] = {"customer": request.to, "business": business_of(request)}
    if last_inbound is None:
        why = "the customer has not written to this number"
    else:
        closed = last_inbound + WINDOW
        details |= {"last_inbound": last_inbound.isoformat(), "closed_at": closed.isoformat()}
        why = f"the 24-hour window closed at {closed.isoformat()}"
    return error(
        TwilioErrorCodes.OUTSIDE_CONVERSATION_WINDOW,
        f"free-form message to {request.to} refused: {why}; send an approved template",
        twilio_code=63016,  # what Twilio would have failed the message with
        **details,
    )


__all__ = ["WINDOW", "business_of", "check_window", "is_free_form"]
