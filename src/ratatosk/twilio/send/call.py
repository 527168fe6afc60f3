"""The innermost stage: one call to the Twilio API, bounded by the send's deadline."""

from __future__ import annotations

import asyncio

from ...ports import (
    ApiError,
    Clock,
    CreateMessageRequest,
    MessageResource,
    MessagingApi,
    TransportError,
)
from .stage import SendTrace


class CallTwilio:
    """Asks ``api`` to create the message; an answer later than the deadline is a lost answer.

    A request cut off by the deadline may have reached Twilio, so it becomes
    ``TransportError(maybe_delivered=True)``, which the reconcile stage handles.
    """

    def __init__(self, api: MessagingApi, clock: Clock) -> None:
        self._api = api
        self._clock = clock

    async def create(
        self, request: CreateMessageRequest, trace: SendTrace
    ) -> MessageResource | ApiError:
        remaining = trace.deadline - self._clock.monotonic()
        try:
            async with asyncio.timeout(max(remaining, 0.0)):
                return await self._api.create_message(request)
        except TimeoutError:
            raise TransportError("send deadline passed", maybe_delivered=True) from None
