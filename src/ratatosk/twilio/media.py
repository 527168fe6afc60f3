"""Fetching the media of inbound messages safely (connector layer).

An inbound media URL (``MediaUrl0``) needs the account's credentials, and
Twilio answers it with a redirect to a CDN. Sending the credentials to
whatever URL a webhook carries, or along a redirect, hands the auth token to
anyone who can put a URL there; so the rules live here, once, for every
transport:

* credentials go only to a media resource on the configured API origin
  (scheme, host and port compared exactly, no user info in the URL);
* a redirect is followed without credentials, only to a host the
  :class:`~ratatosk.ports.MediaPolicy` allows, never from https down to
  http, at most ``max_redirects`` times;
* the body is bounded by ``max_bytes`` (a declared length is refused before
  the body is read) and the fetch by ``timeout``;
* the content type is normalised (``type/subtype``, lower case, no parameters).

The checks are pure and raise the port's :class:`~ratatosk.ports.MediaFetchError`;
the connector turns it into a coded error (``MEDIA_*``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Final, Self
from urllib.parse import urljoin, urlsplit

import attrs

from ..domain.content import MediaContent
from ..domain.result import ConnectorError, ConnectorException, ConnectorResult
from ..ports import MediaFailure, MediaFetcher, MediaFetchError, MediaPolicy, OpenedMedia
from .errors import TwilioErrorCodes, error

#: ``/2010-04-01/Accounts/AC.../Messages/MM.../Media/ME...``, as Twilio puts in ``MediaUrlN``.
MEDIA_PATH: Final = re.compile(
    r"/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/Messages/((?:MM|SM)[0-9a-fA-F]{32})"
    r"/Media/(ME[0-9a-fA-F]{32})"
)
DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"
_TOKEN: Final = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

CODES: Final = {
    MediaFailure.URL_NOT_ALLOWED: TwilioErrorCodes.MEDIA_URL_NOT_ALLOWED,
    MediaFailure.REDIRECT_NOT_ALLOWED: TwilioErrorCodes.MEDIA_REDIRECT_NOT_ALLOWED,
    MediaFailure.TOO_LARGE: TwilioErrorCodes.MEDIA_TOO_LARGE,
    MediaFailure.TIMED_OUT: TwilioErrorCodes.MEDIA_FETCH_TIMEOUT,
    MediaFailure.FAILED: TwilioErrorCodes.MEDIA_FETCH_FAILED,
}

Origin = tuple[str, str, int]


def origin_of(url: str) -> Origin | None:
    """(scheme, host, port), lower-cased with the default port filled in; None if unusable.

    Unusable: not http(s), no host, a bad port, or user info (``user@host``),
    which HTTP clients turn into credentials of their own and which makes a
    URL read as one host while naming another.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    if any(c in parts.netloc for c in "\\ \t\r\n"):
        return None
    return scheme, parts.hostname.lower(), port if port is not None else _DEFAULT_PORTS[scheme]


def shown(url: str) -> str:
    """The URL without its query and fragment: a signed CDN URL's query is a credential."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"[:300]


def check_media_url(url: str, api_base: str) -> tuple[str, str, str]:
    """The (account, message, media) SIDs of a media resource on the API origin, else raise.

    The API origin is the one place the account's credentials may go.
    """
    if not isinstance(url, str) or not url:
        raise MediaFetchError(MediaFailure.URL_NOT_ALLOWED, "the media URL is empty")
    target, api = origin_of(url), origin_of(api_base)
    if target is None or api is None or target != api:
        raise MediaFetchError(
            MediaFailure.URL_NOT_ALLOWED,
            f"{shown(url)} is not on the Twilio API origin ({shown(api_base)}); "
            "the account's credentials are sent nowhere else",
            url=shown(url),
        )
    found = MEDIA_PATH.fullmatch(urlsplit(url.strip()).path)
    if found is not None:
        account_sid, message_sid, media_sid = found.groups()
        return account_sid, message_sid, media_sid
    raise MediaFetchError(
        MediaFailure.URL_NOT_ALLOWED,
        f"{shown(url)} is not a message's media resource "
        "(/2010-04-01/Accounts/AC.../Messages/MM.../Media/ME...)",
        url=shown(url),
    )


def host_allowed(target: Origin, allowed_hosts: tuple[str, ...]) -> bool:
    """``host`` entries allow any port, ``host:port`` entries that port only."""
    _, host, port = target
    shown_host = f"[{host}]" if ":" in host else host
    return host in allowed_hosts or f"{shown_host}:{port}" in allowed_hosts


def follow_redirect(current: str, location: str | None, policy: MediaPolicy, hops: int) -> str:
    """The absolute URL a redirect leads to, or raise when the policy does not allow it.

    ``hops`` counts the redirects already followed.
    """
    if hops >= policy.max_redirects:
        raise MediaFetchError(
            MediaFailure.REDIRECT_NOT_ALLOWED,
            f"more than {policy.max_redirects} redirects",
            redirects=hops + 1,
        )
    if not location:
        raise MediaFetchError(MediaFailure.FAILED, "a redirect without a Location")
    target = urljoin(current, location.strip())
    here, there = origin_of(current), origin_of(target)
    if there is None or here is None:
        raise MediaFetchError(
            MediaFailure.REDIRECT_NOT_ALLOWED,
            f"a redirect to an unusable URL ({shown(target)})",
            url=shown(target),
        )
    if here[0] == "https" and there[0] != "https":
        raise MediaFetchError(
            MediaFailure.REDIRECT_NOT_ALLOWED,
            f"a redirect from https down to http ({shown(target)})",
            url=shown(target),
        )
    if not host_allowed(there, policy.allowed_hosts):
        raise MediaFetchError(
            MediaFailure.REDIRECT_NOT_ALLOWED,
            f"a redirect to {there[1]}, which is not an allowed media host "
            f"({', '.join(policy.allowed_hosts) or 'none'})",
            host=there[1],
            allowed_hosts=list(policy.allowed_hosts),
        )
    return target


def check_length(length: int | None, policy: MediaPolicy) -> None:
    """Refuse a body that declares itself larger than the policy allows, before reading it."""
    if length is not None and length > policy.max_bytes:
        raise too_large(policy, declared=length)


def too_large(policy: MediaPolicy, **details: int) -> MediaFetchError:
    return MediaFetchError(
        MediaFailure.TOO_LARGE,
        f"the media is larger than max_bytes ({policy.max_bytes})",
        max_bytes=policy.max_bytes,
        **details,
    )


def normalise_content_type(value: str | None) -> str:
    """``type/subtype`` in lower case, parameters dropped; anything else is octet-stream."""
    kind, _, subtype = (value or "").partition(";")[0].strip().partition("/")
    if _TOKEN.fullmatch(kind) and _TOKEN.fullmatch(subtype):
        return f"{kind}/{subtype}".lower()
    return DEFAULT_CONTENT_TYPE


def coded(failure: MediaFetchError) -> ConnectorError:
    return error(CODES[failure.failure], str(failure), **failure.details)


@attrs.frozen(kw_only=True)
class MediaFile:
    """A whole media body, read within the policy's limits."""

    content_type: str
    data: bytes = attrs.field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"MediaFile(content_type={self.content_type!r}, size={self.size})"


