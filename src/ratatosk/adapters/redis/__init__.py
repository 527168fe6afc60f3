"""Redis adapters of every state port (adapters layer): several processes, one state.

Needs the ``redis`` extra (``pip install 'ratatosk-twilio[redis]'``); nothing
outside this package imports it, so the in-memory default never needs
redis-py. :class:`RedisStores` opens one ``redis.asyncio.Redis`` client and
hands out every adapter on it, with one key prefix; ``docs/scaling.md``
lists the keys, what each holds and for how long. Every adapter raises
``ports.StateStoreError`` when Redis cannot be asked, never the client's
own errors, and each passes its port's contract suite (``tests/ports``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from ...ports import DEFAULT_SEND_LEASE
from ._common import DEFAULT_PREFIX, Now, check_prefix, unavailable
from .conversation_window import RedisConversationWindows
from .dedup import RedisDeduplicator
from .outbound_queue import RedisOutboundQueue
from .rate_limiter import RedisRateLimiter
from .send_ledger import RedisSendLedger
from .status_tracker import RedisStatusTracker
from .template_cache import RedisTemplateCache

#: Seconds to connect, and to wait for one answer: a state store that takes
#: longer is treated as unavailable rather than holding a send or a webhook.
DEFAULT_TIMEOUT: Final = 2.0
#: Connections one process opens at most; calls beyond them wait for a free one.
DEFAULT_MAX_CONNECTIONS: Final = 64


class RedisStores:
    """One Redis client, one key prefix, and every state adapter built on them.

    ``now`` replaces the server's clock (for tests with a clock of their
    own); leave it out in production, so every process shares Redis's time.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        now: Now = None,
        owns_client: bool = False,
    ) -> None:
        self.redis: Final = redis
        self.prefix: Final = check_prefix(prefix)
        self._now = now
        self._owns = owns_client

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> RedisStores:
        """A client for ``redis://`` or ``rediss://`` ``url``, closed by :meth:`close`.

        At most ``max_connections`` at once; more concurrent calls queue for
        one. A dropped connection is tried again twice, quickly (a restarted
        server, a failover); past that the adapters report the store unavailable.
        """
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,  # past it, waiting for a free connection is a failure too
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
            decode_responses=True,
        )
        return cls(Redis.from_pool(pool), prefix=prefix, owns_client=True)

    @property
    def where(self) -> str:
        """``host:port/db`` of the server, for a log line (never the password)."""
        kwargs = self.redis.connection_pool.connection_kwargs
        place = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        return f"{place}/{kwargs.get('db', 0)}"

    def __repr__(self) -> str:
        return f"RedisStores({self.where}, prefix={self.prefix!r})"

    def deduplicator(self, *, ttl: float = 24 * 3600.0, lease: float = 120.0) -> RedisDeduplicator:
        return RedisDeduplicator(self.redis, prefix=self.prefix, ttl=ttl, lease=lease)

    def rate_limiter(
        self, rate: float, burst: float, *, rates: Mapping[str, float] | None = None
    ) -> RedisRateLimiter:
        return RedisRateLimiter(
            self.redis, rate, burst, prefix=self.prefix, now=self._now, rates=rates
        )

    def send_ledger(
        self, *, ttl: float = 24 * 3600.0, lease: float = DEFAULT_SEND_LEASE
    ) -> RedisSendLedger:
        return RedisSendLedger(self.redis, prefix=self.prefix, ttl=ttl, lease=lease, now=self._now)

    def outbound_queue(
        self, *, name: str = "outbound", visibility_timeout: float = 30.0
    ) -> RedisOutboundQueue:
        """The durable send queue ``name`` (``ratatosk worker`` drains it)."""
        return RedisOutboundQueue(
            self.redis, prefix=self.prefix, name=name, visibility_timeout=visibility_timeout
        )

    def status_tracker(self) -> RedisStatusTracker:
        return RedisStatusTracker(self.redis, prefix=self.prefix)

    def template_cache(self) -> RedisTemplateCache:
        return RedisTemplateCache(self.redis, prefix=self.prefix)

    def conversation_windows(self) -> RedisConversationWindows:
        return RedisConversationWindows(self.redis, prefix=self.prefix)

    async def ping(self) -> None:
        """Raises ``StateStoreError`` unless Redis answers now."""
        with unavailable("answer a PING"):
            await self.redis.ping()

    async def close(self) -> None:
        """Close the client if this bundle opened it; safe to call twice."""
        if self._owns:
            await self.redis.aclose()


def redacted(url: str) -> str:
    """``url`` without its password, for a log line or an error."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + host).geturl()


__all__ = [
    "DEFAULT_PREFIX",
    "RedisConversationWindows",
    "RedisDeduplicator",
    "RedisOutboundQueue",
    "RedisRateLimiter",
    "RedisSendLedger",
    "RedisStatusTracker",
    "RedisStores",
    "RedisTemplateCache",
    "redacted",
]
