"""Status callback delivery and signed inbound webhooks over HTTP (emulator layer).

The I/O half of the emulator's HTTP face: one shared ``ClientSession`` per
app, a background task that advances the model every tick and POSTs the
callbacks it queued (each message's callbacks in order, a connection failure
retried once with the same ``I-Twilio-Idempotency-Token``), and the POST of
a signed inbound message to a webhook. Headers are Twilio's
(``User-Agent: TwilioProxy/1.1``, ``X-Twilio-Signature``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final
from urllib.parse import urlencode

import aiohttp
import attrs
from aiohttp import web

from .model import API_BASE, InboundMedia, Location, StatusCallback, TwilioModel

USER_AGENT: Final = "TwilioProxy/1.1"
#: The delivery log keeps the most recent deliveries only (benchmarks send many).
MAX_DELIVERIES: Final = 10_000


@attrs.frozen(kw_only=True)
class Delivery:
    """How one status callback delivery went: HTTP status, or the error after retries."""

    url: str
    sid: str
    status: str
    idempotency_token: str
    attempts: int
    http_status: int | None = None
    error: str | None = None


@attrs.define
class EmulatorState:
    """Runtime state of one emulator app (session, tasks, delivery log)."""

    callback_delay: float
    callback_retries: int
    public_base_url: str | None
    #: Where the inbound messages' Media URLs point, and where they redirect (set on start).
    api_base_url: str | None = None
    media_base_url: str | None = None
    session: aiohttp.ClientSession | None = None
    tasks: set[asyncio.Task[None]] = attrs.field(factory=set)
    deliveries: deque[Delivery] = attrs.field(factory=lambda: deque(maxlen=MAX_DELIVERIES))


MODEL_KEY: Final = web.AppKey("model", TwilioModel)
STATE_KEY: Final = web.AppKey("state", EmulatorState)


async def lifecycle(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE_KEY]
    state.session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=15, connect=5),
        headers={"User-Agent": USER_AGENT},
    )
    pump = asyncio.create_task(_pump(app))
    try:
        yield
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        for task in list(state.tasks):
            task.cancel()
        await asyncio.gather(*state.tasks, return_exceptions=True)
        await state.session.close()


async def _pump(app: web.Application) -> None:
    """Advance statuses every tick; deliver each message's callbacks in order."""
    model, state = app[MODEL_KEY], app[STATE_KEY]
    while True:
        model.advance()
        by_sid: dict[str, list[StatusCallback]] = {}
        for callback in model.due_callbacks():
            by_sid.setdefault(callback.sid, []).append(callback)
        for callbacks in by_sid.values():
            task = asyncio.create_task(_deliver_in_order(state, callbacks))
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)
        await asyncio.sleep(state.callback_delay)


async def _deliver_in_order(state: EmulatorState, callbacks: Sequence[StatusCallback]) -> None:
    for callback in callbacks:
        state.deliveries.append(await deliver_callback(state, callback))


async def deliver_callback(state: EmulatorState, callback: StatusCallback) -> Delivery:
    """POST one signed callback; a connection failure is retried with the same token."""
    assert state.session is not None
    body = urlencode(dict(callback.params))
    error: str | None = None
    attempt = 0
    for attempt in range(1, state.callback_retries + 2):
        try:
            async with state.session.post(
                callback.url, data=body.encode(), headers=callback.headers
            ) as response:
                await response.read()
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            continue  # Twilio retries connection failures (rc=1 by default)
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
            break
        return Delivery(
            url=callback.url,
            sid=callback.sid,
            status=callback.status,
            idempotency_token=callback.idempotency_token,
            attempts=attempt,
            http_status=response.status,
        )
    return Delivery(
        url=callback.url,
        sid=callback.sid,
        status=callback.status,
        idempotency_token=callback.idempotency_token,
        attempts=attempt,
        error=error,
    )


async def send_inbound(
    app: web.Application,
    url: str,
    *,
    from_: str,
    to: str,
    body: str = "",
    media: Sequence[InboundMedia | tuple[str, str] | str] = (),
    location: Location | tuple[float, float] | None = None,
    button: tuple[str, str] | str | None = None,
    profile_name: str | None = None,
    reply_to_sid: str | None = None,
) -> dict[str, Any]:
    """POST a signed inbound message to ``url``; returns the webhook's status and body.

    :class:`InboundMedia` items are stored and served by this emulator: the
    webhook carries their Media URLs on its API origin.
    """
    model, state = app[MODEL_KEY], app[STATE_KEY]
    if state.session is None:
        raise RuntimeError("the emulator app is not running")
    form = model.inbound_message(
        from_, to, body=body, media=media, location=location, button=button,
        profile_name=profile_name, reply_to_sid=reply_to_sid,
        api_base=state.api_base_url or state.public_base_url or API_BASE,
    )  # fmt: skip
    headers = {
        "Accept": "*/*",
        "Content-Type": "application/x-www-form-urlencoded",
        "I-Twilio-Idempotency-Token": model.idempotency_token(),
        "X-Twilio-Signature": model.sign(url, form),
    }
    async with state.session.post(url, data=urlencode(form).encode(), headers=headers) as answer:
        text = await answer.text()
        return {
            "status": answer.status,
            "body": text,
            "content_type": answer.content_type,
            "message_sid": form["MessageSid"],
            "media_urls": [form[f"MediaUrl{i}"] for i in range(int(form["NumMedia"]))],
        }


__all__ = [
    "MODEL_KEY",
    "STATE_KEY",
    "USER_AGENT",
    "Delivery",
    "EmulatorState",
    "deliver_callback",
    "lifecycle",
    "send_inbound",
]
