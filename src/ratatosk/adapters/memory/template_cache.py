"""Template lookups remembered in one process (satisfies ``ports.TemplateCache``)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from ...ports import TemplateInfo


class InMemoryTemplateCache:
    """(name, language) -> template or a remembered miss, each with its own expiry.

    Bounded: past ``max_entries`` the oldest entry goes first, so a caller
    looking up endless made-up names cannot grow memory.
    """

    __slots__ = ("_entries", "_max", "_now")

    def __init__(self, monotonic: Callable[[], float], *, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._now = monotonic
        self._max = max_entries
        self._entries: OrderedDict[tuple[str, str | None], tuple[float, TemplateInfo | None]] = (
            OrderedDict()
        )

    def __repr__(self) -> str:
        return f"InMemoryTemplateCache(entries={len(self._entries)}/{self._max})"

    async def get(self, name: str, language: str | None) -> tuple[bool, TemplateInfo | None]:
        key = (name, language)
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        expires, info = entry
        if expires <= self._now():
            del self._entries[key]
            return False, None
        return True, info

    async def put(
        self, name: str, language: str | None, info: TemplateInfo | None, ttl: float
    ) -> None:
        key = (name, language)
        self._entries.pop(key, None)
        self._entries[key] = (self._now() + ttl, info)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
