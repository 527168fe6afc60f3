"""The outbound queue on Redis Streams (satisfies ``ports.OutboundQueue``).

Keys (after the prefix; ``{name}`` is a hash tag, so on Redis Cluster the
whole queue lives on one slot and every multi-key step stays atomic):

* ``queue:{<name>}``: the stream; one entry per submitted message (``id``
  the message id, ``m`` the message as JSON). Its consumer group (``workers``
  by default) hands entries out; an acknowledged entry is deleted at once, so
  the stream holds only work not yet finished (waiting or pending);
* ``queue:{<name>}:dead``: the dead-letter stream (``id``, ``m``, ``reason``,
  ``deliveries``, ``entry``), capped near ``max_dead`` entries;
* ``queue:{<name>}:result:<message id>``: the final result as JSON, kept
  ``result_ttl`` seconds; written once (``SET NX``), the first result wins.

``holds`` asks the stream for each entry id (``XRANGE id id``): an entry
there is waiting or pending, since a finished one is deleted with its
acknowledgement, in the same transaction that stores its result.

Reading is ``XREADGROUP`` (``>``: entries nobody had); reclaiming is
``XAUTOCLAIM`` past the visibility timeout, the delivery count read back from
the group's pending list (``XPENDING``) in the same script; ``extend`` and
``release`` re-set an entry's idle time with ``XCLAIM ... JUSTID`` (which
counts no delivery), only for entries their consumer still holds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ...ports import DeadLetter, QueuedSend, QueueStats
from ._common import DEFAULT_PREFIX, check_prefix, millis, text, unavailable

#: A stream entry id as Redis writes them; anything else (a hand-edited ticket) names no entry.
_ENTRY_ID: Final = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")

#: Hand out pending entries idle past ARGV[3] ms, with their delivery counts.
_RECLAIM: Final = """
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
                           'COUNT', ARGV[5])
