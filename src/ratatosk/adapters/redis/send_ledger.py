"""Sends by message id, lanes and claimed SIDs in Redis (satisfies ``ports.SendLedger``).

Keys (after the prefix):

* ``id:<message id>``: a hash, ``f`` the fingerprint, ``o`` the outcome as
  JSON once done and ``u`` = 1 when that outcome is unsettled, ``t`` the
  first attempt's time (ISO 8601); while held, ``w`` the token of the
  ``begin`` that holds it, ``l`` when its lease ends (server time, seconds)
  and ``g`` the state that ``begin`` answered; kept ``ttl`` seconds;
* ``lane:{<lane>}``: a hash, send -> JSON ``{"k": key, "r": reconciling,
  "x": expiry}``; a send in flight expires after ``member_ttl`` (its process
  died: it stops holding reconciles up), a send left unsettled stays as
  looking for ``ghost_ttl``; expired members are dropped when the lane is read;
* ``sid:<sid>``: the send that holds the SID, for ``ttl`` seconds.

Every operation is one command or one script on one key, so two processes
never both get NEW for one id, and never both adopt one SID.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Final

from redis.asyncio import Redis

from ...ports import DEFAULT_SEND_LEASE, LaneMember, LedgerEntry, LedgerState
from ...twilio.wire import datetime_from_iso
from ._common import (
    DEFAULT_PREFIX,
    LUA_KEEP,
    LUA_NOW,
    Now,
    check_prefix,
    millis,
    now_arg,
    text,
    unavailable,
)

_BEGIN: Final = (
    LUA_NOW
    + """
local now = now_from(ARGV[5])
local held = redis.call('HMGET', KEYS[1], 'f', 'o', 'w', 'l', 'g', 't', 'u')
local lease = now + tonumber(ARGV[6]) / 1000
if not held[1] then
  redis.call('HSET', KEYS[1], 'f', ARGV[1], 'w', ARGV[3], 'l', lease, 'g', 'new', 't', ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'new', false, ARGV[4]}
end
if held[1] ~= ARGV[1] then return {'conflict'} end
if held[3] == ARGV[3] then return {held[5], held[2], held[6]} end  -- our own begin, sent again
local grant
if held[3] then
  if tonumber(held[4]) > now then return {'in_flight', false, held[6]} end
  grant = 'abandoned'
elseif ARGV[7] == '1' and held[7] == '1' then
  grant = 'reopened'
else
  return {'done', held[2], held[6]}
end
redis.call('HSET', KEYS[1], 'w', ARGV[3], 'l', lease, 'g', grant)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {grant, held[2], held[6]}
"""
)

_FINISH: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'o', ARGV[1], 'u', ARGV[3])
  redis.call('HDEL', KEYS[1], 'w', 'l', 'g')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_LANE_ENTER: Final = (
    LUA_NOW
    + LUA_KEEP
    + """
local now = now_from(ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1],
           cjson.encode({k = ARGV[2], r = false, x = now + tonumber(ARGV[3]) / 1000}))
keep(KEYS[1], tonumber(ARGV[5]))
return 0
"""
)

_LANE_RECONCILING: Final = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held then
  local member = cjson.decode(held)
  member.r = true
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(member))
end
return 0
"""

_LANE_LEAVE: Final = (
    LUA_NOW
    + LUA_KEEP
    + """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if not held then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  local ghost = cjson.decode(held)
  ghost.r = true
  ghost.x = now_from(ARGV[4]) + tonumber(ARGV[3]) / 1000
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(ghost))
  keep(KEYS[1], tonumber(ARGV[3]))
end
return 0
"""
)

_LANE_OTHERS: Final = (
    LUA_NOW
    + """
local now = now_from(ARGV[2])
local all = redis.call('HGETALL', KEYS[1])
local others = {}
for i = 1, #all, 2 do
  local member = cjson.decode(all[i + 1])
  if member.x <= now then
    redis.call('HDEL', KEYS[1], all[i])
  elseif all[i] ~= ARGV[1] then
    others[#others + 1] = all[i]
    others[#others + 1] = all[i + 1]
  end
end
return others
"""
)

