"""Per-sender token buckets in one process (satisfies ``ports.RateLimiter``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ...twilio.resilience import TokenBucket


class InMemoryRateLimiter:
    """``rate`` requests per second per key, bursts up to ``burst``; ``monotonic`` is the time.

    ``rates`` gives particular keys (senders) their own rate, their burst
    capped at it. Buckets are made on first use and kept: one per sender the
    process sends as, which is a handful, not a growth risk.
    """

    __slots__ = ("_buckets", "_burst", "_now", "_rate", "_rates")

    def __init__(
        self,
        rate: float,
        burst: float,
        monotonic: Callable[[], float],
        *,
        rates: Mapping[str, float] | None = None,
    ) -> None:
        self._rates = dict(rates or {})
        for key_rate in (rate, *self._rates.values()):  # the one place that checks rate and burst
            TokenBucket(rate=key_rate, burst=max(min(burst, key_rate), 1.0))
        self._rate = rate
        self._burst = burst
        self._now = monotonic
        self._buckets: dict[str, TokenBucket] = {}

    def __repr__(self) -> str:
        return f"InMemoryRateLimiter(rate={self._rate}, burst={self._burst})"

    async def reserve(self, key: str) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            rate = self._rates.get(key)
            burst = self._burst if rate is None else max(min(self._burst, rate), 1.0)
            bucket = self._buckets[key] = TokenBucket(rate=rate or self._rate, burst=burst)
        return bucket.reserve(self._now())
