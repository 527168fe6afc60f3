"""Bounded retries with back-off, for failures after which Twilio cannot have sent.

The decisions are ``resilience.classify`` and ``RetryPolicy.delay`` (pure);
this stage only counts, waits on the clock and calls again.
"""

from __future__ import annotations

import logging
import random

from ...ports import ApiError, Clock, CreateMessageRequest, MessageResource, TransportError
from ..resilience import Outcome, RetryPolicy, classify
from .stage import CreateStage, SendTrace, describe

log = logging.getLogger("ratatosk.twilio")


class Retry:
    """Calls ``inner`` again while the failure is safe to retry, attempts and deadline allow."""

    def __init__(
        self, inner: CreateStage, policy: RetryPolicy, clock: Clock, rng: random.Random
    ) -> None:
        self._inner = inner
        self._policy = policy
        self._clock = clock
        self._rng = rng

    async def create(
        self, request: CreateMessageRequest, trace: SendTrace
    ) -> MessageResource | ApiError:
        while True:
            trace.attempts += 1
            failure: ApiError | TransportError
            try:
                answer = await self._inner.create(request, trace)
            except TransportError as exc:
                failure = exc
            else:
                if not isinstance(answer, ApiError):
                    return answer
                failure = answer
            wait = self._wait_before_retry(failure, trace)
            if wait is None:
                if isinstance(failure, ApiError):
                    return failure
                raise failure
            log.info(
                "send attempt %d failed (%s); retrying in %.2fs",
                trace.attempts,
                describe(failure),
                wait,
            )
            trace.waited += wait
            await self._clock.sleep(wait)

    def _wait_before_retry(
        self, failure: ApiError | TransportError, trace: SendTrace
    ) -> float | None:
        if classify(failure) is not Outcome.RETRY or trace.attempts >= self._policy.max_attempts:
            return None
        hint = failure.retry_after if isinstance(failure, ApiError) else None
        wait = self._policy.delay(trace.attempts, hint, self._rng)
        if self._clock.monotonic() + wait >= trace.deadline:
            return None
        return wait
