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
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

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
    ``negative_ttl_seconds``, so a typo cannot hammer the API. Next pages are
    followed on the Content API's own origin only, at most ``max_pages``
    (500 templates each); anything else is a TemplateLookupError with details.
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
        max_pages: int = 50,
        monotonic: Callable[[], float] = time.monotonic,
        session: Callable[[], aiohttp.ClientSession] | None = None,
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
        self._max_pages = max_pages
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._now = monotonic
        self._templates: tuple[TemplateInfo, ...] = ()
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()
        # The messaging client's pool when given (one pool per connector), else our own per read.
        self._session = session

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
        origin = _origin(self._base)
        if origin is None:
            raise TemplateLookupError(
                "the Content API base URL must be an absolute http(s) URL without credentials",
                reason="base URL",
            )
        seen: set[str] = set()
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self._session is not None:
                    session = self._session()
                else:
                    session = await stack.enter_async_context(aiohttp.ClientSession())
                while url:
                    seen.add(url)
                    async with session.get(
                        url, headers=self._headers, timeout=self._timeout
                    ) as response:
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
                    url = self._next_page(url, page, origin, seen)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TemplateLookupError(f"Content API unreachable: {type(exc).__name__}") from None
        return tuple(found)

    def _next_page(
        self, url: str, page: Mapping[str, Any], origin: tuple[str, str, int], seen: set[str]
    ) -> str | None:
        """The next page to read, or None; refuses one that would leak or loop.

        The credentials go with every page, so a next page is followed only on
        the Content API's own origin, never twice, and at most ``max_pages`` deep.
        """
        meta = page.get("meta")
        given = meta.get("next_page_url") if isinstance(meta, Mapping) else None
        if not isinstance(given, str) or not given:
            return None
        shown = f"{origin[0]}://{origin[1]}:{origin[2]}"
        following = urljoin(url, given)
        if _origin(following) != origin:
            raise TemplateLookupError(
                "Content API pointed the next page at another origin; not followed",
                reason="next page on another origin",
                origin=shown,
                pages=len(seen),
            )
        if following in seen:
            raise TemplateLookupError(
                "Content API pointed the next page at a page already read",
                reason="next page repeats a page",
                origin=shown,
                pages=len(seen),
            )
        if len(seen) >= self._max_pages:
            raise TemplateLookupError(
                f"Content API has more than {self._max_pages} pages of templates",
                reason="page limit",
                origin=shown,
                pages=len(seen),
                limit=self._max_pages,
            )
        return following


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an absolute http(s) URL without user-info; else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in {"http", "https"} or not parts.hostname or "@" in parts.netloc:
        return None
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _json(raw: bytes) -> Any:
    try:
        return wire.decode_json(raw)
    except wire.WireError:
        return None
