"""Clock port: the time the connector reads and waits on, and a transport that keeps its own."""

from __future__ import annotations

import datetime as dt
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Time, as the connector reads it and waits on it.

    Waiting goes through the clock, not ``asyncio.sleep``, so a simulated
    Twilio's manual clock makes back-off and pacing instant in tests, and the
    same code paces real sends on the system clock.
    """

    def now(self) -> dt.datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for pacing and deadlines)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock (a manual clock moves itself forward)."""
        ...


@runtime_checkable
class HasClock(Protocol):
    """A transport that simulates Twilio and keeps its own time (``FakeTwilio``).

    A connector given such a transport and no clock of its own uses this one,
    so a test with the fake never waits on real time unless it asks to.
    """

    @property
    def clock(self) -> Clock: ...
