"""What the Redis adapters share: key names, the clock, and one way to fail.

Every script touches exactly one key, so every adapter runs unchanged on
Redis Cluster; keys that one sender or one lane owns carry that name as a
hash tag (``{...}``) all the same, so whatever is added per sender or lane
later lands on the same slot. Time is the server's (``TIME`` inside the
script), so every process books against one clock; tests may pass a
``now`` of their own, and nothing else in these adapters reads a clock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Final

from redis.exceptions import RedisError

from ...ports import StateStoreError

#: What every key starts with unless told otherwise: several applications can share one Redis.
DEFAULT_PREFIX: Final = "ratatosk:"

#: A Lua prelude: the time in seconds, from ARGV (a test's clock) or from the server itself.
LUA_NOW: Final = """
local function now_from(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

#: A Lua helper: keep a key at least ``ms`` milliseconds more, never shorten it.
LUA_KEEP: Final = """
local function keep(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
"""

Now = Callable[[], float] | None


def now_arg(now: Now) -> str:
    """The script argument for the time: empty means the server's own ``TIME``."""
    return "" if now is None else repr(float(now()))


def millis(seconds: float) -> int:
    """A TTL for PX/PEXPIRE: whole milliseconds, at least one."""
    return max(1, round(seconds * 1000))


def text(value: bytes | str) -> str:
    """A reply as text, whether or not the client decodes responses itself."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or "{" in prefix or "}" in prefix:
        raise ValueError("prefix must be a str without { or } (those mark Redis Cluster hash tags)")
    return prefix


@contextlib.contextmanager
def unavailable(what: str) -> Iterator[None]:
    """Turn the client's failures into the port's ``StateStoreError``, once, here."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StateStoreError(f"Redis could not {what}: {type(exc).__name__}: {exc}") from exc
