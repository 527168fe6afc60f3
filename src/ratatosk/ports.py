"""Ports: what the kernel and the Twilio connector need from the outside world.

Each port is a ``typing.Protocol`` named for its role. Its data types live here
too, so an adapter depends on the port and never the other way round.

Error convention (the httpx split): an *answer* from Twilio, even a 4xx, is a
value (:class:`ApiError`); only a failure to get an answer raises, as a
:class:`TransportError` translated once inside the adapter. ``maybe_delivered``
says whether the request may have reached Twilio, so the connector can
reconcile instead of resending a message twice.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from .domain._frozen import frozen_mapping
from .domain.settings import Secret

# --- Messaging API port -------------------------------------------------------


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


# --- Signature validator port ------------------------------------------------


@runtime_checkable
class SignatureValidator(Protocol):
    """Decides whether a webhook really came from Twilio."""

    def validate(
        self,
        url: str,
        params: Mapping[str, Sequence[str]] | str,
        signature: str | None,
    ) -> bool:
        """``params`` is the decoded form (key -> values), or the raw body of a JSON webhook."""
        ...


# --- Template catalog port -----------------------------------------------------


@attrs.frozen(kw_only=True)
class TemplateInfo:
    """A content template as the catalog knows it.

    ``whatsapp_status`` is WhatsApp's approval state (``approved``, ``pending``,
    ``rejected`` ...), None when unknown (a static catalog trusts its caller).
    ``variables`` are the declared variable names with their sample values.
    """

    sid: str
    friendly_name: str
    language: str | None = None
    whatsapp_status: str | None = None
    variables: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_mapping)


class TemplateLookupError(Exception):
    """The catalog could not be asked (network, auth); distinct from 'not found'.

    ``details`` are fields a caller may show with the coded error (never a secret).
    """

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details: dict[str, Any] = details


@runtime_checkable
class TemplateCatalog(Protocol):
    """Resolves a friendly template name (``order_confirmed``) to a Content SID."""

    async def find(self, name: str, language: str | None = None) -> TemplateInfo | None:
        """None when no template has that name; raises TemplateLookupError when unreachable."""
        ...

    async def list(self) -> Sequence[TemplateInfo]: ...


# --- Clock port --------------------------------------------------------------------


@runtime_checkable
class Clock(Protocol):
    """Time, as the connector reads it and waits on it.

    Waiting goes through the clock, not ``asyncio.sleep``, so a simulated
    Twilio's manual clock makes back-off and pacing instant in tests, and the
    same code paces real sends on the system clock.
    """

    def now(self) -> dt.datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for pacing and deadlines)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock (a manual clock moves itself forward)."""
        ...


@runtime_checkable
class HasClock(Protocol):
    """A transport that simulates Twilio and keeps its own time (``FakeTwilio``).

    A connector given such a transport and no clock of its own uses this one,
    so a test with the fake never waits on real time unless it asks to.
    """

    @property
    def clock(self) -> Clock: ...


@runtime_checkable
class HasRequestTimeout(Protocol):
    """A transport whose every call ends, answered or failed, within ``request_timeout``.

    The send's deadline needs no timer of its own around a call that the
    transport already bounds more tightly (``send.call.CallTwilio``).
    """

    @property
    def request_timeout(self) -> float: ...


@runtime_checkable
class HasTemplateCatalog(Protocol):
    """A transport that can also read the account's Content API templates.

    The connector's default catalog comes from its transport, so the
    documented constructor resolves template names with the same session
    and credentials it sends with.
    """

    def template_catalog(self) -> TemplateCatalog: ...


@attrs.frozen
class Credentials:
    """Account SID and auth token, as adapters need them; the token stays a Secret."""

    account_sid: str
    auth_token: Secret


# --- Webhook deduplication port ----------------------------------------------------


class Claim(enum.Enum):
    """What claiming a delivery key found."""

    FIRST = "first"  #: nobody had it: the caller holds it now and must complete or release it
    REPEAT = "repeat"  #: handled already (within the store's TTL)
    IN_FLIGHT = "in_flight"  #: someone else holds it, still, when the wait ran out


