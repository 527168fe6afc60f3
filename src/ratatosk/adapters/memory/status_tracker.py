"""Status timelines in one process (satisfies ``ports.StatusTracker``)."""

from __future__ import annotations

from collections import OrderedDict

from ...ports import StatusEvent, StatusTimeline
from ...twilio.tracking import merge


class InMemoryStatusTracker:
    """The newest ``max_messages`` timelines, least recently reported dropped first.

    A dropped timeline only means a very old message's next callback starts a
    new one; its ranks still apply from there.
    """

    __slots__ = ("_max", "_timelines")

    def __init__(self, *, max_messages: int = 100_000) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self._max = max_messages
        self._timelines: OrderedDict[str, StatusTimeline] = OrderedDict()

    def __repr__(self) -> str:
        return f"InMemoryStatusTracker(messages={len(self._timelines)}/{self._max})"

    async def apply(self, sid: str, event: StatusEvent) -> StatusTimeline:
        timeline = merge(sid, self._timelines.pop(sid, None), event)
        self._timelines[sid] = timeline
        while len(self._timelines) > self._max:
            self._timelines.popitem(last=False)
        return timeline

    async def timeline(self, sid: str) -> StatusTimeline | None:
        return self._timelines.get(sid)
