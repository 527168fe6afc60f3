"""Messaging API port: Twilio's REST API, as far as the connector sends through it.

Error convention (the httpx split): an *answer* from Twilio, even a 4xx, is a
value (:class:`ApiError`); only a failure to get an answer raises, as a
:class:`TransportError` translated once inside the adapter. ``maybe_delivered``
says whether the request may have reached Twilio, so the connector can
reconcile instead of resending a message twice.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol, runtime_checkable

import attrs

from ..domain.settings import Secret


@attrs.frozen(kw_only=True)
class CreateMessageRequest:
    """The form fields of Twilio's Create Message call, typed.

    ``to_form`` gives the exact key/value pairs sent on the wire (``MediaUrl``
    and ``PersistentAction`` repeated), which is also what the fake records in
    its outbox. ``persistent_action`` carries WhatsApp's rich actions, such as
    a location pin (``geo:LAT,LONG|LABEL``).
    """

    to: str
    from_: str | None = None
    messaging_service_sid: str | None = None
    body: str | None = None
    media_urls: tuple[str, ...] = ()
    persistent_action: tuple[str, ...] = ()
    content_sid: str | None = None
    content_variables: str | None = None
    status_callback: str | None = None
    validity_period: int | None = None

    def to_form(self) -> list[tuple[str, str]]:
        form = [("To", self.to)]
        if self.from_ is not None:
            form.append(("From", self.from_))
        if self.messaging_service_sid is not None:
            form.append(("MessagingServiceSid", self.messaging_service_sid))
        if self.body is not None:
            form.append(("Body", self.body))
        form.extend(("MediaUrl", url) for url in self.media_urls)
        form.extend(("PersistentAction", action) for action in self.persistent_action)
        if self.content_sid is not None:
            form.append(("ContentSid", self.content_sid))
        if self.content_variables is not None:
            form.append(("ContentVariables", self.content_variables))
        if self.status_callback is not None:
            form.append(("StatusCallback", self.status_callback))
        if self.validity_period is not None:
            form.append(("ValidityPeriod", str(self.validity_period)))
        return form


@attrs.frozen(kw_only=True)
class MessageResource:
    """A Twilio Message resource, decoded from its JSON."""

    sid: str
    account_sid: str
    status: str
    to: str
    from_: str | None
    body: str | None = None
    direction: str | None = None
    messaging_service_sid: str | None = None
    num_segments: int | None = None
    num_media: int | None = None
    price: str | None = None
    price_unit: str | None = None
    error_code: int | None = None
    error_message: str | None = None
    date_created: dt.datetime | None = None
    date_sent: dt.datetime | None = None
    date_updated: dt.datetime | None = None
    uri: str | None = None


@attrs.frozen(kw_only=True)
class MessagePage:
    """One page of a message list; ``next_page_uri`` is None on the last page."""

    messages: tuple[MessageResource, ...]
    next_page_uri: str | None = None


@attrs.frozen(kw_only=True)
class MessageQuery:
    """Filters of Twilio's List Messages call, as used to reconcile a lost answer."""

    to: str | None = None
    from_: str | None = None
    date_sent_after: dt.date | None = None
    page_size: int = 50


@attrs.frozen(kw_only=True)
class AccountResource:
    sid: str
    friendly_name: str | None = None
    status: str | None = None
    type: str | None = None


@attrs.frozen(kw_only=True)
class ApiError:
    """Twilio answered with an error: HTTP status, Twilio code, message, docs link.

    ``retry_after`` is the parsed ``Retry-After`` header in seconds, if any.
    """

    status: int
    code: int | None
    message: str
    more_info: str | None = None
    retry_after: float | None = None


class TransportError(Exception):
    """No usable answer from Twilio (connection, timeout, garbage).

    ``maybe_delivered`` is False only when the request certainly did not reach
    Twilio (connect refused, connect timeout, DNS), and True when it might have
    (read timeout, connection dropped after sending, 5xx without a body).
    """

    def __init__(self, message: str, *, maybe_delivered: bool) -> None:
        super().__init__(message)
        self.maybe_delivered = maybe_delivered


@runtime_checkable
class MessagingApi(Protocol):
    """Twilio's Programmable Messaging REST API, as far as this package uses it."""

    async def create_message(self, request: CreateMessageRequest) -> MessageResource | ApiError:
        """Create (send) a message. Raises :class:`TransportError` when no answer came."""
        ...

    async def fetch_message(self, sid: str) -> MessageResource | ApiError: ...

    async def list_messages(self, query: MessageQuery) -> MessagePage | ApiError: ...

    async def fetch_account(self) -> AccountResource | ApiError: ...

    async def close(self) -> None: ...


@runtime_checkable
class HasRequestTimeout(Protocol):
    """A transport whose every call ends, answered or failed, within ``request_timeout``.

    The send's deadline needs no timer of its own around a call that the
    transport already bounds more tightly (``send.call.CallTwilio``).
    """

    @property
    def request_timeout(self) -> float: ...


@attrs.frozen
class Credentials:
    """Account SID and auth token, as adapters need them; the token stays a Secret."""

    account_sid: str
    auth_token: Secret
