"""Bounded retries with back-off, for failures after which Twilio cannot have sent.

The decisions are ``resilience.classify`` and ``RetryPolicy.delay`` (pure);
this stage only counts, waits on the clock and calls again. Before each wait
it tells whoever watches (the send's telemetry, the connector's ``on_retry``).
"""

from __future__ import annotations

import inspect
import logging
import random
from collections.abc import Awaitable, Callable

from ...ports import (
    ApiError,
    Clock,
    CreateMessageRequest,
    MessageResource,
    RetryNotice,
    TransportError,
)
from ..resilience import Outcome, RetryPolicy, classify
from .stage import CreateStage, SendTrace, describe, notify

log = logging.getLogger("ratatosk.twilio")

#: A connector's ``on_retry``: a plain function or a coroutine function.
RetryHook = Callable[[RetryNotice], Awaitable[None] | None]


class Retry:
    """Calls ``inner`` again while the failure is safe to retry, attempts and deadline allow."""

    def __init__(
        self,
        inner: CreateStage,
        policy: RetryPolicy,
        clock: Clock,
        rng: random.Random,
        *,
        on_retry: RetryHook | None = None,
    ) -> None:
        self._inner = inner
        self._policy = policy
        self._clock = clock
        self._rng = rng
        self._on_retry = on_retry

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
            if trace.observation is not None or self._on_retry is not None:
                wait -= await self._tell(failure, wait, trace)
            await self._clock.sleep(max(wait, 0.0))

    async def _tell(
        self, failure: ApiError | TransportError, wait: float, trace: SendTrace
    ) -> float:
        """Tell telemetry and the hook of the retry; the seconds the hook took count as waited.

        An async hook runs in the send's task, before the back-off wait: the
        wait absorbs its time, so a slow hook delays the retry only past that.
        """
        answer = failure if isinstance(failure, ApiError) else None
        notice = RetryNotice(
            message_id=trace.send,
            attempt=trace.attempts,
            failure=describe(failure),
            wait=wait,
            provider_code=answer.code if answer is not None else None,
            http_status=answer.status if answer is not None else None,
        )
        if trace.observation is not None:
            notify(trace.observation.retrying, notice)
        if self._on_retry is None:
            return 0.0
        started = self._clock.monotonic()
        try:
            called = self._on_retry(notice)
            if inspect.isawaitable(called):
                await called
        except Exception:  # the user's hook must not change what the send does
            log.exception("on_retry hook raised; the send goes on")
        return self._clock.monotonic() - started

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
