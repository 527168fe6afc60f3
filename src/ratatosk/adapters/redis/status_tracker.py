"""Status timelines in Redis (satisfies ``ports.StatusTracker``) for every webhook server.

One key per message, ``status:<sid>``: JSON ``{"c": current, "h": history,
"a": whether the last report advanced it}``,
each report ``[status, error code or "", time (ISO 8601), rank]``. One
script merges a report by the rule of ``twilio.tracking.merge`` (adr/0021),
atomically, so two servers receiving a message's callbacks at once agree:
a report equal to one in the history (status and code) changes nothing; a
report whose rank (``MessageStatus.rank`` of Twilio's word, computed here
and passed in, so the ranks stay the kernel's) outranks the current one
becomes current; every distinct report joins the history, the newest
``MAX_HISTORY`` kept. The key expires ``ttl`` after the message's last report.
"""

from __future__ import annotations

import json
from typing import Final

from redis.asyncio import Redis

from ...ports import StatusEvent, StatusTimeline
from ...twilio.tracking import MAX_HISTORY
from ...twilio.wire import datetime_from_iso, map_status
from ._common import DEFAULT_PREFIX, check_prefix, millis, text, unavailable

#: How long a message's timeline is kept after its last report: read receipts come late.
DEFAULT_TTL: Final = 7 * 24 * 3600.0

_APPLY: Final = """
local raw = redis.call('GET', KEYS[1])
local timeline = raw and cjson.decode(raw) or {h = {}}
local event = {ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])}
local seen_before = false
for _, seen in ipairs(timeline.h) do
  if seen[1] == event[1] and seen[2] == event[2] then seen_before = true end
end
timeline.a = 0
if not seen_before then  -- a redelivery changes nothing
  if not timeline.c or event[4] > timeline.c[4] then
    timeline.c = event
    timeline.a = 1
  end
  table.insert(timeline.h, event)
  while #timeline.h > tonumber(ARGV[5]) do table.remove(timeline.h, 1) end
end
local kept = cjson.encode(timeline)
redis.call('SET', KEYS[1], kept, 'PX', ARGV[6])
return kept
"""


class RedisStatusTracker:
    """Timelines merged by rank in one script, shared; kept ``ttl`` seconds after a report."""

    __slots__ = ("_apply", "_prefix", "_redis", "_ttl")

    def __init__(
        self, redis: Redis, *, prefix: str = DEFAULT_PREFIX, ttl: float = DEFAULT_TTL
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self._redis = redis
        self._prefix = check_prefix(prefix) + "status:"
        self._ttl = ttl
        self._apply = redis.register_script(_APPLY)

    def __repr__(self) -> str:
        return f"RedisStatusTracker(prefix={self._prefix!r}, ttl={self._ttl})"

    async def apply(self, sid: str, event: StatusEvent) -> StatusTimeline:
        if event.at.tzinfo is None:
            raise ValueError("status report times must be timezone-aware")
        code = "" if event.error_code is None else str(event.error_code)
        rank = map_status(event.status).rank
        args: list[str | int] = [event.status, code, event.at.isoformat(), rank]
        args += [MAX_HISTORY, millis(self._ttl)]
        with unavailable("merge a status report"):
            kept = await self._apply(keys=[self._prefix + sid], args=args)
        return _timeline(sid, text(kept))

    async def timeline(self, sid: str) -> StatusTimeline | None:
        with unavailable("read a status timeline"):
            kept = await self._redis.get(self._prefix + sid)
        return None if kept is None else _timeline(sid, text(kept))


def _timeline(sid: str, kept: str) -> StatusTimeline:
    """A stored timeline; ``advanced`` is its last report's, as the in-memory tracker keeps it."""
    held = json.loads(kept)
    return StatusTimeline(
        sid=sid,
        current=_event(held["c"]),
        history=tuple(_event(e) for e in held["h"]),
        advanced=bool(held["a"]),
    )


def _event(kept: list[object]) -> StatusEvent:
    status, code, at = str(kept[0]), str(kept[1]), str(kept[2])
    return StatusEvent(
        status=status,
        error_code=int(code) if code else None,
        at=datetime_from_iso(at),
    )
