"""Per-sender token buckets in Redis (satisfies ``ports.RateLimiter``), one for all processes.

A reservation is one script: refill the sender's bucket for the time since
its last reservation, take a token (a negative count books a future one),
and answer the wait. The time is Redis's ``TIME``, so processes on several
machines book against one clock and their clocks' drift does not matter.
The bucket forgets itself a minute after it would be full again: a fresh
one is the same bucket.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from redis.asyncio import Redis

from ...twilio.resilience import TokenBucket
from ._common import DEFAULT_PREFIX, LUA_NOW, Now, check_prefix, now_arg, text, unavailable

_RESERVE: Final = (
    LUA_NOW
    + """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = now_from(ARGV[3])
local held = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(held[1]) or burst
local updated = tonumber(held[2]) or now
if now > updated then  -- a clock stepped back never adds tokens
  tokens = math.min(burst, tokens + (now - updated) * rate)
  updated = now
end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'updated', string.format('%.17g', updated))
local full_in_ms = math.ceil((burst - tokens) / rate * 1000)
redis.call('PEXPIRE', KEYS[1], string.format('%d', full_in_ms + 60000))
local wait = 0
if tokens < 0 then wait = -tokens / rate end
return {string.format('%.17g', wait), string.format('%.17g', now)}
"""
)


class RedisRateLimiter:
    """``rate`` requests per second per key, bursts up to ``burst``, counted in Redis.

    ``rates`` gives particular keys (senders) their own rate, their burst
    capped at it, as the in-memory limiter does (the ``SenderRates`` setting):
    every process must know them, since the rate travels with each call.
    ``now`` is for tests that keep their own time; by default the server's
    clock decides, which is what makes the count shared.
    """

    __slots__ = ("_burst", "_default", "_now", "_prefix", "_rate", "_rates", "_reserve")

    def __init__(
        self,
        redis: Redis,
        rate: float,
        burst: float,
        *,
        prefix: str = DEFAULT_PREFIX,
        now: Now = None,
        rates: Mapping[str, float] | None = None,
    ) -> None:
        TokenBucket(rate=rate, burst=burst)  # the one place that checks rate and burst
        self._rates = {
            key: (repr(float(key_rate)), repr(float(max(min(burst, key_rate), 1.0))))
            for key, key_rate in (rates or {}).items()
        }
        for key_rate in (rates or {}).values():
            TokenBucket(rate=key_rate, burst=max(min(burst, key_rate), 1.0))
        self._rate = rate
        self._burst = burst
        self._default = (repr(float(rate)), repr(float(burst)))
        self._prefix = check_prefix(prefix) + "rate:"
        self._now = now
        self._reserve = redis.register_script(_RESERVE)

    def __repr__(self) -> str:
        return f"RedisRateLimiter(rate={self._rate}, burst={self._burst}, prefix={self._prefix!r})"

    async def reserve(self, key: str) -> float:
        wait, _ = await self._book(key)
        return wait

    async def reserve_slot(self, key: str) -> float:
        """Book one request for ``key``; the time it may be made, on the shared clock.

        Seconds since the epoch on Redis's clock (or on ``now``): what a
        process that schedules work, or a test that counts requests per
        second across processes, compares, free of its own timing.
        """
        wait, now = await self._book(key)
        return now + wait

    async def _book(self, key: str) -> tuple[float, float]:
        rate, burst = self._rates.get(key, self._default)
        with unavailable("book a request slot"):
            wait, now = await self._reserve(
                keys=[f"{self._prefix}{{{key}}}"], args=[rate, burst, now_arg(self._now)]
            )
        return float(text(wait)), float(text(now))
