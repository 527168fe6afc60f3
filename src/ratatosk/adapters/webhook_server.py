"""The webhook server (adapters layer): Twilio's POSTs in, verified events out.

``create_webhook_app`` builds an aiohttp application with two routes:

* ``POST {prefix}`` - inbound WhatsApp messages -> ``on_message(ReceiveResult)``
* ``POST {prefix}/status`` - status callbacks -> ``on_status(StatusUpdate)``

and ``GET /healthz``. Every request passes the same gates, cheapest first,
and nothing is decoded into messages before the signature holds:

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
   a failure that repeats on every delivery does not keep Twilio retrying.

Success is ``200`` with an empty TwiML ``<Response/>`` as ``text/xml``.
Error answers are JSON ``{"code": ..., "message": ...}``; they never echo
the body or anything secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final, Protocol, TypeVar

import attrs
from aiohttp import web

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
)
from ..twilio.errors import TwilioErrorCodes
from ..twilio.signature_diagnosis import FORWARDED_HEADERS, diagnose, summary
from ..twilio.twiml import TwiML
from ..twilio.wire import parse_form
from .dedup import InMemoryDeduplicator
from .http_server import LogBudget

log = logging.getLogger("ratatosk.webhooks")

DEFAULT_PREFIX: Final = "/webhooks/twilio/whatsapp"
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
    """Counters a load test or a metrics exporter can read from ``app[STATS]``."""

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


STATS: Final = web.AppKey("ratatosk.webhook_stats", WebhookStats)


class _Refusal(Exception):
    """An answer decided before the handler runs."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self, *, retry_after: int | None = None) -> web.Response:
        body = json.dumps({"code": self.code, "message": self.message})
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return web.Response(
            status=self.status, text=body, content_type="application/json", headers=headers
        )