class MediaStream:
    """A media body as it arrives: ``async for chunk in stream``, or :meth:`read`.

    The byte limit holds while streaming: a body that grows past
    ``max_bytes`` raises :class:`ConnectorException` (``MEDIA_TOO_LARGE``);
    a timeout or a dropped connection raises ``MEDIA_FETCH_TIMEOUT`` or
    ``MEDIA_FETCH_FAILED``. Use it with ``async with`` (or call
    :meth:`aclose`) so its connection is freed when you stop early.
    """

    def __init__(self, opened: OpenedMedia, policy: MediaPolicy) -> None:
        self.content_type: Final = normalise_content_type(opened.content_type)
        self.content_length: Final = opened.content_length
        self._opened = opened
        self._policy = policy
        self._received = 0
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"MediaStream(content_type={self.content_type!r}, "
            f"content_length={self.content_length!r}, received={self._received})"
        )

    @property
    def received(self) -> int:
        """Bytes handed out so far."""
        return self._received

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        if self._closed:
            raise RuntimeError("the media stream is closed")
        try:
            async for chunk in self._opened.chunks:
                self._received += len(chunk)
                if self._received > self._policy.max_bytes:
                    raise too_large(self._policy, received=self._received)
                yield chunk
        except MediaFetchError as failure:
            raise ConnectorException(coded(failure)) from None
        finally:
            await self.aclose()

    async def read(self) -> bytes:
        """The rest of the body at once (within ``max_bytes``)."""
        return b"".join([chunk async for chunk in self])

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._opened.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def media_url(media: MediaContent | str) -> str:
    """The URL of ``media``: an inbound ``MediaContent`` or the ``MediaUrlN`` field itself."""
    if isinstance(media, MediaContent):
        return media.url
    if isinstance(media, str):
        return media
    raise TypeError("fetch_media takes a MediaContent or its URL")


async def open_stream(
    fetcher: MediaFetcher, media: MediaContent | str, policy: MediaPolicy
) -> ConnectorResult[MediaStream]:
    """Open ``media`` through ``fetcher``; refusals before the body are coded failures."""
    try:
        opened = await fetcher.open_media(media_url(media), policy)
    except MediaFetchError as failure:
        return ConnectorResult.failure(coded(failure))
    return ConnectorResult.success(MediaStream(opened, policy))


async def read_whole(
    fetcher: MediaFetcher, media: MediaContent | str, policy: MediaPolicy
) -> ConnectorResult[MediaFile]:
    """The whole body of ``media``, or the coded reason it could not be had."""
    opened = await open_stream(fetcher, media, policy)
    if opened.error is not None:
        return ConnectorResult.failure(opened.error)
    stream = opened.unwrap()
    try:
        data = await stream.read()
    except ConnectorException as exc:
        return ConnectorResult.failure(exc.error)
    return ConnectorResult.success(MediaFile(content_type=stream.content_type, data=data))


__all__ = [
    "MEDIA_PATH",
    "MediaFile",
    "MediaStream",
    "check_length",
    "check_media_url",
    "follow_redirect",
    "host_allowed",
    "normalise_content_type",
    "open_stream",
    "origin_of",
    "read_whole",
]
