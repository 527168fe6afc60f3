"""Per-sender token buckets in one process (satisfies ``ports.RateLimiter``)."""

from __future__ import annotations

from collections.abc import Callable

from ...twilio.resilience import TokenBucket


class InMemoryRateLimiter:
    """``rate`` requests per second per key, bursts up to ``burst``; ``monotonic`` is the time.

    Buckets are made on first use and kept: one per sender the process sends
    as, which is a handful, not a growth risk.
    """

    __slots__ = ("_buckets", "_burst", "_now", "_rate")

    def __init__(self, rate: float, burst: float, monotonic: Callable[[], float]) -> None:
        TokenBucket(rate=rate, burst=burst)  # the one place that checks rate and burst
        self._rate = rate
        self._burst = burst
        self._now = monotonic
        self._buckets: dict[str, TokenBucket] = {}

    def __repr__(self) -> str:
        return f"InMemoryRateLimiter(rate={self._rate}, burst={self._burst})"

    async def reserve(self, key: str) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate=self._rate, burst=self._burst)
        return bucket.reserve(self._now())