@runtime_checkable
class Deduplicator(Protocol):
    """Which webhook deliveries were handled, and which are being handled right now.

    Twilio delivers at least once, so one event can arrive twice, even while
    the first delivery's handler still runs (Twilio gives up waiting after
    15 s and retries). The webhook server claims a key before the handler,
    completes it after a success and releases it after a failure, so a retry
    after a failure is handled and a retry after a success is not. Async, so
    a store shared by several server processes (Redis) fits behind it.

    A claim in flight carries a lease: if its holder neither completes nor
    releases it within the lease (the process died), the next claim gets
    FIRST. Completed keys are remembered for a TTL. Lease and TTL belong to
    the adapter's configuration. ``complete`` and ``release`` name a key, not
    a holder: a lease shorter than the slowest handler lets a second delivery
    run beside the first, so choose it well above the handler's worst time.
    """

    async def claim(self, key: str, *, wait: float = 0.0) -> Claim:
        """FIRST (now yours), REPEAT (handled) or IN_FLIGHT (someone else's).

        While another holder has ``key``, wait up to ``wait`` seconds for its
        outcome: completed gives REPEAT, released or lapsed gives FIRST, and
        still in flight when the time is up gives IN_FLIGHT. Never REPEAT for
        a key whose holder may still fail.
        """
        ...

    async def complete(self, key: str) -> None:
        """Mark ``key`` handled: every claim within the TTL is a REPEAT."""
        ...

    async def release(self, key: str) -> None:
        """Forget a claim in flight, so the next delivery with ``key`` is handled.

        A completed key stays completed: a late release cannot undo it.
        """
        ...


# --- Telemetry port -----------------------------------------------------------------
#
# Told of the few moments an operator asks about: a send starts, retries,
# reconciles and ends; a webhook is answered. The values carry ids, codes and
# times, never a body or a secret; the recipient is given whole and left to the
# adapter to mask. With no telemetry plugged, nothing of this runs at all.

#: The outcome of a send Twilio accepted (``SendEnd.outcome``; any other is an error code).
SENT = "SENT"


@attrs.frozen(kw_only=True)
class RetryNotice:
    """One failed attempt of a send that will be tried again, and the wait before it.

    Given to telemetry and to a connector's ``on_retry`` hook.
    """

    message_id: str
    attempt: int  #: the attempt that failed, counted from 1
    failure: str  #: what failed, e.g. "HTTP 429, Twilio 20429" (no body, no number)
    wait: float  #: seconds until the next attempt
    provider_code: int | None = None  #: Twilio's error code, when Twilio answered
    http_status: int | None = None  #: the HTTP status, when Twilio answered


@attrs.frozen(kw_only=True)
class SendEnd:
    """How one send ended: ``outcome`` is ``"SENT"`` or the result's error code."""

    message_id: str
    outcome: str
    duration: float  #: seconds on the connector's clock, from the call to the result
    sid: str | None = None
    to: str | None = None  #: the recipient as addressed; adapters mask it
    provider_code: int | None = None
    attempts: int = 0  #: create calls made (0 when refused before Twilio was asked)
    reconciled: bool = False
    replayed: bool = False  #: the first outcome of a message id sent again


@attrs.frozen(kw_only=True)
class WebhookAnswer:
    """What the webhook server answered one delivery."""

    route: str  #: "message" or "status"
    status: int  #: the HTTP status answered
    duration: float  #: seconds from the request to the answer
    duplicate: bool = False  #: a delivery handled before: answered 200, handler not called
    sid: str | None = None  #: the event's MessageSid, once the delivery was decoded


class SendObservation(Protocol):
    """One send being watched; ``ended`` is called exactly once, last."""

    def retrying(self, notice: RetryNotice) -> None: ...

    def reconciled(self, sid: str | None, why: str) -> None:
        """A lost answer was looked up: ``sid`` found, or None and why not."""
        ...

    def ended(self, end: SendEnd) -> None: ...


class WebhookObservation(Protocol):
    """One webhook delivery being watched; ``answered`` is called exactly once."""

    def answered(self, answer: WebhookAnswer) -> None: ...


@runtime_checkable
class Telemetry(Protocol):
    """Watches sends and webhook deliveries (OpenTelemetry: ``ratatosk.adapters.otel``).

    Called on the send path and the webhook path, in the caller's task, so
    an implementation must be quick and must not raise; a failure it raises
    anyway is logged and ignored.
    """

    def send_started(self, message_id: str) -> SendObservation: ...

    def webhook_received(self, route: str) -> WebhookObservation: ...


# --- Shared state stores ------------------------------------------------------------


