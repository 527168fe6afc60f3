"""Media port: fetching the media Twilio holds for a message, within a policy."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Protocol, runtime_checkable

import attrs

#: The hosts Twilio's media URLs redirect to (its help centre names both): the
#: signed, short-lived CDN for accounts that enforce HTTP auth on media, and the
#: public S3 host of media stored before that.
TWILIO_MEDIA_HOSTS = ("mms.twiliocdn.com", "s3-external-1.amazonaws.com")


def _hosts(hosts: str | Iterable[str]) -> tuple[str, ...]:
    """Lower-cased, blanks dropped; one string is a comma-separated list.

    Raises ValueError for an entry that is not ``host`` or ``host:port`` (a
    URL, say), which would otherwise never match and fail every fetch.
    """
    items = hosts.split(",") if isinstance(hosts, str) else hosts
    cleaned = tuple(h.strip().lower() for h in items if h.strip())
    for host in cleaned:
        if any(c in host for c in "/@?#\\ ") or not host.isprintable():
            raise ValueError(f"allowed_hosts takes host or host:port, not {host!r}")
    return cleaned


@attrs.frozen(kw_only=True)
class MediaPolicy:
    """Where a media fetch may go, and how much it may take.

    ``allowed_hosts`` are the hosts a redirect may lead to, always without
    credentials: a name (any port) or ``host:port`` (that port only). The
    account's credentials go to the configured API origin and nowhere else,
    whatever this list holds. ``timeout`` bounds the whole fetch in seconds,
    from the first request to the last byte; ``max_bytes`` the body.
    """

    allowed_hosts: tuple[str, ...] = attrs.field(default=TWILIO_MEDIA_HOSTS, converter=_hosts)
    max_bytes: int = 16 * 1024 * 1024
    timeout: float = 30.0
    max_redirects: int = 3

    def __attrs_post_init__(self) -> None:
        if self.max_bytes < 1 or not self.timeout > 0 or self.max_redirects < 0:
            raise ValueError("max_bytes and timeout must be positive, max_redirects not negative")


class MediaFailure(enum.Enum):
    """Why a media fetch stopped; the connector turns each into its coded error."""

    URL_NOT_ALLOWED = "url_not_allowed"  #: not a media URL on the configured API origin
    REDIRECT_NOT_ALLOWED = "redirect_not_allowed"  #: to a host off the list, or too many
    TOO_LARGE = "too_large"
    TIMED_OUT = "timed_out"
    FAILED = "failed"  #: an error answer, or the connection failed


class MediaFetchError(Exception):
    """A media fetch refused or failed, before or while the body streams.

    ``details`` are fields a caller may show (never a secret, never a signed
    CDN URL's query).
    """

    def __init__(self, failure: MediaFailure, message: str, **details: Any) -> None:
        super().__init__(message)
        self.failure = failure
        self.details: dict[str, Any] = details


@attrs.frozen(kw_only=True, eq=False)
class OpenedMedia:
    """A media body whose headers have arrived: its raw type and length, and its chunks.

    ``chunks`` may raise :class:`MediaFetchError` (a timeout, a dropped
    connection); ``close`` frees the connection and may be called at any time.
    """

    content_type: str | None
    content_length: int | None
    chunks: AsyncIterator[bytes] = attrs.field(repr=False)
    close: Callable[[], Awaitable[None]] = attrs.field(repr=False)


@runtime_checkable
class MediaFetcher(Protocol):
    """Fetches the media Twilio holds for a message (a transport that can is one of these)."""

    async def open_media(self, url: str, policy: MediaPolicy) -> OpenedMedia:
        """Open ``url`` under ``policy``; raises :class:`MediaFetchError` when refused or failed."""
        ...
