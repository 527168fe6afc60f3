"""Webhook deduplication in Redis (satisfies ``ports.Deduplicator``) for several servers.

One key per delivery key: ``claim:<token>`` while a server handles it, with
the lease as its expiry (SET ... PX), and ``done`` for ``ttl`` once handled.
The token is drawn per claim, so a release deletes the key only while the
claim is still ours: a release that comes after the lease lapsed and another
server took over leaves that server's claim alone. A repeat that finds the
key in flight looks again every ``poll`` seconds until the outcome, the end
of its wait, or the lease's end.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from typing import Final

from redis.asyncio import Redis

from ...ports import Claim
from ._common import DEFAULT_PREFIX, check_prefix, millis, text, unavailable

_CLAIM: Final = """
local held = redis.call('GET', KEYS[1])
if not held or held == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {'first', 0}
end
if held == 'done' then return {'repeat', 0} end
return {'in_flight', redis.call('PTTL', KEYS[1])}
"""

_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""

_CLAIMS: Final = {"first": Claim.FIRST, "repeat": Claim.REPEAT, "in_flight": Claim.IN_FLIGHT}


class RedisDeduplicator:
    """Deliveries claimed (``lease`` s) or handled (``ttl`` s), shared by every server.

    ``max_held`` bounds the tokens this process remembers for its own claims
    in flight (a claim never settled is forgotten oldest first: its lease
    lapses on the server anyway).
    """

    __slots__ = (
        "_claim",
        "_held",
        "_lease",
        "_max_held",
        "_poll",
        "_prefix",
        "_redis",
        "_release",
        "_ttl",
    )

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl: float = 24 * 3600.0,
        lease: float = 120.0,
        poll: float = 0.05,
        max_held: int = 100_000,
    ) -> None:
        if ttl <= 0 or lease <= 0 or poll <= 0 or max_held < 1:
            raise ValueError("ttl, lease and poll must be positive and max_held at least 1")
        self._redis = redis
        self._prefix = check_prefix(prefix) + "dedup:"
        self._ttl = ttl
        self._lease = lease
        self._poll = poll
        self._max_held = max_held
        self._held: OrderedDict[str, str] = OrderedDict()
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)

    def __repr__(self) -> str:
        return f"RedisDeduplicator(prefix={self._prefix!r}, ttl={self._ttl}, lease={self._lease})"

    async def claim(self, key: str, *, wait: float = 0.0) -> Claim:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait, 0.0)
        token = "claim:" + secrets.token_hex(8)  # one per call: a retried command stays ours
        while True:
            with unavailable("claim a webhook delivery"):
                state, pttl = await self._claim(
                    keys=[self._prefix + key], args=[token, millis(self._lease)]
                )
            claim = _CLAIMS[text(state)]
            if claim is Claim.FIRST:
                self._hold(key, token)
                return claim
            remaining = deadline - loop.time()
            if claim is Claim.REPEAT or remaining <= 0:
                return claim
            # Look again soon, and no later than the holder's lease ends.
            await asyncio.sleep(min(remaining, self._poll, max(int(pttl), 1) / 1000))

    async def complete(self, key: str) -> None:
        # The mark is written whoever holds the claim, so forgetting the token first costs
        # nothing: a complete retried after a failure (the server does, until Redis answers)
        # still writes it. Once handled, the event is handled, even if our lease lapsed.
        self._held.pop(key, None)
        with unavailable("record a handled webhook delivery"):
            await self._redis.set(self._prefix + key, "done", px=millis(self._ttl))

    async def release(self, key: str) -> None:
        token = self._held.pop(key, None)
        if token is None:  # not ours (or never claimed): nothing of ours to forget
            return
        with unavailable("release a webhook delivery"):
            await self._release(keys=[self._prefix + key], args=[token])

    def _hold(self, key: str, token: str) -> None:
        self._held.pop(key, None)
        self._held[key] = token
        while len(self._held) > self._max_held:
            self._held.popitem(last=False)
