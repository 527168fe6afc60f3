"""The real Twilio REST adapter: aiohttp on API v2010 (adapters layer).

Speaks exactly what the OpenAPI contract describes: HTTP Basic auth,
form-encoded requests with ``MediaUrl`` repeated, JSON answers. One pooled
``ClientSession`` per adapter, created on first use inside the running loop.
Library exceptions are translated here, once, into the port's
``TransportError`` with ``maybe_delivered`` set by the phase that failed:
a connect failure never reached Twilio; a read failure may have.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import math
from typing import Any, Final, Self
from urllib.parse import quote, urlencode

import aiohttp
import attrs

from .. import __version__
from ..domain.settings import ConnectionSettings, Secret
from ..ports import (
    AccountResource,
    ApiError,
    CreateMessageRequest,
    MediaPolicy,
    MessagePage,
    MessageQuery,
    MessageResource,
    OpenedMedia,
    TransportError,
)
from ..twilio import wire
from ..twilio.schema import DEFAULT_API_BASE_URL
from . import media_http
from .http11 import Http11Client, HttpError
from .templates import ContentApiTemplateCatalog, content_base_for, content_base_url

log = logging.getLogger("ratatosk.http")

USER_AGENT: Final = f"ratatosk-twilio/{__version__}"
_FORM: Final = "application/x-www-form-urlencoded"


@attrs.frozen(kw_only=True)
class HttpTimeouts:
    """Connect, read and whole-request deadlines, in seconds."""

    connect: float = 5.0
    read: float = 15.0
    total: float = 30.0

    def client_timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=self.total, sock_connect=self.connect, sock_read=self.read
        )


def _seconds(text: str | None, default: float) -> float:
    """A positive, finite number of seconds, else ``default``.

    Never raises: the connector is built before ``initialize`` validates the
    settings, and it is ``initialize`` that reports a bad value, with its code.
    """
    try:
        value = float(text) if text else default
    except ValueError:
        return default
    return value if math.isfinite(value) and value > 0 else default


class TwilioRestApi:
    """What every ``MessagingApi`` over Twilio's REST API shares, whatever carries the bytes.

    The paths, the Basic credentials built once, the settings, and the
    translation of answers (the wire codec and Twilio's error JSON); a
    subclass only moves bytes (``_exchange``) and maps its own failures to
    ``TransportError``.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: Secret | str,
        *,
        base_url: str = DEFAULT_API_BASE_URL,
        timeouts: HttpTimeouts | None = None,
        max_connections: int = 100,
        content_base_url: str | None = None,
    ) -> None:
        token = auth_token if isinstance(auth_token, Secret) else Secret(auth_token)
        self._token = token
        self._content_base_url = content_base_url or content_base_for(base_url)
        self.account_sid: Final = account_sid
        self.base_url: Final = base_url.rstrip("/")
        self._timeouts = timeouts or HttpTimeouts()
        self._max_connections = max_connections
        # A lone surrogate cannot be sent; replaced, it makes a 401 instead of a crash here.
        credentials = f"{account_sid}:{token.reveal()}".encode(errors="replace")
        self._headers: Final = {
            "Authorization": "Basic " + base64.b64encode(credentials).decode("ascii"),
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            "Accept-Charset": "utf-8",
        }
        sid_path = quote(account_sid, safe="", errors="replace")
        account = f"/2010-04-01/Accounts/{sid_path}"
        self._account_path: Final = account + ".json"
        self._messages_path: Final = account + "/Messages.json"
        self._message_path: Final = account + "/Messages/{}.json"

    @classmethod
    def from_settings(cls, settings: ConnectionSettings) -> Self:
        """Built from AccountSid, AuthToken, ApiBaseUrl and the optional Http*Timeout settings."""
        account_sid = settings.get_string("AccountSid")
        token = settings.get_secret("AuthToken")
        if account_sid is None or token is None:
            raise ValueError("AccountSid and AuthToken are required")
        defaults = HttpTimeouts()
        timeouts = HttpTimeouts(
            connect=_seconds(settings.get_string("HttpConnectTimeout"), defaults.connect),
            read=_seconds(settings.get_string("HttpReadTimeout"), defaults.read),
            total=_seconds(settings.get_string("HttpTotalTimeout"), defaults.total),
        )
        return cls(
            account_sid,
            token,
            base_url=settings.get_string("ApiBaseUrl") or DEFAULT_API_BASE_URL,
            timeouts=timeouts,
            content_base_url=content_base_url(settings),
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(account_sid={self.account_sid!r}, base_url={self.base_url!r})"
        )

    async def _exchange(
        self, method: str, path: str, data: bytes | None
    ) -> tuple[int, bytes, str | None]:
        """Status, body and (for a refusal) Retry-After; failures as ``TransportError``."""
        raise NotImplementedError

    async def _call(
        self, method: str, path: str, *, data: bytes | None = None
    ) -> tuple[int, Any, str | None]:
        status, raw, retry_after = await self._exchange(method, path, data)
        if log.isEnabledFor(logging.DEBUG):  # the URL carries no secret; headers are not logged
            log.debug("%s %s%s -> %d (%d bytes)", method, self.base_url, path, status, len(raw))
        body: Any = None
        if raw:
            try:
                body = wire.decode_json(raw)
            except wire.WireError:
                body = None
        return status, body, retry_after

    @staticmethod
    def _decode(status: int, body: Any, retry_after: str | None, decode: Any) -> Any:
        if 200 <= status < 300:
            try:
                return decode(body)
            except wire.WireError as exc:
                raise TransportError(
                    f"unreadable answer from Twilio: {exc}", maybe_delivered=True
                ) from None
        return wire.decode_api_error(status, body, retry_after)

    async def create_message(self, request: CreateMessageRequest) -> MessageResource | ApiError:
        data = wire.encode_form(request.to_form()).encode("ascii")  # urlencode, faster
        status, body, retry_after = await self._call("POST", self._messages_path, data=data)
        result: MessageResource | ApiError = self._decode(
            status, body, retry_after, wire.decode_message
        )
        return result

    async def fetch_message(self, sid: str) -> MessageResource | ApiError:
        path = self._message_path.format(quote(sid, safe=""))
        status, body, retry_after = await self._call("GET", path)
        result: MessageResource | ApiError = self._decode(
            status, body, retry_after, wire.decode_message
        )
        return result

    async def list_messages(self, query: MessageQuery) -> MessagePage | ApiError:
        params: list[tuple[str, str]] = [("PageSize", str(query.page_size))]
        if query.to is not None:
            params.append(("To", query.to))
        if query.from_ is not None:
            params.append(("From", query.from_))
        if query.date_sent_after is not None:
            day = query.date_sent_after
            if isinstance(day, dt.datetime):
                day = day.astimezone(dt.UTC).date()
            params.append(("DateSent>", day.isoformat()))
        path = f"{self._messages_path}?{urlencode(params)}"
        status, body, retry_after = await self._call("GET", path)
        result: MessagePage | ApiError = self._decode(
            status, body, retry_after, wire.decode_message_page
        )
        return result

    async def fetch_account(self) -> AccountResource | ApiError:
        status, body, retry_after = await self._call("GET", self._account_path)
        result: AccountResource | ApiError = self._decode(
            status, body, retry_after, wire.decode_account
        )
        return result