class StateStoreError(Exception):
    """A state store shared by several processes (Redis) could not be asked.

    Raised by such adapters of every state port (``Deduplicator``,
    ``RateLimiter``, ``SendLedger``, ``TemplateCache``, ``ConversationWindow``)
    instead of their client's own errors, so the kernel can refuse to act
    without the shared state (a send fails with ``STATE_STORE_UNAVAILABLE``,
    the webhook server answers 503) rather than act on a guess. The message
    names the store and the failure, never a password.
    """


# --- Conversation window port ------------------------------------------------------


@runtime_checkable
class ConversationWindow(Protocol):
    """When each customer last wrote to each business number.

    WhatsApp opens a 24-hour customer-service window with every inbound
    message; the connector feeds this store from ``receive_messages`` and, when
    the guard is on, reads it before a free-form send. Async so a shared store
    (Redis, a database) fits behind it when several processes receive.
    """

    async def record_inbound(self, customer: str, business: str, at: dt.datetime) -> None:
        """Note that ``customer`` wrote to ``business`` at ``at`` (later times win)."""
        ...

    async def last_inbound(self, customer: str, business: str | None) -> dt.datetime | None:
        """The latest inbound time; ``business=None`` means to any of our numbers."""
        ...


# --- Per-sender pacing port ----------------------------------------------------------


@runtime_checkable
class RateLimiter(Protocol):
    """Books the next request slot for a sender, shared by everyone who sends as it.

    Twilio counts every request, retries included, against the sender's
    throughput; several processes sending as one number must share the count,
    so this is a port (in memory by default, a shared store when scaled out).
    """

    async def reserve(self, key: str) -> float:
        """Book one request for ``key``; the seconds to wait before making it (0: now)."""
        ...


# --- Send ledger port -------------------------------------------------------------------


#: Seconds a ``SendLedger.begin`` holds an id unless told otherwise: far beyond the
#: default policy's longest send (a 60 s deadline, a 15 s reconcile wait, two list calls).
DEFAULT_SEND_LEASE = 600.0


class LedgerState(enum.Enum):
    """What the ledger knows about a message id when a send begins."""

    NEW = "new"  #: never seen: this call sends it
    IN_FLIGHT = "in_flight"  #: another call is sending it right now (its lease runs)
    DONE = "done"  #: sent (or left unknown) before: answer with that outcome
    CONFLICT = "conflict"  #: seen before with different content
    #: another call held it and its lease ran out (its process died mid-send): this call
    #: holds it now, and Twilio may have the message. One caller gets it, never two.
    ABANDONED = "abandoned"
    #: ``begin(reopen=True)`` found an outcome finished as unsettled: this call holds the
    #: id again to look once more (``outcome`` is the unsettled one). One caller gets it.
    REOPENED = "reopened"


@attrs.frozen(kw_only=True)
class LedgerEntry:
    """The ledger's answer to ``begin``: the state and, when done, the stored outcome.

    ``outcome`` is plain JSON-able data (the connector writes and reads it),
    so a shared store can keep it as text. ``first_attempt`` is the ``at``
    of the ``begin`` that first took the id (kept through takeovers and
    outcomes), so a later look at Twilio knows from when to search; None
    when that ``begin`` gave no time.
    """

    state: LedgerState
    outcome: Mapping[str, object] | None = None
    first_attempt: dt.datetime | None = None


@attrs.frozen
class LaneMember:
    """A send in a lane: what its message looks like (``key``), and whether it is looking."""

    key: str
    reconciling: bool = False


