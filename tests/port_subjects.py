"""What a port contract suite runs its cases on: an adapter maker and the time it lives in.

One suite runs unchanged on the in-memory adapter (a manual monotonic clock)
and the Redis one (``redis_support.RedisTimeMachine``); each case asks its
``Subject`` for an adapter, moves time with ``advance`` and never sleeps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs


class ManualMonotonic:
    """A monotonic clock for in-memory adapters that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        self.now += seconds


async def _nothing() -> None:
    return None


@attrs.frozen
class Subject:
    make: Callable[..., Any]
    advance: Callable[[float], Awaitable[None]]
    close: Callable[[], Awaitable[None]] = _nothing
