"""Template catalogs: friendly name -> Content SID (adapters layer).

``StaticTemplateCatalog`` is a fixed mapping (from code or the
``Templates`` setting). ``ContentApiTemplateCatalog`` asks Twilio's Content
API (``/v1/ContentAndApprovals``) for templates, their WhatsApp approval
status and declared variables, and caches the answer for a TTL so a send does
not cost an extra round trip.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import aiohttp

from ..domain.settings import ConnectionSettings, Secret
from ..ports import TemplateInfo, TemplateLookupError
from ..twilio import wire
from ..twilio.schema import DEFAULT_CONTENT_BASE_URL


class StaticTemplateCatalog:
    """A fixed catalog; approval status is unknown, so it is trusted."""

    def __init__(self, templates: Mapping[str, str | TemplateInfo]) -> None:
        self._by_name: dict[str, TemplateInfo] = {}
        for name, value in templates.items():
            info = (
                value
                if isinstance(value, TemplateInfo)
                else TemplateInfo(sid=value, friendly_name=name)
            )
            self._by_name[name] = info

    @classmethod
    def parse(cls, text: str) -> StaticTemplateCatalog:
        """From ``name=HX...,other=HX...`` (the ``Templates`` setting / env form)."""
        pairs = (item.split("=", 1) for item in text.split(",") if "=" in item)
        return cls({name.strip(): sid.strip() for name, sid in pairs})

    async def find(self, name: str, language: str | None = None) -> TemplateInfo | None:
        info = self._by_name.get(name)
        if info is None or (language and info.language and info.language != language):
            return None
        return info

    async def list(self) -> Sequence[TemplateInfo]:
        return tuple(self._by_name.values())


def content_base_url(settings: ConnectionSettings) -> str:
    """``ContentApiBaseUrl``, else the one that goes with ``ApiBaseUrl`` (see below)."""
    given = settings.get_string("ContentApiBaseUrl")
    return given or content_base_for(settings.get_string("ApiBaseUrl"))


def content_base_for(api_base_url: str | None) -> str:
    """Twilio's Content API for Twilio's REST API; any other API base (an emulator) serves both.

    So a client pointed at an emulator never reaches out to the real Content API.
    """
    if api_base_url is None or api_base_url.rstrip("/") == "https://api.twilio.com":
        return DEFAULT_CONTENT_BASE_URL
    return api_base_url


class ContentApiTemplateCatalog:
    """Templates from Twilio's Content API, cached for ``ttl_seconds``.

    A cache miss for an unknown name refreshes at most once per
    ``negative_ttl_seconds``, so a typo cannot hammer the API.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: Secret | str,
        *,
        base_url: str = DEFAULT_CONTENT_BASE_URL,
        ttl_seconds: float = 300.0,
        negative_ttl_seconds: float = 10.0,
        timeout: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        token = auth_token if isinstance(auth_token, Secret) else Secret(auth_token)
        raw = f"{account_sid}:{token.reveal()}".encode(errors="replace")  # as twilio_http
        self._headers = {
            "Authorization": "Basic " + base64.b64encode(raw).decode("ascii"),
            "Accept": "application/json",
        }
        self._base = base_url.rstrip("/")
        self._ttl = ttl_seconds
        self._negative_ttl = negative_ttl_seconds
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._now = monotonic
        self._templates: tuple[TemplateInfo, ...] = ()
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: ConnectionSettings) -> ContentApiTemplateCatalog:
        account_sid, token = settings.get_string("AccountSid"), settings.get_secret("AuthToken")
        if account_sid is None or token is None:
            raise ValueError("AccountSid and AuthToken are required")
        return cls(account_sid, token, base_url=content_base_url(settings))

    def __repr__(self) -> str:
        return f"ContentApiTemplateCatalog(base_url={self._base!r})"

    async def find(self, name: str, language: str | None = None) -> TemplateInfo | None:
        found = wire.choose_template(await self._load(), name, language)
        if found is None and self._age() > self._negative_ttl:
            found = wire.choose_template(await self._load(force=True), name, language)
        return found

    async def list(self) -> Sequence[TemplateInfo]:
        return await self._load()

    def _age(self) -> float:
        return float("inf") if self._loaded_at is None else self._now() - self._loaded_at

    async def _load(self, *, force: bool = False) -> tuple[TemplateInfo, ...]:
        async with self._lock:
            if not force and self._age() < self._ttl:
                return self._templates
            self._templates = await self._fetch_all()
            self._loaded_at = self._now()
            return self._templates

    async def _fetch_all(self) -> tuple[TemplateInfo, ...]:
        found: list[TemplateInfo] = []
        url: str | None = f"{self._base}/v1/ContentAndApprovals?{urlencode({'PageSize': 500})}"
        try:
            async with aiohttp.ClientSession(timeout=self._timeout) as session:
                while url:
                    async with session.get(url, headers=self._headers) as response:
                        raw = await response.read()
                        if response.status != 200:
                            error = wire.decode_api_error(response.status, _json(raw))
                            raise TemplateLookupError(
                                f"Content API said {error.status}: {error.message}"
                            )
                    page = _json(raw)
                    if not isinstance(page, Mapping) or not isinstance(page.get("contents"), list):
                        raise TemplateLookupError("Content API answered an unexpected shape")
                    found.extend(
                        i for i in map(wire.decode_template, page["contents"]) if i is not None
                    )
                    meta = page.get("meta")
                    next_url = meta.get("next_page_url") if isinstance(meta, Mapping) else None
                    url = next_url if isinstance(next_url, str) and next_url else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TemplateLookupError(f"Content API unreachable: {type(exc).__name__}") from None
        return tuple(found)


def _json(raw: bytes) -> Any:
    try:
        return wire.decode_json(raw)
    except wire.WireError:
        return None
