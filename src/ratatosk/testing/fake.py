"""FakeTwilio: Twilio's Messages and Content APIs in process, for tests (testing layer).

:class:`FakeTwilio` implements the ``MessagingApi`` port in process over the
*same* behaviour model the HTTP emulator serves
(:class:`ratatosk.emulator.model.TwilioModel`): it sends the exact form the
HTTP adapter would, and decodes the model's JSON with the same wire codec, so
a test that passes against the fake passes against the emulator. Pass it as
``transport=`` to ``TwilioWhatsAppConnector``.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode, urlsplit

import attrs

from ..adapters.clock import ManualClock
from ..emulator.model import (
    API_BASE,
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    MEDIA_CDN_BASE,
    InboundMedia,
    Location,
    Reply,
    StatusCallback,
    TwilioModel,
)
from ..ports import (
    AccountResource,
    ApiError,
    CreateMessageRequest,
    MediaFailure,
    MediaFetcher,
    MediaFetchError,
    MediaPolicy,
    MessagePage,
    MessageQuery,
    MessageResource,
    MessagingApi,
    OpenedMedia,
    TemplateCatalog,
    TemplateInfo,
    TemplateLookupError,
    TransportError,
)
from ..twilio import wire
from ..twilio.media import check_length, check_media_url, follow_redirect, origin_of
from ..twilio.signature import compute_signature

T = TypeVar("T")


def _first_values(form: Sequence[tuple[str, str]]) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in form:
        params.setdefault(key, value)
    return params


@attrs.frozen(kw_only=True)
class OutboxRecord:
    """One message the fake stored: its SID and the exact form that created it.

    ``params`` has one string per field (the first, for repeated keys such as
    ``MediaUrl``); ``form`` keeps every pair in order; ``media_urls`` all media.
    """

    sid: str
    form: tuple[tuple[str, str], ...]
    params: Mapping[str, str]
    media_urls: tuple[str, ...]


class FailureScope:
    """What :meth:`FakeTwilio.fail_all` returns: leaving a ``with`` block ends the failures."""

    def __init__(self, clear: Callable[[], None]) -> None:
        self._clear = clear

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        self._clear()


class FakeTwilio:
    """In-memory Twilio for tests: the ``MessagingApi`` port over the shared model.

    Same validation and error codes as Twilio (answers are ``ApiError``
    values), SM/MM SIDs, an :attr:`outbox` to assert on, scripted failures
    (:meth:`fail_next`, :meth:`reset_next`), forced statuses
    (:meth:`set_status`) and a :class:`ManualClock` that moves statuses along
    (:meth:`advance`). ``model_options`` go to :class:`TwilioModel` (for
    example ``enforce_window=True`` or ``failing_recipients={...}``).

    SIDs come from a random source seeded per instance, so two fakes (or a
    fake and an emulator) never hand out the same MessageSid: a webhook
    server that saw one fake's messages would otherwise take another's for
    repeated deliveries. ``seed=`` makes one fake's SIDs repeatable
    (``FakeTwilio(seed=1)`` issues the same SIDs in the same order on every
    run); give different fakes of one test different seeds.
    """

    def __init__(
        self,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        *,
        clock: ManualClock | None = None,
        model: TwilioModel | None = None,
        seed: int | None = None,
        **model_options: Any,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.clock = clock or ManualClock()
        if model is None:
            model = TwilioModel(
                account_sid,
                auth_token,
                clock=self.clock.now,
                rng=random.Random(seed),
                **model_options,
            )
        elif model.account(account_sid) is None:
            model.add_account(account_sid, auth_token)
        self.model = model
        self.closed = False

    def __repr__(self) -> str:
        return f"FakeTwilio(account_sid={self.account_sid!r}, auth_token='********')"

    # --- the MessagingApi port -------------------------------------------------------

    async def create_message(self, request: CreateMessageRequest) -> MessageResource | ApiError:
        """Create a message; raises TransportError when a reset fault is scripted or drawn."""
        return self._call(
            lambda: self.model.create_message(self.account_sid, request.to_form()),
            wire.decode_message,
        )

    async def fetch_message(self, sid: str) -> MessageResource | ApiError:
        return self._call(
            lambda: self.model.fetch_message(self.account_sid, sid), wire.decode_message
        )

    async def list_messages(self, query: MessageQuery) -> MessagePage | ApiError:
        filters = {"PageSize": str(query.page_size)}
        if query.to is not None:
            filters["To"] = query.to
        if query.from_ is not None:
            filters["From"] = query.from_
        if query.date_sent_after is not None:
            filters["DateSent>"] = query.date_sent_after.isoformat()
        return self._call(
            lambda: self.model.list_messages(self.account_sid, filters), wire.decode_message_page
        )

    async def fetch_account(self) -> AccountResource | ApiError:
        return self._call(lambda: self.model.fetch_account(self.account_sid), wire.decode_account)

    async def close(self) -> None:
        self.closed = True

    async def open_media(self, url: str, policy: MediaPolicy) -> OpenedMedia:
        """The ``MediaFetcher`` port over the model's stored media, by Twilio's rules.

        The URL must be a Media URL on Twilio's API origin (the fake's Media
        URLs are); the model answers with a redirect to its CDN
        (``mms.twiliocdn.com``), followed only if ``policy`` allows that host,
        and the body is refused over ``max_bytes``. The fake has no network:
        a redirect anywhere else fails as unreachable.
        """
        if self.closed:
            raise RuntimeError("FakeTwilio is closed")
        account_sid, message_sid, media_sid = check_media_url(url, API_BASE)
        denied = self.model.authenticate(account_sid, self.account_sid, self.auth_token)
        reply = denied or self.model.fetch_media(account_sid, message_sid, media_sid)
        if reply.status != 307:
            code = (reply.body or {}).get("code")
            raise MediaFetchError(
                MediaFailure.FAILED,
                f"{url} answered HTTP {reply.status}",
                http_status=reply.status,
                provider_code=code if isinstance(code, int) else None,
            )
        target = follow_redirect(url, reply.headers.get("Location"), policy, 0)
        media = None
        if origin_of(target) == origin_of(MEDIA_CDN_BASE):
            owner, _, key = urlsplit(target).path.strip("/").partition("/")
            media = self.model.cdn_media(owner, key)
        if media is None:
            raise MediaFetchError(MediaFailure.FAILED, "FakeTwilio serves only its own media")
        check_length(len(media.data), policy)
        data = media.data

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), 64 * 1024):
                yield data[start : start + 64 * 1024]

        async def close() -> None:
            return None

        return OpenedMedia(
            content_type=media.content_type,
            content_length=len(data),
            chunks=chunks(),
            close=close,
        )

    def _call(self, operation: Callable[[], Reply], decode: Callable[[object], T]) -> T | ApiError:
        if self.closed:
            raise RuntimeError("FakeTwilio is closed")
        denied = self.model.authenticate(self.account_sid, self.account_sid, self.auth_token)
        reply = denied or operation()
        if reply.reset is not None:
            raise TransportError(
                f"connection reset by FakeTwilio ({reply.reset.value})", maybe_delivered=True
            )
        if 200 <= reply.status < 300:
            return decode(reply.body)
        return wire.decode_api_error(reply.status, reply.body, reply.headers.get("Retry-After"))

    # --- inspection and control --------------------------------------------------------

    @property
    def outbox(self) -> list[OutboxRecord]:
        """Messages this account stored, oldest first (refused sends are not here)."""
        return [
            OutboxRecord(
                sid=m.sid,
                form=m.form,
                params=_first_values(m.form),
                media_urls=m.media_urls,
            )
            for m in self.model.outbound
            if m.account_sid == self.account_sid
        ]

    def fail_next(
        self,
        code: int,
        status: int = 400,
        message: str | None = None,
        retry_after: float | None = None,
        *,
        after_store: bool = False,
        times: int = 1,
    ) -> None:
        """The next ``times`` create calls answer this Twilio error (calls queue up in order).

        A connector's retry is a create call too: it retries 429 and 503
        (20429, 20503), so ``fail_next(20429, 429)`` alone is absorbed by the
        first retry and the send succeeds. For a send that fails whatever the
        retries, use :meth:`fail_all`. ``after_store`` creates the message
        first, as Twilio may before a 5xx.
        """
        self.model.fail_next(
            code,
            status=status,
            message=message,
            retry_after=retry_after,
            after_store=after_store,
            times=times,
        )

    def fail_all(
        self,
        code: int,
        status: int = 400,
        message: str | None = None,
        retry_after: float | None = None,
        *,
        after_store: bool = False,
    ) -> FailureScope:
        """Every create call answers this Twilio error until :meth:`clear_failures`.

        "This send fails, retries included": ``with fake.fail_all(20429, 429):``
        clears every scripted failure when the block ends.
        """
        self.model.fail_all(
            code, status=status, message=message, retry_after=retry_after, after_store=after_store
        )
        return FailureScope(self.model.clear_failures)

    def clear_failures(self) -> None:
        """Forget the :meth:`fail_all` error and every queued :meth:`fail_next` and reset."""
        self.model.clear_failures()

    def reset_next(self, *, after_store: bool = False) -> None:
        """The next create raises TransportError; ``after_store`` stores the message first."""
        self.model.reset_next(after_store=after_store)

    def set_status(self, sid: str, status: str, error_code: int | None = None) -> None:
        """Force a message's status (its status callback is queued, see :meth:`advance`)."""
        self.model.set_status(sid, status, error_code)

    def advance(self, seconds: float = 0.0) -> list[StatusCallback]:
        """Move the clock, progress statuses, and return the callbacks now due."""
        self.clock.advance(seconds)
        self.model.advance(self.clock.now())
        return self.model.due_callbacks()

    # --- signed webhook bodies ------------------------------------------------------------

    def inbound_message_body(
        self,
        url: str,
        from_: str,
        to: str,
        body: str = "",
        *,
        media: Sequence[InboundMedia | tuple[str, str] | str] = (),
        location: Location | tuple[float, float] | None = None,
        button: tuple[str, str] | str | None = None,
        profile_name: str | None = None,
        reply_to_sid: str | None = None,
    ) -> tuple[str, str]:
        """A signed inbound-message webhook for ``url``: (urlencoded body, X-Twilio-Signature).

        An :class:`InboundMedia` item is stored by the fake, as Twilio stores
        a customer's photo: its ``MediaUrlN`` is a Twilio Media URL that
        :meth:`open_media` (``connector.fetch_media``) serves.
        """
        form = self.model.inbound_message(
            from_,
            to,
            body=body,
            media=media,
            location=location,
            button=button,
            profile_name=profile_name,
            reply_to_sid=reply_to_sid,
            account_sid=self.account_sid,
        )
        return urlencode(form), compute_signature(self.auth_token, url, form)

    def template_catalog(self) -> FakeTemplateCatalog:
        """The ``TemplateCatalog`` port over this account's Content API templates.

        The model starts with ``order_confirmed`` (approved, variables
        ``order_id`` and ``delivery_date``) and ``pending_promo`` (not approved);
        add more with ``fake.model.add_template(...)``.
        """
        return FakeTemplateCatalog(self.model, self.account_sid)

    def status_callback_body(
        self, url: str, sid: str, status: str, error_code: int | None = None
    ) -> tuple[str, str]:
        """A signed status callback for ``url``: (urlencoded body, X-Twilio-Signature)."""
        form = self.model.status_callback_form(sid, status, error_code)
        return urlencode(form), compute_signature(self.auth_token, url, form)


