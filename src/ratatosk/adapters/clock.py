"""Clock adapters (adapters layer): the system clock and a manual clock for tests.

Both satisfy ``ratatosk.ports.Clock``: ``now()`` (aware UTC), ``monotonic()``
and ``sleep()``. :class:`ManualClock` only moves when told to, or when
someone sleeps on it (the sleeper's deadline becomes the time), so tests of
status progression, 24-hour windows, pacing and retry back-off need no real
sleeping and no timing assertions; ``ratatosk.testing`` re-exports it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Final

#: Where a ManualClock starts unless told otherwise: a fixed, unremarkable instant.
DEFAULT_START: Final = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


class SystemClock:
    """The real time, in UTC."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    #: The builtin itself, not a method around it: it is read several times per send.
    monotonic = staticmethod(time.monotonic)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that stands still until :meth:`advance` or :meth:`set` moves it.

    Raises ValueError for a naive datetime or a move backwards, which would
    only hide a mistake in a test.
    """

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = _aware(start or DEFAULT_START)
        self._origin = self._now

    def now(self) -> dt.datetime:
        return self._now

    def monotonic(self) -> float:
        return (self._now - self._origin).total_seconds()

    async def sleep(self, seconds: float) -> None:
        """Move forward by ``seconds`` at once, then let other tasks run.

        Sleepers take turns: each one's wait starts from the time the previous
        one left, as if the waits had happened one after another. Pacing and
        back-off computed from ``now`` stay consistent with that.
        """
        self.advance(max(seconds, 0.0))
        await asyncio.sleep(0)

    def advance(self, seconds: float = 0.0, **delta: float) -> dt.datetime:
        """Move forward by ``seconds`` (plus any ``timedelta`` keywords); returns the new now."""
        step = dt.timedelta(seconds=seconds, **delta)
        if step < dt.timedelta(0):
            raise ValueError("a ManualClock does not go backwards")
        self._now += step
        return self._now

    def set(self, when: dt.datetime) -> None:
        """Jump to ``when`` (not earlier than now)."""
        target = _aware(when)
        if target < self._now:
            raise ValueError("a ManualClock does not go backwards")
        self._now = target

    def __call__(self) -> dt.datetime:
        """So the clock itself can be passed where a ``() -> datetime`` callable is wanted."""
        return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self._now.isoformat()})"


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("clock times must be timezone-aware")
    return value.astimezone(dt.UTC)


__all__ = ["DEFAULT_START", "ManualClock", "SystemClock"]