_CLAIM_SID: Final = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] and ARGV[3] == '1' then return holder end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if holder == ARGV[1] then return false end
return holder
"""


class RedisSendLedger:
    """Message ids, lanes and SIDs in Redis; see :class:`ratatosk.ports.SendLedger`.

    ``ttl`` keeps finished ids and claimed SIDs (a day, as in memory);
    ``member_ttl`` must outlast any one send (its deadline plus a reconcile);
    ``ghost_ttl`` is how long an unsettled send keeps others from adopting;
    ``lease`` how long a ``begin`` holds an id (longer than any send takes,
    so only a dead holder loses it).
    """

    __slots__ = (
        "_begin",
        "_claim_sid",
        "_finish",
        "_ghost_ttl",
        "_lane_enter",
        "_lane_leave",
        "_lane_others",
        "_lane_reconciling",
        "_lease",
        "_member_ttl",
        "_now",
        "_prefix",
        "_redis",
        "_ttl",
    )

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        ttl: float = 24 * 3600.0,
        member_ttl: float = 600.0,
        ghost_ttl: float = 300.0,
        lease: float = DEFAULT_SEND_LEASE,
        now: Now = None,
    ) -> None:
        if ttl <= 0 or member_ttl <= 0 or ghost_ttl <= 0 or lease <= 0:
            raise ValueError("ttl, member_ttl, ghost_ttl and lease must be positive")
        self._redis = redis
        self._prefix = check_prefix(prefix)
        self._ttl = ttl
        self._member_ttl = member_ttl
        self._ghost_ttl = ghost_ttl
        self._lease = lease
        self._now = now
        self._begin = redis.register_script(_BEGIN)
        self._finish = redis.register_script(_FINISH)
        self._lane_enter = redis.register_script(_LANE_ENTER)
        self._lane_reconciling = redis.register_script(_LANE_RECONCILING)
        self._lane_leave = redis.register_script(_LANE_LEAVE)
        self._lane_others = redis.register_script(_LANE_OTHERS)
        self._claim_sid = redis.register_script(_CLAIM_SID)

    def __repr__(self) -> str:
        return f"RedisSendLedger(prefix={self._prefix!r}, ttl={self._ttl})"

    def _id(self, message_id: str) -> str:
        return f"{self._prefix}id:{message_id}"

    def _lane(self, lane: str) -> str:
        return f"{self._prefix}lane:{{{lane}}}"

    def _sid(self, sid: str) -> str:
        return f"{self._prefix}sid:{sid}"

    async def begin(
        self,
        message_id: str,
        fingerprint: str,
        *,
        at: dt.datetime | None = None,
        reopen: bool = False,
    ) -> LedgerEntry:
        owner = secrets.token_hex(8)
        args: list[str | int] = [fingerprint, millis(self._ttl), owner]
        args.append(at.isoformat() if at is not None else "")
        args += [now_arg(self._now), millis(self._lease), "1" if reopen else "0"]
        with unavailable("look up a message id"):
            answer = await self._begin(keys=[self._id(message_id)], args=args)
        state = LedgerState(text(answer[0]))
        if state is LedgerState.CONFLICT:
            return LedgerEntry(state=state)
        outcome = json.loads(text(answer[1])) if answer[1] else None
        first = text(answer[2]) if answer[2] else ""
        return LedgerEntry(
            state=state,
            outcome=outcome,
            first_attempt=datetime_from_iso(first) if first else None,
        )

    async def finish(
        self, message_id: str, outcome: Mapping[str, object] | None, *, settled: bool = True
    ) -> None:
        with unavailable("store a send's outcome"):
            if outcome is None:
                await self._redis.delete(self._id(message_id))
                return
            kept = json.dumps(dict(outcome), separators=(",", ":"))
            await self._finish(
                keys=[self._id(message_id)],
                args=[kept, millis(self._ttl), "0" if settled else "1"],
            )

    async def lane_enter(self, lane: str, send: str, key: str) -> None:
        keep = millis(max(self._member_ttl, self._ghost_ttl))
        with unavailable("enter a send in its lane"):
            await self._lane_enter(
                keys=[self._lane(lane)],
                args=[send, key, millis(self._member_ttl), now_arg(self._now), keep],
            )

    async def lane_reconciling(self, lane: str, send: str) -> None:
        with unavailable("mark a send as looking"):
            await self._lane_reconciling(keys=[self._lane(lane)], args=[send])

    async def lane_leave(self, lane: str, send: str, *, settled: bool = True) -> None:
        with unavailable("take a send out of its lane"):
            await self._lane_leave(
                keys=[self._lane(lane)],
                args=[send, "0" if settled else "1", millis(self._ghost_ttl), now_arg(self._now)],
            )

    async def lane_others(self, lane: str, send: str) -> Mapping[str, LaneMember]:
        with unavailable("read a lane"):
            flat = await self._lane_others(keys=[self._lane(lane)], args=[send, now_arg(self._now)])
        members: dict[str, LaneMember] = {}
        for name, value in zip(flat[::2], flat[1::2], strict=True):
            member = json.loads(text(value))
            members[text(name)] = LaneMember(str(member["k"]), reconciling=bool(member["r"]))
        return members

    async def claim_sid(self, sid: str, send: str, *, adopted: bool) -> str | None:
        with unavailable("claim a message SID"):
            holder = await self._claim_sid(
                keys=[self._sid(sid)], args=[send, millis(self._ttl), "1" if adopted else "0"]
            )
        return None if holder is None else text(holder)

    async def claimed(self, sids: Sequence[str]) -> frozenset[str]:
        if not sids:
            return frozenset()
        with unavailable("read claimed SIDs"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for sid in sids:
                    pipe.exists(self._sid(sid))
                found = await pipe.execute()
        return frozenset(sid for sid, hit in zip(sids, found, strict=True) if hit)