class AiohttpMessagingApi(TwilioRestApi):
    """``MessagingApi`` over Twilio's REST API (or the emulator at ``base_url``), on aiohttp."""

    def __init__(
        self,
        account_sid: str,
        auth_token: Secret | str,
        *,
        base_url: str = DEFAULT_API_BASE_URL,
        timeouts: HttpTimeouts | None = None,
        max_connections: int = 100,
        session: aiohttp.ClientSession | None = None,
        content_base_url: str | None = None,
    ) -> None:
        super().__init__(
            account_sid,
            auth_token,
            base_url=base_url,
            timeouts=timeouts,
            max_connections=max_connections,
            content_base_url=content_base_url,
        )
        self._session = session
        self._owns_session = session is None
        self._plain_session: aiohttp.ClientSession | None = None
        self._post_headers: Final = {**self._headers, "Content-Type": _FORM}

    @property
    def request_timeout(self) -> float:
        """The longest one call can take (``ports.HasRequestTimeout``): the total timeout.

        One second more, because aiohttp rounds a deadline of 5 s or more up to
        the next whole second. A caller's session is bounded by its own total,
        if it has one.
        """
        total = self._session.timeout.total if self._session is not None else self._timeouts.total
        return math.inf if total is None or total <= 0 else total + 1.0

    def template_catalog(self) -> ContentApiTemplateCatalog:
        """The account's Content API templates, read with this client's credentials and pool."""
        return ContentApiTemplateCatalog(
            self.account_sid, self._token, base_url=self._content_base_url, session=self._client
        )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeouts.client_timeout(), raise_for_status=False
            )
            self._owns_session = True
        return self._session

    async def _exchange(
        self, method: str, path: str, data: bytes | None
    ) -> tuple[int, bytes, str | None]:
        headers = self._post_headers if data is not None else self._headers
        url = self.base_url + path
        try:
            async with self._client().request(method, url, data=data, headers=headers) as response:
                raw = await response.read()
                status = response.status
                # Read only where it is used: the error of a refused call.
                retry_after = None if 200 <= status < 300 else response.headers.get("Retry-After")
        except aiohttp.ClientConnectorError as exc:
            raise TransportError(
                f"cannot connect to {self.base_url}: {exc.strerror or exc}", maybe_delivered=False
            ) from None
        except aiohttp.ConnectionTimeoutError:
            raise TransportError(
                f"connect timeout to {self.base_url}", maybe_delivered=False
            ) from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise TransportError("Twilio did not answer in time", maybe_delivered=True) from None
        except aiohttp.ClientError as exc:
            raise TransportError(
                f"connection failed mid-request: {type(exc).__name__}", maybe_delivered=True
            ) from None
        return status, raw, retry_after

    async def open_media(self, url: str, policy: MediaPolicy) -> OpenedMedia:
        """The ``MediaFetcher`` port: credentials to this client's API origin only, then the CDN."""
        session = self._client()
        plain = session
        if not media_http.carries_no_credentials(session):  # a caller's session with defaults
            if self._plain_session is None or self._plain_session.closed:
                self._plain_session = aiohttp.ClientSession(raise_for_status=False)
            plain = self._plain_session
        return await media_http.open_media(
            url,
            policy,
            api_base=self.base_url,
            authorization=self._headers["Authorization"],
            user_agent=USER_AGENT,
            session=session,
            plain_session=plain,
            connect_timeout=self._timeouts.connect,
        )

    async def close(self) -> None:
        if self._plain_session is not None and not self._plain_session.closed:
            await self._plain_session.close()
        if self._session is not None and self._owns_session and not self._session.closed:
            await self._session.close()
            # Let the connector's transports finish closing (no ResourceWarning).
            await asyncio.sleep(0)