class FakeTemplateCatalog:
    """In-process ``TemplateCatalog`` reading the model's Content API, uncached.

    Decodes the same ``ContentAndApprovals`` JSON with the same codec as
    :class:`ratatosk.adapters.templates.ContentApiTemplateCatalog`. Set
    :attr:`unavailable` to make lookups fail as a Content API outage would.
    """

    def __init__(self, model: TwilioModel, account_sid: str) -> None:
        self.model = model
        self.account_sid = account_sid
        self.unavailable = False

    def __repr__(self) -> str:
        return f"FakeTemplateCatalog(account_sid={self.account_sid!r})"

    async def find(self, name: str, language: str | None = None) -> TemplateInfo | None:
        return wire.choose_template(await self.list(), name, language)

    async def list(self) -> Sequence[TemplateInfo]:
        if self.unavailable:
            raise TemplateLookupError("Content API unavailable (FakeTemplateCatalog.unavailable)")
        reply = self.model.list_content_and_approvals(page_size=1000, account_sid=self.account_sid)
        body = reply.body if isinstance(reply.body, Mapping) else {}
        items = body.get("contents", [])
        return tuple(i for i in map(wire.decode_template, items) if i is not None)


if TYPE_CHECKING:  # mypy proves the fakes satisfy the ports they stand in for

    def _fake_is_a_messaging_api(fake: FakeTwilio) -> MessagingApi:
        return fake

    def _fake_is_a_media_fetcher(fake: FakeTwilio) -> MediaFetcher:
        return fake

    def _fake_catalog_is_a_template_catalog(catalog: FakeTemplateCatalog) -> TemplateCatalog:
        return catalog


__all__ = ["FailureScope", "FakeTemplateCatalog", "FakeTwilio", "OutboxRecord"]
