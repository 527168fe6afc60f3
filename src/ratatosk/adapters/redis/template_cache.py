"""Template lookups remembered in Redis (satisfies ``ports.TemplateCache``) for every process.

One key per (name, language), ``template:["name","language"]`` (JSON, so no
name or language can pass for another pair), holding the template as JSON
or ``null`` for a remembered miss, with the TTL given to ``put``.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from ...ports import TemplateInfo
from ._common import DEFAULT_PREFIX, check_prefix, millis, text, unavailable


class RedisTemplateCache:
    """(name, language) -> template or a remembered miss, each expiring on the server."""

    __slots__ = ("_prefix", "_redis")

    def __init__(self, redis: Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._redis = redis
        self._prefix = check_prefix(prefix) + "template:"

    def __repr__(self) -> str:
        return f"RedisTemplateCache(prefix={self._prefix!r})"

    def _key(self, name: str, language: str | None) -> str:
        return self._prefix + json.dumps([name, language], separators=(",", ":"))

    async def get(self, name: str, language: str | None) -> tuple[bool, TemplateInfo | None]:
        with unavailable("read the template cache"):
            held = await self._redis.get(self._key(name, language))
        if held is None:
            return False, None
        info = json.loads(text(held))
        return True, None if info is None else _info(info)

    async def put(
        self, name: str, language: str | None, info: TemplateInfo | None, ttl: float
    ) -> None:
        key = self._key(name, language)
        with unavailable("write the template cache"):
            if ttl <= 0:  # expired at once: remember nothing
                await self._redis.delete(key)
                return
            value = None if info is None else _json(info)
            await self._redis.set(key, json.dumps(value, separators=(",", ":")), px=millis(ttl))


def _json(info: TemplateInfo) -> dict[str, Any]:
    return {
        "sid": info.sid,
        "friendly_name": info.friendly_name,
        "language": info.language,
        "whatsapp_status": info.whatsapp_status,
        "variables": dict(info.variables),
    }


def _info(data: dict[str, Any]) -> TemplateInfo:
    return TemplateInfo(
        sid=data["sid"],
        friendly_name=data["friendly_name"],
        language=data["language"],
        whatsapp_status=data["whatsapp_status"],
        variables=data["variables"],
    )