class Http11MessagingApi(TwilioRestApi):
    """``MessagingApi`` over Twilio's REST API on this package's own HTTP/1.1 client.

    The same calls, answers and errors as :class:`AiohttpMessagingApi` for
    about a fifth of the client CPU per send (``http11``, ADR 0026). The
    Content API catalog and media downloads, which follow other origins and
    redirects, stay on an :class:`AiohttpMessagingApi` opened on first use.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: Secret | str,
        *,
        base_url: str = DEFAULT_API_BASE_URL,
        timeouts: HttpTimeouts | None = None,
        max_connections: int = 100,
        content_base_url: str | None = None,
    ) -> None:
        super().__init__(
            account_sid,
            auth_token,
            base_url=base_url,
            timeouts=timeouts,
            max_connections=max_connections,
            content_base_url=content_base_url,
        )
        self._http = Http11Client(
            self.base_url,
            headers=self._headers,
            connect=self._timeouts.connect,
            read=self._timeouts.read,
            total=self._timeouts.total,
            max_connections=max_connections,
        )
        self._aiohttp: AiohttpMessagingApi | None = None

    @property
    def request_timeout(self) -> float:
        """The longest one call can take (``ports.HasRequestTimeout``): the total, exactly."""
        return self._timeouts.total

    def _companion(self) -> AiohttpMessagingApi:
        """The aiohttp client for the Content API and media, opened on first use."""
        if self._aiohttp is None:
            self._aiohttp = AiohttpMessagingApi(
                self.account_sid,
                self._token,
                base_url=self.base_url,
                timeouts=self._timeouts,
                max_connections=self._max_connections,
                content_base_url=self._content_base_url,
            )
        return self._aiohttp

    def template_catalog(self) -> ContentApiTemplateCatalog:
        """The account's Content API templates, read with these credentials (aiohttp's pool)."""
        return self._companion().template_catalog()

    async def _exchange(
        self, method: str, path: str, data: bytes | None
    ) -> tuple[int, bytes, str | None]:
        try:
            response = await self._http.request(method, path, data, content_type=_FORM)
        except HttpError as exc:
            if not exc.sent:
                message = str(exc).replace(self._http.origin, self.base_url)
                raise TransportError(message, maybe_delivered=False) from None
            if exc.timeout:
                raise TransportError(
                    "Twilio did not answer in time", maybe_delivered=True
                ) from None
            raise TransportError(str(exc), maybe_delivered=True) from None
        status = response.status
        retry_after = None if 200 <= status < 300 else response.headers.get("retry-after")
        return status, response.body, retry_after

    async def open_media(self, url: str, policy: MediaPolicy) -> OpenedMedia:
        """The ``MediaFetcher`` port, on aiohttp: media follow redirects to Twilio's CDN."""
        return await self._companion().open_media(url, policy)

    async def close(self) -> None:
        await self._http.close()
        if self._aiohttp is not None:
            await self._aiohttp.close()