def _twiml_ok() -> web.Response:
    return web.Response(text=TwiML.EMPTY, content_type=TwiML.CONTENT_TYPE)


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

    async def admit(self, request: web.Request) -> MessageSource:
        """The verified body, or a :class:`_Refusal` raised before any decoding."""
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            self.stats.refused_size += 1
            raise _Refusal(413, MessagingErrorCodes.INVALID_WEBHOOK_DATA, "body too large")
        try:
            if request.content.is_eof():  # the usual case: the body came with the headers
                raw = await request.read()
            else:
                async with asyncio.timeout(self.body_timeout):
                    raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self.stats.refused_size += 1
            raise _Refusal(
                413, MessagingErrorCodes.INVALID_WEBHOOK_DATA, "body too large"
            ) from None
        except TimeoutError:
            self.stats.timeouts += 1
            raise _Refusal(408, MessagingErrorCodes.INVALID_WEBHOOK_DATA, "body too slow") from None
        source = MessageSource.from_content_type(request.headers.get("Content-Type"), raw)
        if source.format is SourceFormat.OTHER:
            self.stats.refused_media_type += 1
            raise _Refusal(
                415,
                MessagingErrorCodes.UNSUPPORTED_CONTENT_TYPE,
                "send application/x-www-form-urlencoded or application/json",
            )
        signature = request.headers.get(SIGNATURE_HEADER)
        url = self.url_of(request)
        if source.format is SourceFormat.JSON:
            # bodySHA256 is over the bytes sent: hash text that encodes back to them exactly.
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                self.stats.bad_request += 1
                raise _Refusal(
                    400, MessagingErrorCodes.INVALID_WEBHOOK_DATA, "a JSON body must be UTF-8"
                ) from None
            params: Mapping[str, Sequence[str]] | str = text
        else:
            try:
                if source.body.count("&") + 1 > self.max_fields:
                    raise ValueError("too many fields")
                form = parse_form(source.body)
            except ValueError:
                self.stats.refused_size += 1
                raise _Refusal(
                    413, MessagingErrorCodes.INVALID_WEBHOOK_DATA, "too many fields"
                ) from None
            params = form
            # The decoder reads the fields just verified: one parse, and nothing else decoded.
            source = attrs.evolve(source, form=form)
        if not self.validator.validate(url, params, signature):
            self.stats.refused_signature += 1
            self._explain_refusal(request, url, params, signature)
            raise _Refusal(
                403, TwilioErrorCodes.INVALID_SIGNATURE, "X-Twilio-Signature does not match"
            )
        return source

    def _explain_refusal(
        self,
        request: web.Request,
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
        headers = {name: request.headers.getall(name, []) for name in ("Host", *FORWARDED_HEADERS)}
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
            request.raw_path[:200],
            self.url_source(request),
            summary(diagnosis),
            "".join("; " + note for note in notes),
        )

    def url_source(self, request: web.Request) -> str:
        """Where :meth:`url_of` takes the scheme and host from, in words."""
        if self.trust_forwarded and self._forwarded(request) is not None:
            return "X-Forwarded-Proto/-Host (trusted)"
        return "public_url" if self.public_url is not None else "the request's Host"

    def url_of(self, request: web.Request) -> str:
        """The URL Twilio signed: the public base plus the path and query as sent."""
        path = request.raw_path
        forwarded = self._forwarded(request) if self.trust_forwarded else None
        if forwarded is not None:
            return forwarded + path
        if self.public_url is not None:
            return self.public_url + path
        return f"{request.scheme}://{request.host}{path}"

    @staticmethod
    def _forwarded(request: web.Request) -> str | None:
        """``proto://host`` from ``X-Forwarded-*``, when both are there.

        Of several values (``a, b`` or repeated headers) the last is used:
        each proxy appends what it saw, so the last one was set by the proxy
        next to this server, the only one it trusts; the first could be
        anything the client sent.
        """
        proto = _nearest(request.headers.getall("X-Forwarded-Proto", []))
        host = _nearest(request.headers.getall("X-Forwarded-Host", []))
        return f"{proto}://{host}" if proto and host else None


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
    """

    _COUNTED_EVENTS: Final = 10_000

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

    async def deliver(
        self, keys: Sequence[str], call: Callable[[], Awaitable[None]]
    ) -> web.Response:
        """Claim every key, run ``call`` once, and settle the keys by its outcome.

        Any key already handled makes the delivery a repeat; the keys claimed
        before it are released, so they stay free for the event itself.
        """
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
            await call()
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
            return _Refusal(500, "HANDLER_FAILED", "the handler failed").response()
        except BaseException:  # cancelled mid-handler: not handled, so not a duplicate later
            await self._release(held)
            raise
        await self._complete(held)
        self._failures.pop(keys[0], None)
        self._stats.handled += 1
        return _twiml_ok()

    def _count_failure(self, event_key: str) -> int:
        failures = self._failures.pop(event_key, 0) + 1
        self._failures[event_key] = failures
        if len(self._failures) > self._COUNTED_EVENTS:
            self._failures.popitem(last=False)
        return failures

    async def _complete(self, keys: Sequence[str]) -> None:
        try:
            for key in keys:
                await self._dedup.complete(key)
        except StateStoreError as exc:  # handled all the same: answering 503 would repeat it
            log.error("a handled webhook could not be marked handled: %s", exc)

    def store_unavailable(self, exc: StateStoreError) -> web.Response:
        self._stats.store_unavailable += 1
        log.error("webhook answered 503: %s", exc)
        return _Refusal(
            503,
            TwilioErrorCodes.STATE_STORE_UNAVAILABLE,
            "the shared state store cannot be reached; retry later",
        ).response(retry_after=STORE_RETRY_AFTER)

    def _not_first(self, claim: Claim) -> web.Response:
        if claim is Claim.REPEAT:
            self._stats.duplicates += 1
            repeat = _twiml_ok()
            repeat[_DUPLICATE] = True
            return repeat
        self._stats.in_flight += 1
        return _Refusal(
            503, "DELIVERY_IN_FLIGHT", "this event is being handled; retry later"
        ).response(retry_after=int(self._wait) + 1)

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
    keys = ["event:" + event_key]
    if token:
        if len(token) > _MAX_TOKEN_KEY:
            token = "sha256:" + hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
        keys.append("token:" + token)
    return tuple(keys)


def _message_key(received: ReceiveResult) -> str:
    return "message:" + ",".join(m.id for m in received.messages)


def _status_key(update: StatusUpdate) -> str:
    # Twilio's own status, not the kernel's: two Twilio statuses can map alike
    # (failed and undelivered) and each is an event of its own; so is one
    # status reported again with another error code.
    twilio_status = str(update.data.get("twilio_status") or update.status.value)
    error_code = "" if update.error_code is None else str(update.error_code)
    return f"status:{update.message_id}:{twilio_status.strip().lower()}:{error_code}"


#: Set on a 200 answered to a repeat delivery (the handler was not called).
_DUPLICATE: Final = web.ResponseKey("ratatosk.duplicate", bool)
#: The decoded event's MessageSid, kept on the request for telemetry.
_EVENT_SID: Final = web.RequestKey("ratatosk.event_sid", str)


def _sid_of(event: ReceiveResult | StatusUpdate) -> str:
    if isinstance(event, StatusUpdate):
        return event.message_id
    return ",".join(m.id for m in event.messages)


def _observed(
    handle: Callable[[web.Request], Awaitable[web.Response]], name: str, telemetry: Telemetry
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``handle``, watched: every answer (or a failure to answer) is told to ``telemetry``."""

    async def observed(request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            observation = telemetry.webhook_received(name)
        except Exception:
            log.exception("telemetry raised; the webhook is handled unwatched")
            return await handle(request)
        status = 500  # what aiohttp answers when the handler raises (or the client left)
        duplicate = False
        try:
            response = await handle(request)
            status, duplicate = response.status, response.get(_DUPLICATE, False)
            return response
        finally:
            answer = WebhookAnswer(
                route=name,
                status=status,
                duration=time.perf_counter() - started,
                duplicate=duplicate,
                sid=request.get(_EVENT_SID),
            )
            try:
                observation.answered(answer)
            except Exception:
                log.exception("telemetry raised; the answer stands")

    return observed


def create_webhook_app(
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
) -> web.Application:
    """An aiohttp app that verifies Twilio's webhooks and hands typed events to you.

    ``public_url`` is the scheme and host Twilio calls (``https://example.com``,
    or with a path the proxy strips); the signature covers the full URL, so it
    must match what is configured at Twilio. Without it the request's own Host
    is used, which is right only when nothing rewrites it. ``trust_forwarded``
    takes ``X-Forwarded-Proto``/``-Host`` instead: enable it only behind a proxy
    that sets them. ``dedup`` is the store of deliveries (in memory by default;
    a shared one when several servers receive), and ``in_flight_wait`` how long
    a repeat waits for the first delivery's handler before it is answered 503.
    After ``max_handler_attempts`` failures of the handler on one event, the
    event is given up (logged, and later deliveries answered 200).
    ``telemetry`` is told of every answer (route, status, duplicate or not,
    duration); the handler runs inside that observation (an OpenTelemetry
    span is current while it runs).
    """
    stats = WebhookStats()
    gate = _Gate(
        validator=validator,
        public_url=public_url.rstrip("/") if public_url else None,
        trust_forwarded=trust_forwarded,
        max_body_bytes=max_body_bytes,
        max_fields=max_fields,
        body_timeout=body_timeout,
        stats=stats,
    )
    deliveries = _Deliveries(
        dedup if dedup is not None else InMemoryDeduplicator(),
        stats,
        in_flight_wait,
        max_handler_attempts,
    )

    def route(
        name: str,
        decode: Callable[[MessageSource], Awaitable[ConnectorResult[E]]],
        key_of: Callable[[E], str],
        handler: Callable[[E], Awaitable[None]] | None,
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """One webhook route: gate, decode through the connector, dedup, hand off."""

        async def handle(request: web.Request) -> web.Response:
            try:
                source = await gate.admit(request)
            except _Refusal as refusal:
                return refusal.response()
            try:
                decoded = await decode(source)  # records conversation windows, maybe in Redis
            except StateStoreError as exc:
                return deliveries.store_unavailable(exc)
            if decoded.error is not None:
                stats.bad_request += 1
                return _Refusal(400, decoded.error.code, decoded.error.message).response()
            event = decoded.unwrap()
            if telemetry is not None:
                request[_EVENT_SID] = _sid_of(event)
            keys = _delivery_keys(key_of(event), request.headers.get(IDEMPOTENCY_HEADER))

            async def call() -> None:
                if handler is not None:
                    await handler(event)

            return await deliveries.deliver(keys, call)

        return handle if telemetry is None else _observed(handle, name, telemetry)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=max_body_bytes)
    app[STATS] = stats
    prefix = "/" + path_prefix.strip("/")
    app.router.add_post(
        prefix, route("message", receiver.receive_messages, _message_key, on_message)
    )
    app.router.add_post(
        prefix + "/status",
        route("status", receiver.receive_message_status, _status_key, on_status),
    )
    app.router.add_get("/healthz", healthz)
    return app


__all__ = [
    "DEFAULT_PREFIX",
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "STATS",
    "WebhookReceiver",
    "WebhookStats",
    "create_webhook_app",
]
