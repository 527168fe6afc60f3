"""Pacing: every request waits for its sender's slot, and few are in flight at once."""

from __future__ import annotations

import asyncio

from ...ports import ApiError, Clock, CreateMessageRequest, MessageResource, RateLimiter
from .stage import CreateStage, SendTrace, sender_of


class Throttle:
    """Books a slot with the (maybe shared) rate limiter, then caps concurrent calls.

    It sits inside the retry stage, so every attempt, retries included, is
    counted against the sender: Twilio counts them too.
    """

    def __init__(
        self,
        inner: CreateStage,
        limiter: RateLimiter | None,
        clock: Clock,
        *,
        max_in_flight: int,
    ) -> None:
        self._inner = inner
        self._limiter = limiter
        self._clock = clock
        self._slots = asyncio.Semaphore(max_in_flight)

    async def create(
        self, request: CreateMessageRequest, trace: SendTrace
    ) -> MessageResource | ApiError:
        if self._limiter is not None:
            wait = await self._limiter.reserve(sender_of(request))
            if wait > 0:
                trace.paced += wait
                await self._clock.sleep(wait)
        await self._slots.acquire()  # not `async with`: two coroutine frames fewer per send
        try:
            return await self._inner.create(request, trace)
        finally:
            self._slots.release()
