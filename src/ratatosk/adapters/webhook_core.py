"""The webhook gate, once, for every HTTP server that carries it (adapters layer).

Twilio's POSTs are checked and answered here, whatever server received them:
the package's own server (:mod:`ratatosk.adapters.http11_server`, what
``ratatosk serve`` runs), the aiohttp app
(:mod:`ratatosk.adapters.webhook_server`) and the plain ASGI app
(:mod:`ratatosk.adapters.asgi`) only translate a request into an
:class:`Incoming` and a :class:`Reply` back into their own response. So they
cannot drift apart: a limit, a status code or the URL that is signed is
decided in this module alone. It imports no HTTP framework.

Every request passes the same gates, cheapest first, and nothing is decoded
into messages before the signature holds:

1. size: ``Content-Length`` or the body over ``max_body_bytes`` -> 413;
   a body that takes longer than ``body_timeout`` to arrive -> 408;
2. media type: neither form nor JSON -> 415; a JSON body that is not UTF-8 -> 400;
3. form fields over ``max_fields`` -> 413;
4. ``X-Twilio-Signature`` missing or wrong for the public URL -> 403, and
   a WARNING (a few a minute) saying what was checked and the likely cause;
5. decoding through the connector, of the very fields the signature check
   parsed (handed over as ``MessageSource.form``): a coded failure -> 400
   with the code (a field Twilio sends once, sent twice, included);
6. deduplication through the ``Deduplicator`` port, on the event's own key
   (MessageSid; for a status callback plus Twilio's status and error code)
   and on ``I-Twilio-Idempotency-Token`` when sent, each in its own namespace:
   either one seen before -> 200 without calling the handler; a repeat of one
   still being handled waits for its outcome, and after ``in_flight_wait``
   gets 503 (retry later);
   a shared store (Redis) that cannot be reached -> 503 (Twilio retries
   later), never 200 without deduplication;
7. the handler; if it raises, the delivery is forgotten and the answer is
   500, so Twilio's retry is handled instead of lost; after
   ``max_handler_attempts`` failures on one event it is given up instead, so
   a failure that repeats on every delivery does not keep Twilio retrying;
   a handled delivery the store could not mark handled (Redis went down while
   the handler ran) is still 200, and is kept and marked once the store answers.

Success is ``200`` with an empty TwiML ``<Response/>`` as ``text/xml``.
Error answers are JSON ``{"code": ..., "message": ...}``; they never echo
the body or anything secret. Every answer that does not depend on the
request is built once, at start-up, not per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final, Generic, Protocol, TypeVar

import attrs

from ..domain.errors import MessagingErrorCodes
from ..domain.result import ConnectorResult, ReceiveResult, StatusUpdate
from ..domain.source import MessageSource, SourceFormat
from ..ports import (
    Claim,
    Deduplicator,
    SignatureValidator,
    StateStoreError,
    Telemetry,
    WebhookAnswer,
    WebhookObservation,
)
from ..twilio.errors import TwilioErrorCodes
from ..twilio.signature_diagnosis import FORWARDED_HEADERS, diagnose, summary
from ..twilio.twiml import TwiML
from ..twilio.wire import parse_form
from .log_budget import LogBudget
from .memory import InMemoryDeduplicator

log = logging.getLogger("ratatosk.webhooks")

DEFAULT_PREFIX: Final = "/webhooks/twilio/whatsapp"
HEALTHZ_PATH: Final = "/healthz"
#: Twilio's webhook bodies are a few KiB; 64 KiB leaves room for long texts and many media.
DEFAULT_MAX_BODY: Final = 64 * 1024
DEFAULT_MAX_FIELDS: Final = 200
SIGNATURE_HEADER: Final = "X-Twilio-Signature"
IDEMPOTENCY_HEADER: Final = "I-Twilio-Idempotency-Token"
#: Refused signatures explained in the log: at most this many a period, the rest counted.
REFUSAL_LOG_BURST: Final = 5
REFUSAL_LOG_PERIOD: Final = 60.0
#: Seconds a 503 for an unreachable state store asks Twilio to wait.
STORE_RETRY_AFTER: Final = 5

E = TypeVar("E", ReceiveResult, StatusUpdate)
MessageHandler = Callable[[ReceiveResult], Awaitable[None]]
StatusHandler = Callable[[StatusUpdate], Awaitable[None]]


class WebhookReceiver(Protocol):
    """What the server needs from the connector: decoding, nothing else."""

    async def receive_messages(self, source: MessageSource) -> ConnectorResult[ReceiveResult]: ...

    async def receive_message_status(
        self, source: MessageSource
    ) -> ConnectorResult[StatusUpdate]: ...


@attrs.define
class WebhookStats:
    """Counters a load test or a metrics exporter can read (``app[STATS]``, ``app.stats``)."""

    handled: int = 0
    duplicates: int = 0
    refused_signature: int = 0
    refused_size: int = 0
    refused_media_type: int = 0
    bad_request: int = 0
    timeouts: int = 0
    handler_errors: int = 0
    in_flight: int = 0
    abandoned: int = 0
    store_unavailable: int = 0
    #: Handled deliveries the store has not recorded yet (it failed); retried until it answers.
    unrecorded: int = 0
    #: Of those, recorded later, once the store answered again.
    recorded_late: int = 0


class BodyTooLarge(Exception):
    """Raised by :meth:`Incoming.read` once the body passes ``max_body_bytes``."""


class MalformedBody(Exception):
    """Raised by :meth:`Incoming.read` when the body's framing is broken (a bad chunk)."""