@runtime_checkable
class SendLedger(Protocol):
    """Sends by message id, and which Twilio SIDs are already somebody's.

    Two jobs that several processes must share:

    * **idempotency**: sending one ``Message.id`` twice sends once; the second
      call gets the first call's outcome (``begin`` / ``finish``);
    * **reconciliation**: after a lost answer the connector may adopt a
      message it finds at Twilio only if no other send could have created it.
      Sends are grouped in *lanes* (recipient and sender); the ledger knows
      which sends of a lane are still waiting for Twilio's answer, and which
      SIDs are already claimed, so two sends never report one SID.

    A ``begin`` that takes an id holds it for a *lease* (the adapter's
    ``lease``, longer than any send can take): a process that dies mid-send
    leaves its id held only until the lease runs out, then the next ``begin``
    takes it over as ABANDONED, atomically, so only one caller does.
    """

    async def begin(
        self,
        message_id: str,
        fingerprint: str,
        *,
        at: dt.datetime | None = None,
        reopen: bool = False,
    ) -> LedgerEntry:
        """Take ``message_id`` to send it, or say why not.

        NEW (never seen) and ABANDONED (the holder's lease ran out) mean this
        call holds the id now, for a lease; IN_FLIGHT, DONE and CONFLICT that
        it does not. ``at`` (the caller's time of day) is kept as the entry's
        ``first_attempt`` when the id is new. ``reopen=True`` takes an outcome
        finished with ``settled=False`` back as REOPENED instead of answering
        DONE; a settled outcome is DONE either way.
        """
        ...

    async def finish(
        self, message_id: str, outcome: Mapping[str, object] | None, *, settled: bool = True
    ) -> None:
        """Store the outcome of a send and release the hold; None forgets the id.

        None: nothing was sent, a later send of the id may go. ``settled=False``:
        the outcome is not the last word (Twilio may or may not have the
        message), so ``begin(reopen=True)`` may take it back to look again.
        """
        ...

    async def lane_enter(self, lane: str, send: str, key: str) -> None:
        """``send`` is about to ask Twilio to create a message in ``lane``.

        ``key`` says what its message looks like to a reconcile (see
        ``twilio.send.stage.match_key``); a send re-entering clears ``reconciling``.
        """
        ...

    async def lane_reconciling(self, lane: str, send: str) -> None:
        """``send`` lost its answer and is looking for its message (Twilio will not answer)."""
        ...

    async def lane_leave(self, lane: str, send: str, *, settled: bool = True) -> None:
        """``send`` is done with Twilio.

        ``settled=False``: its outcome stayed unknown, so Twilio may hold a
        message of it that nobody claimed. It then stays in the lane as
        looking for a while (a few minutes: longer than any send in flight
        at that moment), so no other reconcile adopts that message.
        """
        ...

    async def lane_others(self, lane: str, send: str) -> Mapping[str, LaneMember]:
        """The other sends now in ``lane``, by send."""
        ...

    async def claim_sid(self, sid: str, send: str, *, adopted: bool) -> str | None:
        """Record ``sid`` as ``send``'s; returns the send that held it already, if any.

        ``adopted=True`` (a reconcile) claims only an unclaimed SID: a
        non-None answer means it was taken and the reconcile must not use it.
        ``adopted=False`` (Twilio answered ``send`` with ``sid``) always
        records; a non-None answer means an earlier reconcile adopted it
        wrongly, which the connector logs as an error.
        """
        ...

    async def claimed(self, sids: Sequence[str]) -> frozenset[str]:
        """Which of ``sids`` already belong to some send."""
        ...


# --- Template cache port -----------------------------------------------------------------


@runtime_checkable
class TemplateCache(Protocol):
    """Template lookups by (name, language), remembered for a while.

    A hit answers without asking the Content API; a remembered miss (None)
    keeps a typo from hammering it. Entries expire after the ``ttl`` given
    when stored.
    """

    async def get(self, name: str, language: str | None) -> tuple[bool, TemplateInfo | None]:
        """(found, info): ``found`` is False when nothing is remembered for the key."""
        ...

    async def put(
        self, name: str, language: str | None, info: TemplateInfo | None, ttl: float
    ) -> None: ...


# --- Status tracker port --------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class StatusEvent:
    """One status report for a message, as it arrived: Twilio's word, its code, when."""

    status: str
    error_code: int | None = None
    at: dt.datetime


@attrs.frozen(kw_only=True)
class StatusTimeline:
    """What is known of one message: the status that counts, and every report in arrival order.

    ``current`` is the highest-ranked report seen (the first of equal ranks),
    so a late or repeated callback never moves a message back. ``advanced``
    says whether the report just applied moved ``current``.
    """

    sid: str
    current: StatusEvent
    history: tuple[StatusEvent, ...]
    advanced: bool


@runtime_checkable
class StatusTracker(Protocol):
    """Message status timelines, merged from callbacks that arrive out of order and twice.

    The rule that decides whether a report moves a message forward is the
    kernel's (``MessageStatus.supersedes``); a store applies it atomically, so
    two webhook servers that share it agree on the current status.
    """

    async def apply(self, sid: str, event: StatusEvent) -> StatusTimeline:
        """Record ``event`` for ``sid``; the timeline after it."""
        ...

    async def timeline(self, sid: str) -> StatusTimeline | None:
        """What is known of ``sid``; None when no report was ever applied."""
        ...


