"""The innermost stage: one call to the Twilio API, bounded by the send's deadline."""

from __future__ import annotations

import asyncio

from ...ports import (
    ApiError,
    Clock,
    CreateMessageRequest,
    HasRequestTimeout,
    MessageResource,
    MessagingApi,
    TransportError,
)
from .stage import SendTrace


class CallTwilio:
    """Asks ``api`` to create the message; an answer later than the deadline is a lost answer.

    A request cut off by the deadline may have reached Twilio, so it becomes
    ``TransportError(maybe_delivered=True)``, which the reconcile stage handles.

    A transport that says how long a call can take at most (``HasRequestTimeout``:
    the aiohttp adapter's total timeout) already ends the call with a lost
    answer by then; when that comes before the send's deadline, a timer of
    our own could never fire first, so none is armed (it costs several
    microseconds per send). Any other transport gets the timer on every call.
    """

    def __init__(self, api: MessagingApi, clock: Clock) -> None:
        self._api = api
        self._clock = clock
        self._bounded = api if isinstance(api, HasRequestTimeout) else None

    async def create(
        self, request: CreateMessageRequest, trace: SendTrace
    ) -> MessageResource | ApiError:
        remaining = trace.deadline - self._clock.monotonic()
        # Read per call: the transport's bound may change (a closed session replaced).
        if self._bounded is not None and remaining >= self._bounded.request_timeout:
            return await self._api.create_message(request)
        try:
            async with asyncio.timeout(max(remaining, 0.0)):
                return await self._api.create_message(request)
        except TimeoutError:
            raise TransportError("send deadline passed", maybe_delivered=True) from None