class Incoming(Protocol):
    """One request as a server received it; the gate reads only what it needs.

    Methods rather than fields, so a server hands over its own request object
    wrapped, and nothing the gate does not ask for (the scheme and host, most
    headers) is computed.
    """

    @property
    def content_length(self) -> int | None:
        """``Content-Length`` as declared, or None."""
        ...

    @property
    def body_ready(self) -> bool:
        """The whole body is already here: no timer is needed to read it."""
        ...

    async def read(self) -> bytes:
        """The body; :class:`BodyTooLarge` past the limit the server was given."""
        ...

    def header(self, name: str) -> str | None: ...

    def header_values(self, name: str) -> list[str]:
        """Every value of a header, in order (repeated headers included)."""
        ...

    @property
    def target(self) -> str:
        """The path (with any prefix it is mounted under) and query, as sent."""
        ...

    def origin(self) -> str:
        """``scheme://host`` as this server sees the request."""
        ...


_KNOWN_STATUSES: Final = frozenset(status.value for status in HTTPStatus)


def _header_pairs(media_type: str, extra: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return (("Content-Type", f"{media_type}; charset=utf-8"), *(extra or {}).items())


@attrs.frozen
class Reply:
    """An answer as status, headers and body, in the two shapes servers want them.

    ``headers`` (names as written, ``Content-Type`` first) suit aiohttp;
    ``raw_headers`` (lower-case bytes, ``content-length`` included) are ASGI's;
    ``http11_head`` (the status line and those headers, ``Content-Length``
    included, without the blank line) is written as is by the package's own
    server, so a constant answer is serialised once, at start-up.
    """

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    duplicate: bool = False  #: a repeat delivery: answered 200, the handler not called
    raw_headers: tuple[tuple[bytes, bytes], ...] = attrs.field(init=False, repr=False)
    http11_head: bytes = attrs.field(init=False, repr=False)

    @raw_headers.default
    def _raw(self) -> tuple[tuple[bytes, bytes], ...]:
        pairs = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]
        pairs.append((b"content-length", str(len(self.body)).encode("ascii")))
        return tuple(pairs)

    @http11_head.default
    def _http11(self) -> bytes:
        reason = HTTPStatus(self.status).phrase if self.status in _KNOWN_STATUSES else ""
        lines = [f"HTTP/1.1 {self.status} {reason}"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n").encode("latin-1")

    @classmethod
    def of(
        cls,
        status: int,
        media_type: str,
        body: str,
        *,
        headers: Mapping[str, str] | None = None,
        duplicate: bool = False,
    ) -> Reply:
        return cls(status, body.encode("utf-8"), _header_pairs(media_type, headers), duplicate)

    @classmethod
    def refusal(
        cls, status: int, code: str, message: str, *, retry_after: int | None = None
    ) -> Reply:
        """An error answer: JSON ``{"code", "message"}``, never anything of the request."""
        extra = {"Retry-After": str(retry_after)} if retry_after is not None else None
        body = json.dumps({"code": code, "message": message})
        return cls.of(status, "application/json", body, headers=extra)


OK: Final = Reply.of(200, TwiML.CONTENT_TYPE, TwiML.EMPTY)
DUPLICATE: Final = Reply.of(200, TwiML.CONTENT_TYPE, TwiML.EMPTY, duplicate=True)
HEALTHY: Final = Reply.of(200, "application/json", json.dumps({"status": "ok"}))
NOT_FOUND: Final = Reply.refusal(404, "NOT_FOUND", "no such webhook route")
_DATA: Final = MessagingErrorCodes.INVALID_WEBHOOK_DATA
TOO_LARGE: Final = Reply.refusal(413, _DATA, "body too large")
TOO_SLOW: Final = Reply.refusal(408, _DATA, "body too slow")
TOO_MANY_FIELDS: Final = Reply.refusal(413, _DATA, "too many fields")
NOT_UTF8: Final = Reply.refusal(400, _DATA, "a JSON body must be UTF-8")
BAD_FRAMING: Final = Reply.refusal(400, _DATA, "the body's chunked framing is malformed")
UNSUPPORTED: Final = Reply.refusal(
    415,
    MessagingErrorCodes.UNSUPPORTED_CONTENT_TYPE,
    "send application/x-www-form-urlencoded or application/json",
)
BAD_SIGNATURE: Final = Reply.refusal(
    403, TwilioErrorCodes.INVALID_SIGNATURE, "X-Twilio-Signature does not match"
)
HANDLER_FAILED: Final = Reply.refusal(500, "HANDLER_FAILED", "the handler failed")
STORE_UNAVAILABLE: Final = Reply.refusal(
    503,
    TwilioErrorCodes.STATE_STORE_UNAVAILABLE,
    "the shared state store cannot be reached; retry later",
    retry_after=STORE_RETRY_AFTER,
)


def method_not_allowed(allowed: str) -> Reply:
    body = json.dumps({"code": "METHOD_NOT_ALLOWED", "message": f"use {allowed}"})
    return Reply.of(405, "application/json", body, headers={"Allow": allowed})


@attrs.frozen
class _Gate:
    """The checks shared by both routes; holds no per-request state."""

    validator: SignatureValidator
    public_url: str | None
    trust_forwarded: bool
    max_body_bytes: int
    max_fields: int
    body_timeout: float
    stats: WebhookStats
    refusal_log: LogBudget = attrs.field(
        factory=lambda: LogBudget(REFUSAL_LOG_BURST, REFUSAL_LOG_PERIOD)
    )

    async def admit(self, request: Incoming) -> MessageSource | Reply:
        """The verified body, or the refusal decided before any decoding."""
        declared = request.content_length
        if declared is not None and declared > self.max_body_bytes:
            self.stats.refused_size += 1
            return TOO_LARGE
        try:
            if request.body_ready:  # the usual case: the body came with the headers
                raw = await request.read()
            else:
                async with asyncio.timeout(self.body_timeout):
                    raw = await request.read()
        except BodyTooLarge:
            self.stats.refused_size += 1
            return TOO_LARGE
        except MalformedBody:
            self.stats.bad_request += 1
            return BAD_FRAMING
        except TimeoutError:
            self.stats.timeouts += 1
            return TOO_SLOW
        media = _media_format(request.header("Content-Type"))
        if media is SourceFormat.OTHER:
            self.stats.refused_media_type += 1
            return UNSUPPORTED
        signature = request.header(SIGNATURE_HEADER)
        url = self.url_of(request)
        params: Mapping[str, Sequence[str]] | str
        if media is SourceFormat.JSON:
            # bodySHA256 is over the bytes sent: hash text that encodes back to them exactly.
            try:
                params = raw.decode("utf-8")
            except UnicodeDecodeError:
                self.stats.bad_request += 1
                return NOT_UTF8
            source = MessageSource.json(params)
        else:
            body = raw.decode("utf-8", "replace")  # as MessageSource reads a body
            try:
                if body.count("&") + 1 > self.max_fields:
                    raise ValueError("too many fields")
                form = parse_form(body)
            except ValueError:
                self.stats.refused_size += 1
                return TOO_MANY_FIELDS
            params = form
            # The decoder reads the fields just verified: one parse, and nothing else decoded.
            source = MessageSource(media, body, media.value, form=form)
        if not self.validator.validate(url, params, signature):
            self.stats.refused_signature += 1
            self._explain_refusal(request, url, params, signature)
            return BAD_SIGNATURE
        return source

    def _explain_refusal(
        self,
        request: Incoming,
        url: str,
        params: Mapping[str, Sequence[str]] | str,
        signature: str | None,
    ) -> None:
        """One WARNING line on what was checked and the likely cause; a few a minute at most.

        The diagnosis tries other plausible URLs through the validator, so it
        runs only for a line that will be logged: a flood of forged requests
        costs a counter each, not a search. No body, no secret: what is shown
        is the URL, the forwarding headers (escaped) and the body hash's verdict.
        """
        notes = self.refusal_log.admit()
        if notes is None:
            return
        headers = {name: request.header_values(name) for name in ("Host", *FORWARDED_HEADERS)}
        diagnosis = diagnose(
            url,
            lambda candidate: self.validator.validate(candidate, params, signature),
            signature_present=bool(signature),
            headers=headers,
            json_body=params if isinstance(params, str) else None,
            trust_forwarded=self.trust_forwarded,
        )
        log.warning(
            "refused a webhook to %r, URL from %s: %s%s",
            request.target[:200],
            self.url_source(request),
            summary(diagnosis),
            "".join("; " + note for note in notes),
        )

    def url_source(self, request: Incoming) -> str:
        """Where :meth:`url_of` takes the scheme and host from, in words."""
        if self.trust_forwarded and self._forwarded(request) is not None:
            return "X-Forwarded-Proto/-Host (trusted)"
        return "public_url" if self.public_url is not None else "the request's Host"

    def url_of(self, request: Incoming) -> str:
        """The URL Twilio signed: the public base plus the path and query as sent."""
        target = request.target
        forwarded = self._forwarded(request) if self.trust_forwarded else None
        if forwarded is not None:
            return forwarded + target
        if self.public_url is not None:
            return self.public_url + target
        return request.origin() + target

    @staticmethod
    def _forwarded(request: Incoming) -> str | None:
        """``proto://host`` from ``X-Forwarded-*``, when both are there.

        Of several values (``a, b`` or repeated headers) the last is used:
        each proxy appends what it saw, so the last one was set by the proxy
        next to this server, the only one it trusts; the first could be
        anything the client sent.
        """
        proto = _nearest(request.header_values("X-Forwarded-Proto"))
        host = _nearest(request.header_values("X-Forwarded-Host"))
        return f"{proto}://{host}" if proto and host else None


@functools.lru_cache(maxsize=32)
def _media_format(content_type: str | None) -> SourceFormat:
    """The body's format by ``Content-Type``, as ``MessageSource.from_content_type`` decides.

    Cached: a server sees the same one or two header values on every request.
    """
    return MessageSource.from_content_type(content_type, b"").format


def _nearest(values: Sequence[str]) -> str:
    """The value the nearest proxy appended: the last item of the last header."""
    return ",".join(values).rsplit(",", 1)[-1].strip()


class _Deliveries:
    """Exactly-once hand-off through the ``Deduplicator`` port.

    A repeat that arrives while the first delivery's handler still runs (Twilio
    retries after its 15 s timeout) waits, inside the port, for that outcome: a
    success makes it a duplicate, a failure makes it the delivery that gets
    handled. If the first is still running when ``in_flight_wait`` runs out,
    the repeat is answered 503 so Twilio tries again later: answering it
    "duplicate" would lose the event if the first then failed.

    A handler that fails the same event ``max_attempts`` times is given up
    on: the event is marked handled (so Twilio's next retry is answered 200)
    and logged as an ERROR. A failure that repeats on every delivery (bad
    data, a bug) would otherwise make Twilio retry it for as long as it
    retries. The count is per process and bounded (oldest events forgotten).

    A handled delivery the store could not mark handled (Redis down when the
    handler returned) is remembered here, at most ``_UNRECORDED_KEYS`` of
    them, oldest dropped with a WARNING, and marked again every
    ``_RECORD_RETRY`` seconds, and when a request arrives, until the store
    answers. Meanwhile a repeat of it reaching this process is answered as a
    duplicate: this process handled it. So a Twilio retry after the store is
    back is not handled again, on this node or (once the mark is written) on
    another. The retry runs in a task of its own: no request waits on a store
    that is still down for another event's mark.
    """

    _COUNTED_EVENTS: Final = 10_000
    _UNRECORDED_KEYS: Final = 10_000
    _RECORD_RETRY: Final = 0.25

    def __init__(
        self, dedup: Deduplicator, stats: WebhookStats, in_flight_wait: float, max_attempts: int
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_handler_attempts must be at least 1")
        self._dedup = dedup
        self._stats = stats
        self._wait = in_flight_wait
        self._max_attempts = max_attempts
        self._failures: OrderedDict[str, int] = OrderedDict()
        #: Handled keys whose ``complete`` failed, oldest first.
        self._unrecorded: OrderedDict[str, None] = OrderedDict()
        self._recording: asyncio.Task[None] | None = None
        self._retry_timer: asyncio.TimerHandle | None = None
        self._next_record: float = 0.0  # monotonic time before which no new attempt starts
        self._in_flight = Reply.refusal(
            503,
            "DELIVERY_IN_FLIGHT",
            "this event is being handled; retry later",
            retry_after=int(in_flight_wait) + 1,
        )

    async def deliver(
        self, keys: Sequence[str], handler: Callable[[E], Awaitable[None]] | None, event: E
    ) -> Reply:
        """Claim every key, run ``handler`` once, and settle the keys by its outcome.

        Any key already handled makes the delivery a repeat; the keys claimed
        before it are released, so they stay free for the event itself.
        """
        if self._unrecorded:
            for key in keys:
                if key in self._unrecorded:  # handled here; the store has not heard yet
                    self._stats.duplicates += 1
                    return DUPLICATE
            if time.monotonic() >= self._next_record:
                self._record_later(0.0)
        held: list[str] = []
        try:
            for key in keys:
                claim = await self._dedup.claim(key, wait=self._wait)
                if claim is not Claim.FIRST:
                    await self._release(held)
                    return self._not_first(claim)
                held.append(key)
        except StateStoreError as exc:  # no deduplication, no handling: Twilio retries later
            await self._release(held)
            return self.store_unavailable(exc)
        except BaseException:  # the request was cancelled
            await self._release(held)
            raise
        try:
            if handler is not None:
                await handler(event)
        except Exception:
            self._stats.handler_errors += 1
            failures = self._count_failure(keys[0])
            if failures < self._max_attempts:
                await self._release(held)
                log.exception("webhook handler failed; the delivery is left for Twilio to retry")
            else:
                await self._complete(held)
                self._stats.abandoned += 1
                log.exception(
                    "webhook handler failed %d times on %s; giving up: its next deliveries "
                    "are answered 200 and not handled",
                    failures,
                    keys[0],
                )
            return HANDLER_FAILED
        except BaseException:  # cancelled mid-handler: not handled, so not a duplicate later
            await self._release(held)
            raise
        await self._complete(held)
        if self._failures:
            self._failures.pop(keys[0], None)
        self._stats.handled += 1
        return OK

    def _count_failure(self, event_key: str) -> int:
        failures = self._failures.pop(event_key, 0) + 1
        self._failures[event_key] = failures
        if len(self._failures) > self._COUNTED_EVENTS:
            self._failures.popitem(last=False)
        return failures

    async def _complete(self, keys: Sequence[str]) -> None:
        for index, key in enumerate(keys):
            try:
                await self._dedup.complete(key)
            except StateStoreError as exc:  # handled all the same: answering 503 would repeat it
                log.error(
                    "a handled webhook could not be marked handled (retried until the store "
                    "answers): %s",
                    exc,
                )
                self._remember_unrecorded(keys[index:])
                return

    def _remember_unrecorded(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._unrecorded[key] = None
        while len(self._unrecorded) > self._UNRECORDED_KEYS:
            dropped, _ = self._unrecorded.popitem(last=False)
            log.warning(
                "more than %d handled webhooks wait to be marked handled; forgot %s, "
                "whose repeat may be handled again",
                self._UNRECORDED_KEYS,
                dropped,
            )
        self._stats.unrecorded = len(self._unrecorded)
        self._next_record = time.monotonic() + self._RECORD_RETRY
        self._record_later(self._RECORD_RETRY)

    def _record_later(self, delay: float) -> None:
        """Mark the unrecorded keys in a task of its own, after ``delay`` s; one at a time."""
        if self._recording is not None or (delay > 0 and self._retry_timer is not None):
            return
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        loop = asyncio.get_running_loop()
        self._retry_timer = loop.call_later(delay, self._start_recording)

    def _start_recording(self) -> None:
        self._retry_timer = None
        if self._recording is None and self._unrecorded:
            self._recording = asyncio.get_running_loop().create_task(self._record_unrecorded())

    async def _record_unrecorded(self) -> None:
        """``complete`` the remembered keys, oldest first, until done or the store fails."""
        recorded = 0
        try:
            while self._unrecorded:
                key = next(iter(self._unrecorded))
                try:
                    await self._dedup.complete(key)
                except StateStoreError:
                    break
                self._unrecorded.pop(key, None)
                recorded += 1
        finally:
            self._recording = None
            self._stats.unrecorded = len(self._unrecorded)
            self._stats.recorded_late += recorded
            if recorded:
                log.warning(
                    "marked %d handled webhook deliveries handled now that the store answers "
                    "(%d still waiting)",
                    recorded,
                    len(self._unrecorded),
                )
            if self._unrecorded:
                self._next_record = time.monotonic() + self._RECORD_RETRY
                self._record_later(self._RECORD_RETRY)

    async def close(self) -> None:
        """Stop retrying; one last attempt to mark what the store has not recorded."""
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        task, self._recording = self._recording, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._unrecorded:
            try:
                await self._record_unrecorded()
            except Exception:  # a store failing otherwise than StateStoreError: still stop
                log.exception("the last try to mark handled webhook deliveries failed")
            if self._retry_timer is not None:
                self._retry_timer.cancel()
                self._retry_timer = None
            if self._unrecorded:
                log.error(
                    "stopping with %d handled webhook deliveries not marked handled: "
                    "their repeats may be handled again",
                    len(self._unrecorded),
                )

    def store_unavailable(self, exc: StateStoreError) -> Reply:
        self._stats.store_unavailable += 1
        log.error("webhook answered 503: %s", exc)
        return STORE_UNAVAILABLE

    def _not_first(self, claim: Claim) -> Reply:
        if claim is Claim.REPEAT:
            self._stats.duplicates += 1
            return DUPLICATE
        self._stats.in_flight += 1
        return self._in_flight

    async def _release(self, keys: Sequence[str]) -> None:
        try:
            for key in reversed(keys):
                await self._dedup.release(key)
        except StateStoreError as exc:  # the claims lapse with their lease instead
            log.error("webhook claims could not be released: %s", exc)


#: Tokens are the sender's choice and unsigned: long ones are stored as a digest.
_MAX_TOKEN_KEY: Final = 128


def _delivery_keys(event_key: str, token: str | None) -> tuple[str, ...]:
    """The event's own key, always; the idempotency token too, in a namespace of its own.

    The token header is not covered by the signature, so it can only add a
    way to recognise a repeat, never replace the event's key: otherwise a
    replay with a fresh token would be handled again, and a token chosen to
    equal a later event's key would swallow that event.
    """
    if not token:
        return ("event:" + event_key,)
    if len(token) > _MAX_TOKEN_KEY:
        token = "sha256:" + hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
    return ("event:" + event_key, "token:" + token)


def _message_key(received: ReceiveResult) -> str:
    return "message:" + ",".join(m.id for m in received.messages)


def _status_key(update: StatusUpdate) -> str:
    # Twilio's own status, not the kernel's: two Twilio statuses can map alike
    # (failed and undelivered) and each is an event of its own; so is one
    # status reported again with another error code.
    twilio_status = str(update.data.get("twilio_status") or update.status.value)
    error_code = "" if update.error_code is None else str(update.error_code)
    return f"status:{update.message_id}:{twilio_status.strip().lower()}:{error_code}"


def _sid_of(event: ReceiveResult | StatusUpdate) -> str:
    if isinstance(event, StatusUpdate):
        return event.message_id
    return ",".join(m.id for m in event.messages)


@attrs.frozen
class Route(Generic[E]):
    """One webhook route: its name for telemetry, its decoder, its key and its handler."""

    name: str
    decode: Callable[[MessageSource], Awaitable[ConnectorResult[E]]]
    key_of: Callable[[E], str]
    handler: Callable[[E], Awaitable[None]] | None


class _Seen:
    """What telemetry learns of a delivery on the way (its SID, once decoded)."""

    __slots__ = ("sid",)

    def __init__(self) -> None:
        self.sid: str | None = None


class WebhookCore:
    """The whole webhook answer, from a request's facts to a :class:`Reply`.

    A server adapter asks :meth:`dispatch` (or its own router, over
    :attr:`routes`) which route a request is for, wraps the request as an
    :class:`Incoming` and sends back what :meth:`answer` returns. Parameters
    are ``create_webhook_app``'s.
    """

    def __init__(
        self,
        receiver: WebhookReceiver,
        *,
        validator: SignatureValidator,
        public_url: str | None = None,
        on_message: MessageHandler | None = None,
        on_status: StatusHandler | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        max_fields: int = DEFAULT_MAX_FIELDS,
        body_timeout: float = 10.0,
        trust_forwarded: bool = False,
        dedup: Deduplicator | None = None,
        in_flight_wait: float = 10.0,
        max_handler_attempts: int = 3,
        path_prefix: str = DEFAULT_PREFIX,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.stats = WebhookStats()
        self.max_body_bytes = max_body_bytes
        self._gate = _Gate(
            validator=validator,
            public_url=public_url.rstrip("/") if public_url else None,
            trust_forwarded=trust_forwarded,
            max_body_bytes=max_body_bytes,
            max_fields=max_fields,
            body_timeout=body_timeout,
            stats=self.stats,
        )
        self._deliveries = _Deliveries(
            dedup if dedup is not None else InMemoryDeduplicator(),
            self.stats,
            in_flight_wait,
            max_handler_attempts,
        )
        self._telemetry = telemetry
        prefix = "/" + path_prefix.strip("/")
        #: Route path (below any mount prefix) -> route; every route takes POST only.
        self.routes: Mapping[str, Route[Any]] = {
            prefix: Route("message", receiver.receive_messages, _message_key, on_message),
            prefix.rstrip("/") + "/status": Route(
                "status", receiver.receive_message_status, _status_key, on_status
            ),
        }
        self._not_post = method_not_allowed("POST")
        self._not_get = method_not_allowed("GET")
        #: ``answer(route, request)``: gate, decode through the connector, dedup, hand off,
        #: and tell telemetry if any. Chosen once here, so an unwatched answer costs no
        #: extra call per request.
        self.answer: Callable[[Route[Any], Incoming], Awaitable[Reply]] = (
            self._answer if telemetry is None else self._observed
        )

    async def close(self) -> None:
        """At shutdown: stop the background marking of handled deliveries, after a last try.

        Servers call it before their own shutdown hooks run, so the store is
        still open for that last try.
        """
        await self._deliveries.close()

    def dispatch(self, method: str, path: str) -> Route[Any] | Reply:
        """The route for ``method`` on ``path`` (below any mount prefix), or the answer.

        ``/healthz`` answers GET (and HEAD) at once; a route asked with
        another method than POST is 405, an unknown path 404.
        """
        route = self.routes.get(path)
        if route is not None:
            return route if method == "POST" else self._not_post
        if path == HEALTHZ_PATH:
            return HEALTHY if method in {"GET", "HEAD"} else self._not_get
        return NOT_FOUND

    async def _answer(self, route: Route[E], request: Incoming, seen: _Seen | None = None) -> Reply:
        admitted = await self._gate.admit(request)
        if isinstance(admitted, Reply):
            return admitted
        try:
            decoded = await route.decode(admitted)  # records conversation windows, maybe in Redis
        except StateStoreError as exc:
            return self._deliveries.store_unavailable(exc)
        if decoded.error is not None:
            self.stats.bad_request += 1
            return Reply.refusal(400, decoded.error.code, decoded.error.message)
        event = decoded.unwrap()
        if seen is not None:
            seen.sid = _sid_of(event)
        keys = _delivery_keys(route.key_of(event), request.header(IDEMPOTENCY_HEADER))
        return await self._deliveries.deliver(keys, route.handler, event)

    async def _observed(self, route: Route[Any], request: Incoming) -> Reply:
        """The answer, watched: every answer (or a failure to answer) is told to ``telemetry``."""
        telemetry = self._telemetry
        assert telemetry is not None
        started = time.perf_counter()
        try:
            observation: WebhookObservation = telemetry.webhook_received(route.name)
        except Exception:
            log.exception("telemetry raised; the webhook is handled unwatched")
            return await self._answer(route, request, None)
        seen = _Seen()
        status = 500  # what a server answers when the handler raises (or the client left)
        duplicate = False
        try:
            reply = await self._answer(route, request, seen)
            status, duplicate = reply.status, reply.duplicate
            return reply
        finally:
            answer = WebhookAnswer(
                route=route.name,
                status=status,
                duration=time.perf_counter() - started,
                duplicate=duplicate,
                sid=seen.sid,
            )
            try:
                observation.answered(answer)
            except Exception:
                log.exception("telemetry raised; the answer stands")


__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_FIELDS",
    "DEFAULT_PREFIX",
    "HEALTHZ_PATH",
    "IDEMPOTENCY_HEADER",
    "REFUSAL_LOG_BURST",
    "SIGNATURE_HEADER",
    "BodyTooLarge",
    "Incoming",
    "MalformedBody",
    "MessageHandler",
    "Reply",
    "Route",
    "StatusHandler",
    "WebhookCore",
    "WebhookReceiver",
    "WebhookStats",
]
