"""What arrives from Twilio: webhooks decoded, and what they tell the state ports.

Decoding is pure (``wire``); receiving also feeds the ports that outlive one
request: an inbound message opens its customer's 24-hour window (the window
guard reads it), a status callback is merged into its message's timeline (a
late ``sent`` after ``read`` is reported but does not count, adr/0021).
"""

from __future__ import annotations

import datetime as dt

import attrs

from ..domain.result import ConnectorResult, ReceiveResult, StatusUpdate
from ..domain.source import MessageSource
from ..ports import ConversationWindow, StatusEvent, StatusTracker
from . import wire


async def receive(
    source: MessageSource, windows: ConversationWindow | None, now: dt.datetime
) -> ConnectorResult[ReceiveResult]:
    """The webhook's messages; each one with a sender and receiver opens that window."""
    received = wire.decode_receive(source)
    if windows is not None and received.value is not None:
        for message in received.value.messages:
            if message.sender is not None and message.receiver is not None:
                await windows.record_inbound(message.sender.address, message.receiver.address, now)
    return received


async def receive_status(
    source: MessageSource, tracker: StatusTracker | None, now: dt.datetime
) -> ConnectorResult[StatusUpdate]:
    """The callback's update, merged into the timeline when a tracker is plugged."""
    decoded = wire.decode_status(source, now)
    if tracker is None or decoded.value is None:
        return decoded
    return ConnectorResult.success(await track(tracker, decoded.value))


async def track(tracker: StatusTracker, update: StatusUpdate) -> StatusUpdate:
    """``update`` merged into its message's timeline; its data says what that changed."""
    event = StatusEvent(
        status=str(update.data.get("twilio_status") or update.status.value),
        error_code=update.error_code,
        at=update.timestamp,
    )
    timeline = await tracker.apply(update.message_id, event)
    current = timeline.current
    return attrs.evolve(
        update,
        data={
            **update.data,
            "advanced": timeline.advanced,
            "current_status": wire.map_status(current.status).value,
            "current_twilio_status": current.status,
            "reports": len(timeline.history),
        },
    )
