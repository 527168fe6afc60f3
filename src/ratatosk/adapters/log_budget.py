"""A budget of log lines (adapters layer), for lines anyone on the network can provoke.

Its own module, free of any HTTP framework, so the aiohttp start-up and the
framework-neutral webhook core share it.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class LogBudget:
    """At most ``burst`` log lines per ``period`` seconds, the rest counted, not logged.

    A line anyone on the network can provoke (a malformed request, a bad
    signature) must not flood the log; the count keeps the flood visible.
    """

    def __init__(
        self, burst: int, period: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._burst = burst
        self._period = period
        self._now = monotonic
        self._window_start = -period
        self._logged = 0
        self._left_out = 0

    def admit(self) -> list[str] | None:
        """None: count it, do not log it. Otherwise notes to append to the line (maybe none)."""
        now = self._now()
        left_out = 0
        if now - self._window_start >= self._period:
            self._window_start, self._logged = now, 0
            left_out, self._left_out = self._left_out, 0
        if self._logged >= self._burst:
            self._left_out += 1
            return None
        self._logged += 1
        notes = [f"{left_out} more before this were not logged"] if left_out else []
        if self._logged == self._burst:
            notes.append(f"the next ones within {self._period:.0f} s are only counted")
        return notes


__all__ = ["LogBudget"]
