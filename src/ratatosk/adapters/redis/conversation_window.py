"""Conversation windows in Redis (satisfies ``ports.ConversationWindow``) for every receiver.

One hash per customer, ``window:{<customer>}``: ``b:<business>`` -> the
latest inbound time in microseconds since the epoch, and ``any`` -> the
latest to any business number. A script writes a time only when it is
later than the one held (webhooks arrive out of order), and the hash
expires ``ttl`` after the customer's last write: past the 24-hour window
plus a margin, an entry can only say "closed", which no entry says too.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from redis.asyncio import Redis

from ._common import DEFAULT_PREFIX, check_prefix, millis, text, unavailable

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICRO: Final = dt.timedelta(microseconds=1)

_RECORD: Final = """
local at = tonumber(ARGV[2])
for _, field in ipairs({ARGV[1], 'any'}) do
  local held = tonumber(redis.call('HGET', KEYS[1], field) or '-1')
  if at > held then redis.call('HSET', KEYS[1], field, ARGV[2]) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
"""


class RedisConversationWindows:
    """Last inbound message times, later wins, shared; kept ``ttl`` seconds (25 h)."""

    __slots__ = ("_prefix", "_record", "_redis", "_ttl")

    def __init__(
        self, redis: Redis, *, prefix: str = DEFAULT_PREFIX, ttl: float = 25 * 3600.0
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self._redis = redis
        self._prefix = check_prefix(prefix) + "window:"
        self._ttl = ttl
        self._record = redis.register_script(_RECORD)

    def __repr__(self) -> str:
        return f"RedisConversationWindows(prefix={self._prefix!r}, ttl={self._ttl})"

    def _key(self, customer: str) -> str:
        return f"{self._prefix}{{{customer}}}"

    async def record_inbound(self, customer: str, business: str, at: dt.datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("inbound times must be timezone-aware")
        micros = (at - _EPOCH) // _MICRO
        with unavailable("record an inbound message time"):
            await self._record(
                keys=[self._key(customer)], args=["b:" + business, str(micros), millis(self._ttl)]
            )

    async def last_inbound(self, customer: str, business: str | None) -> dt.datetime | None:
        field = "any" if business is None else "b:" + business
        with unavailable("read an inbound message time"):
            held = await self._redis.hget(self._key(customer), field)
        if held is None:
            return None
        return _EPOCH + int(text(held)) * _MICRO