local out = {claimed[1]}
for _, entry in ipairs(claimed[2]) do
  local held = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1)
  local deliveries = 1
  if held[1] then deliveries = held[1][4] end
  out[#out + 1] = {entry[1], entry[2], deliveries}
end
return out
"""

#: Set the idle time (ARGV[3] ms) of the entries ARGV[2] still holds; no delivery counted.
_TOUCH: Final = """
for i = 4, #ARGV do
  local held = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if held[1] and held[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
  end
end
return 0
"""


class RedisOutboundQueue:
    """One queue named ``name`` in Redis; see :class:`ratatosk.ports.OutboundQueue`.

    ``max_block`` caps how long one ``read`` blocks the connection: it must
    stay under the client's socket timeout (2 s for ``RedisStores.from_url``),
    or a quiet queue would look like a dead server.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        name: str = "outbound",
        group: str = "workers",
        visibility_timeout: float = 30.0,
        result_ttl: float = 24 * 3600.0,
        max_dead: int = 100_000,
        max_block: float = 1.0,
    ) -> None:
        if visibility_timeout <= 0 or result_ttl <= 0 or max_dead < 1 or max_block <= 0:
            raise ValueError("timeouts must be positive, max_dead at least 1")
        if not name or any(c in name for c in "{}:"):
            raise ValueError("a queue name is non-empty text without {, } or :")
        self._redis = redis
        base = f"{check_prefix(prefix)}queue:{{{name}}}"
        self.stream_key: Final = base
        self.dead_key: Final = f"{base}:dead"
        self._result_prefix = f"{base}:result:"
        self.group: Final = group
        self._visibility = visibility_timeout
        self._result_ttl = result_ttl
        self._max_dead = max_dead
        self._max_block = max_block
        self._reclaim = redis.register_script(_RECLAIM)
        self._touch = redis.register_script(_TOUCH)
        self._group_ready = False
        self._cursor = "0-0"

    def __repr__(self) -> str:
        return f"RedisOutboundQueue({self.stream_key!r}, group={self.group!r})"

    @property
    def visibility_timeout(self) -> float:
        return self._visibility

    def _result_key(self, message_id: str) -> str:
        return self._result_prefix + message_id

    async def _ensure_group(self, *, again: bool = False) -> None:
        """Create the consumer group (from the stream's start) unless it exists."""
        if self._group_ready and not again:
            return
        try:
            await self._redis.xgroup_create(self.stream_key, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def _grouped(self, call: Any) -> Any:
        """Run ``call()``; a group lost with the server's memory (a restart) is made again."""
        await self._ensure_group()
        try:
            return await call()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._ensure_group(again=True)
            return await call()

    async def add(self, items: Sequence[tuple[str, Mapping[str, object]]]) -> Sequence[str]:
        if not items:
            return []
        with unavailable("add to the outbound queue"):
            await self._ensure_group()
            async with self._redis.pipeline(transaction=True) as pipe:  # all or none
                for message_id, payload in items:
                    pipe.xadd(self.stream_key, {"id": message_id, "m": _dumps(payload)})
                ids = await pipe.execute()
        return [text(i) for i in ids]

    async def read(self, consumer: str, *, count: int, block: float = 0.0) -> Sequence[QueuedSend]:
        wait = min(block, self._max_block)

        async def call() -> Any:
            return await self._redis.xreadgroup(
                self.group,
                consumer,
                {self.stream_key: ">"},
                count=count,
                block=millis(wait) if wait > 0 else None,
            )

        with unavailable("read the outbound queue"):
            answer = await self._grouped(call)
        entries: list[QueuedSend] = []
        for _stream, items in _stream_items(answer):
            for entry_id, fields in items:
                entries.append(_entry(entry_id, fields, 1))
        return entries

    async def reclaim(self, consumer: str, *, count: int) -> Sequence[QueuedSend]:
        async def call() -> Any:
            return await self._reclaim(
                keys=[self.stream_key],
                args=[self.group, consumer, millis(self._visibility), self._cursor, count],
            )

        with unavailable("reclaim entries of the outbound queue"):
            answer = await self._grouped(call)
        self._cursor = text(answer[0])
        return [
            _entry(entry_id, fields, int(deliveries)) for entry_id, fields, deliveries in answer[1:]
        ]

    async def extend(self, consumer: str, entry_ids: Sequence[str]) -> None:
        await self._set_idle(consumer, entry_ids, 0, "keep entries of the outbound queue")

    async def release(self, consumer: str, entry_ids: Sequence[str]) -> None:
        idle = millis(self._visibility)
        await self._set_idle(consumer, entry_ids, idle, "hand back entries of the outbound queue")

    async def _set_idle(
        self, consumer: str, entry_ids: Sequence[str], idle: int, what: str
    ) -> None:
        if not entry_ids:
            return
        with unavailable(what):
            await self._grouped(
                lambda: self._touch(
                    keys=[self.stream_key], args=[self.group, consumer, idle, *entry_ids]
                )
            )

    async def complete(self, entry: QueuedSend, result: Mapping[str, object]) -> bool:
        with unavailable("acknowledge an entry of the outbound queue"):
            async with self._redis.pipeline(transaction=True) as pipe:
                self._record(pipe, entry.message_id, result)
                pipe.xack(self.stream_key, self.group, entry.entry_id)
                pipe.xdel(self.stream_key, entry.entry_id)
                first, *_ = await pipe.execute()
        return bool(first)

    async def dead_letter(
        self, entry: QueuedSend, reason: str, result: Mapping[str, object]
    ) -> bool:
        letter: dict[Any, Any] = {
            "id": entry.message_id,
            "m": _dumps(entry.payload),
            "reason": reason,
            "deliveries": str(entry.deliveries),
            "entry": entry.entry_id,
        }
        with unavailable("dead-letter an entry of the outbound queue"):
            async with self._redis.pipeline(transaction=True) as pipe:
                self._record(pipe, entry.message_id, result)
                pipe.xadd(self.dead_key, letter, maxlen=self._max_dead, approximate=True)
                pipe.xack(self.stream_key, self.group, entry.entry_id)
                pipe.xdel(self.stream_key, entry.entry_id)
                first, *_ = await pipe.execute()
        return bool(first)

    def _record(self, pipe: Any, message_id: str, result: Mapping[str, object]) -> None:
        pipe.set(self._result_key(message_id), _dumps(result), nx=True, px=millis(self._result_ttl))

    async def result(self, message_id: str) -> Mapping[str, object] | None:
        with unavailable("read a send result"):
            stored = await self._redis.get(self._result_key(message_id))
        if stored is None:
            return None
        found: Mapping[str, object] = json.loads(text(stored))
        return found

    async def holds(self, entry_ids: Sequence[str]) -> Sequence[bool]:
        asked = [e for e in entry_ids if _ENTRY_ID.fullmatch(e)]
        if not asked:
            return [False] * len(entry_ids)
        with unavailable("look for entries of the outbound queue"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry_id in asked:
                    pipe.xrange(self.stream_key, entry_id, entry_id, count=1)
                found = await pipe.execute()
        there = {entry_id for entry_id, items in zip(asked, found, strict=True) if items}
        return [entry_id in there for entry_id in entry_ids]

    async def dead_letters(self, count: int = 100) -> Sequence[DeadLetter]:
        with unavailable("read the dead letters"):
            items: Any = await self._redis.xrange(self.dead_key, count=count)
        letters = []
        for entry_id, fields in items:
            values = {text(k): text(v) for k, v in fields.items()}
            letters.append(
                DeadLetter(
                    entry_id=values.get("entry", text(entry_id)),
                    message_id=values["id"],
                    payload=json.loads(values["m"]),
                    deliveries=int(values["deliveries"]),
                    reason=values["reason"],
                )
            )
        return letters

    async def stats(self) -> QueueStats:
        with unavailable("count the outbound queue"):
            await self._ensure_group()
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xlen(self.stream_key)
                pipe.xpending(self.stream_key, self.group)
                pipe.xlen(self.dead_key)
                length, pending, dead = await pipe.execute()
        held = int(pending["pending"]) if isinstance(pending, Mapping) else int(pending[0])
        # Acknowledged entries are deleted: the stream holds exactly the waiting and pending ones.
        return QueueStats(waiting=max(0, int(length) - held), pending=held, dead=int(dead))


def _dumps(data: Mapping[str, object]) -> str:
    # ASCII: a lone surrogate in a property travels escaped instead of failing to encode.
    return json.dumps(data, separators=(",", ":"))


def _stream_items(answer: Any) -> list[tuple[Any, list[tuple[Any, Any]]]]:
    """XREADGROUP's reply as (stream, entries); None when the block ran out."""
    return [(stream, items) for stream, items in answer or ()]


def _entry(entry_id: Any, fields: Any, deliveries: int) -> QueuedSend:
    if isinstance(fields, Mapping):
        values = {text(k): text(v) for k, v in fields.items()}
    else:  # a flat [field, value, ...] list, as a script returns it
        flat = [text(f) for f in fields]
        values = dict(zip(flat[::2], flat[1::2], strict=True))
    return QueuedSend(
        entry_id=text(entry_id),
        message_id=values["id"],
        payload=json.loads(values["m"]),
        deliveries=deliveries,
    )
