"""Inbound media over HTTP: Twilio's media URL, then its CDN (adapters layer).

The ``MediaFetcher`` port for :class:`~ratatosk.adapters.twilio_http.AiohttpMessagingApi`.
The rules are ``ratatosk.twilio.media``'s; this module only moves bytes under
them. Redirects are followed here, one hop at a time (``allow_redirects=False``),
because aiohttp's own following decides for itself where an ``Authorization``
header goes. The first request, and only it, carries the credentials; every
URL is requested as the rules parsed it (the origin yarl sees is checked
against it), so a URL that two parsers read differently is refused rather
than sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

import aiohttp
from yarl import URL

from ..ports import MediaFailure, MediaFetchError, MediaPolicy, OpenedMedia
from ..twilio import wire
from ..twilio.media import check_length, check_media_url, follow_redirect, origin_of, shown

log = logging.getLogger("ratatosk.http")

_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
#: Enough of an error answer to read Twilio's code from it.
_ERROR_SNIPPET: Final = 8 * 1024
_CHUNK: Final = 64 * 1024


def _same_origin_for_yarl(url: str) -> URL:
    """The URL as aiohttp will request it, refused unless yarl reads the origin we checked."""
    try:
        parsed = URL(url.strip())
    except (ValueError, TypeError):
        parsed = None
    expected = origin_of(url)
    if parsed is None or expected is None or parsed.user is not None or parsed.password:
        raise MediaFetchError(MediaFailure.URL_NOT_ALLOWED, f"{shown(url)} is not a usable URL")
    seen = ((parsed.scheme or "").lower(), (parsed.host or "").lower(), parsed.port)
    if seen != expected:
        raise MediaFetchError(
            MediaFailure.URL_NOT_ALLOWED, f"{shown(url)} reads as two different origins"
        )
    return parsed


def carries_no_credentials(session: aiohttp.ClientSession) -> bool:
    """Whether a request without ``auth`` sends no credentials through this session.

    A session with default ``auth``, a default ``Authorization`` header or
    ``trust_env`` (credentials from ``.netrc``) would add them to the CDN hop.
    """
    return session.auth is None and not session.trust_env and "Authorization" not in session.headers


async def open_media(
    url: str,
    policy: MediaPolicy,
    *,
    api_base: str,
    authorization: str,
    user_agent: str,
    session: aiohttp.ClientSession,
    plain_session: aiohttp.ClientSession,
    connect_timeout: float,
) -> OpenedMedia:
    """Open a media URL under ``policy``: credentials on the first hop only, then the CDN.

    ``session`` makes the first request (to the API origin, with
    ``authorization``); ``plain_session`` every redirect hop, and must carry
    no credentials of its own (:func:`carries_no_credentials`).
    """
    check_media_url(url, api_base)
    deadline = asyncio.get_running_loop().time() + policy.timeout
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)
    current, hops = url, 0
    while True:
        headers = {"User-Agent": user_agent, "Accept": "*/*"}
        client = plain_session
        if hops == 0:
            headers["Authorization"] = authorization
            client = session
        target = _same_origin_for_yarl(current)
        try:
            async with asyncio.timeout_at(deadline):
                response = await client.get(
                    target, headers=headers, allow_redirects=False, timeout=timeout
                )
        except TimeoutError:
            raise _timeout(policy, current) from None
        except aiohttp.ClientError as exc:
            raise MediaFetchError(
                MediaFailure.FAILED, f"cannot fetch {shown(current)}: {type(exc).__name__}"
            ) from None
        if log.isEnabledFor(logging.DEBUG):  # no query: a signed CDN URL's query is a credential
            log.debug("media GET %s -> %d", shown(current), response.status)
        if response.status in _REDIRECTS:
            location = response.headers.get("Location")
            response.close()
            current = follow_redirect(current, location, policy, hops)
            hops += 1
            continue
        if response.status != 200:
            raise await _refusal(response, current, deadline)
        try:
            check_length(response.content_length, policy)
        except MediaFetchError:
            response.close()
            raise
        return OpenedMedia(
            content_type=response.headers.get("Content-Type"),
            content_length=response.content_length,
            chunks=_chunks(response, policy, current, deadline),
            close=_closer(response),
        )


def _timeout(policy: MediaPolicy, url: str) -> MediaFetchError:
    return MediaFetchError(
        MediaFailure.TIMED_OUT,
        f"{shown(url)} did not deliver the media within {policy.timeout:g} s",
        timeout=policy.timeout,
    )


async def _refusal(response: aiohttp.ClientResponse, url: str, deadline: float) -> MediaFetchError:
    """An error answer as a failure, with Twilio's own code when its JSON says one."""
    provider_code: int | None = None
    try:
        async with asyncio.timeout_at(deadline):
            raw = await response.content.read(_ERROR_SNIPPET)
        body = wire.decode_json(raw) if raw else None
        code = body.get("code") if isinstance(body, dict) else None
        provider_code = code if isinstance(code, int) and not isinstance(code, bool) else None
    except (TimeoutError, aiohttp.ClientError, wire.WireError):
        pass
    finally:
        response.close()
    hint = " (check the account SID and auth token)" if response.status in (401, 403) else ""
    if response.status == 404:
        hint = " (Twilio may answer 404 for a few seconds after the webhook: try again)"
    return MediaFetchError(
        MediaFailure.FAILED,
        f"{shown(url)} answered HTTP {response.status}{hint}",
        http_status=response.status,
        provider_code=provider_code,
    )


async def _chunks(
    response: aiohttp.ClientResponse, policy: MediaPolicy, url: str, deadline: float
) -> AsyncIterator[bytes]:
    complete = False
    try:
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await response.content.read(_CHUNK)
            except TimeoutError:
                raise _timeout(policy, url) from None
            except aiohttp.ClientError as exc:
                raise MediaFetchError(
                    MediaFailure.FAILED,
                    f"the media from {shown(url)} broke off: {type(exc).__name__}",
                ) from None
            if not chunk:
                complete = True
                return
            yield chunk
    finally:
        if complete:
            response.release()
        else:
            response.close()


def _closer(response: aiohttp.ClientResponse) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        response.close()

    return close


__all__ = ["carries_no_credentials", "open_media"]