# --- Media port ----------------------------------------------------------------------------

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


# --- Outbound queue port ----------------------------------------------------------------
#
# A durable queue of messages to send, drained by workers in other processes
# (``ratatosk worker``). The queue holds each message as plain JSON-able data
# (``twilio.wire.queued`` encodes and decodes it), so a shared store keeps it as
# text and a worker on another machine rebuilds the same ``Message``.


@attrs.frozen(kw_only=True)
class QueuedSend:
    """One entry as a consumer reads it: which message, and how often it was handed out.

    ``deliveries`` counts the times a consumer was given the entry: 1 when
    read new, one more at each reclaim. ``entry_id`` is the queue's own id,
    what acknowledging names.
    """

    entry_id: str
    message_id: str
    payload: Mapping[str, object] = attrs.field(repr=False)
    deliveries: int = 1


@attrs.frozen(kw_only=True)
class DeadLetter:
    """An entry taken out of the queue for good, and why (read back for an operator)."""

    entry_id: str
    message_id: str
    payload: Mapping[str, object] = attrs.field(repr=False)
    deliveries: int
    reason: str


@attrs.frozen(kw_only=True)
class QueueStats:
    """How much work the queue holds now."""

    waiting: int  #: added, not yet read by any consumer
    pending: int  #: read by a consumer and not acknowledged (being sent, or left for a re-check)
    dead: int  #: dead letters kept


@runtime_checkable
class OutboundQueue(Protocol):
    """Messages waiting to be sent, handed to named consumers of one group, at least once.

    An entry read by a consumer stays *pending* until acknowledged (by
    :meth:`complete` or :meth:`dead_letter`, which also store the message's
    final result). A pending entry its consumer stopped touching for
    ``visibility_timeout`` seconds (the process died, or the worker left it
    to be looked at again later) can be *reclaimed* by any consumer; each
    hand-out counts as a delivery. A consumer keeps the entries it is still
    working on with :meth:`extend`, and hands entries back at once with
    :meth:`release`. Final results are kept by message id for a while (the
    adapter's TTL), first result wins, so a submitter can ask for them.

    Adapters raise :class:`StateStoreError` when their store cannot be asked.
    """

    @property
    def visibility_timeout(self) -> float:
        """Seconds a pending entry may go untouched before another consumer may reclaim it."""
        ...

    async def add(self, items: Sequence[tuple[str, Mapping[str, object]]]) -> Sequence[str]:
        """Append ``(message_id, payload)`` items, in order; their entry ids, in the same order."""
        ...

    async def read(self, consumer: str, *, count: int, block: float = 0.0) -> Sequence[QueuedSend]:
        """Up to ``count`` entries no consumer has had yet, now ``consumer``'s (deliveries 1).

        With none waiting, wait up to ``block`` seconds for some to be added.
        """
        ...

    async def reclaim(self, consumer: str, *, count: int) -> Sequence[QueuedSend]:
        """Up to ``count`` pending entries untouched for ``visibility_timeout``, now ``consumer``'s.

        Each comes with its delivery counted (at least 2).
        """
        ...

    async def extend(self, consumer: str, entry_ids: Sequence[str]) -> None:
        """``consumer`` is still working on these: their untouched time starts again.

        An entry another consumer has reclaimed meanwhile stays that consumer's.
        """
        ...

    async def release(self, consumer: str, entry_ids: Sequence[str]) -> None:
        """Hand ``consumer``'s pending entries back: any consumer may reclaim them now."""
        ...

    async def complete(self, entry: QueuedSend, result: Mapping[str, object]) -> bool:
        """Store ``result`` as the message's final result and acknowledge the entry.

        True when this was the message's first final result; a later one
        (the same message id queued twice) leaves the first in place.
        """
        ...

    async def dead_letter(
        self, entry: QueuedSend, reason: str, result: Mapping[str, object]
    ) -> bool:
        """Move the entry to the dead letters with ``reason``, store ``result``, acknowledge it.

        True when ``result`` was the message's first final result.
        """
        ...

    async def result(self, message_id: str) -> Mapping[str, object] | None:
        """The message's final result; None while it has none (or after the results' TTL)."""
        ...

    async def dead_letters(self, count: int = 100) -> Sequence[DeadLetter]:
        """The oldest ``count`` dead letters kept."""
        ...

    async def stats(self) -> QueueStats: ...
