"""``ratatosk demo`` (``make run``): the whole package end to end on loopback.

Starts the Twilio emulator and the webhook server on free ports, sends the
documentation's three messages (the template by name), watches their signed
status callbacks arrive, receives a signed inbound message and a customer's
photo (fetched by its Media URL, the credentials kept to Twilio's API origin),
shows a forged one refused, and shows a few refusals that never reach Twilio.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import aiohttp

from ..adapters.http11_server import WebhookServer, serve_webhooks
from ..bootstrap import build_connector, build_webhook_core
from ..domain.content import MediaContent, MediaType, TemplateContent
from ..domain.message import Message, MessageBuilder
from ..domain.result import ReceiveResult, StatusUpdate
from ..domain.settings import ConnectionSettings
from ..domain.status import MessageStatus
from ..emulator.app import RunningEmulator, start_emulator
from ..emulator.model import InboundMedia
from ..ports import MediaPolicy
from ..twilio.connector import TwilioWhatsAppConnector
from .output import EXIT_FAILED, EXIT_OK, Output, describe_content, status_json

SENDER = "whatsapp:+14155238886"
RECIPIENT = "whatsapp:+15550002222"
CUSTOMER = "whatsapp:+15551234567"
WEBHOOK_PATH = "/webhooks/twilio/whatsapp"


def documented_messages() -> list[Message]:
    """The connector documentation's text, template and media-with-caption examples."""
    return [
        MessageBuilder()
        .with_id("wa-1")
        .from_phone(SENDER)
        .to_phone(RECIPIENT)
        .with_text("Hello from WhatsApp!")
        .build(),
        MessageBuilder()
        .with_id("wa-template-1")
        .to_phone(RECIPIENT)
        .with_content(
            TemplateContent(
                "order_confirmed", {"order_id": "ORD-123", "delivery_date": "2026-05-15"}
            )
        )
        .build(),
        MessageBuilder()
        .with_id("wa-media-1")
        .from_phone(SENDER)
        .to_phone(RECIPIENT)
        .with_content(
            MediaContent(MediaType.IMAGE, "product.jpg", "https://example.com/product.jpg")
        )
        .with_property("caption", "Check out our new product!")
        .build(),
    ]


class _Watcher:
    """Collects the webhook server's events and prints them as they arrive."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.updates: dict[str, MessageStatus] = {}
        self.ignored: list[StatusUpdate] = []
        self.inbound: list[ReceiveResult] = []
        self.arrived = asyncio.Event()

    async def on_status(self, update: StatusUpdate) -> None:
        # The connector's status tracker says whether this report moved the message forward.
        current = MessageStatus(update.data["current_status"])
        self.updates[update.message_id] = current
        if update.data["advanced"]:
            verdict = "applied"
        else:
            verdict = f"ignored (already {current.value})"
            self.ignored.append(update)
        self.out.emit(
            "callback",
            f"  <- status {update.message_id[:10]}... {update.status.value:10} "
            f"signed+verified, {verdict}",
            **status_json(update),
        )
        self.arrived.set()

    async def on_message(self, received: ReceiveResult) -> None:
        self.inbound.append(received)
        for message in received.messages:
            sender = message.sender.address if message.sender else "?"
            profile = message.properties.get("ProfileName", "?")
            self.out.emit(
                "inbound",
                f"  <- inbound {message.id[:10]}... from {sender} ({profile}): "
                f"{describe_content(message.content)}",
                sid=message.id,
            )

    async def wait_until_read(self, sids: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while any(self.updates.get(s) is not MessageStatus.READ for s in sids):
            if time.monotonic() > deadline:
                return False
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), timeout=1.0)
        return True


async def demo(out: Output, *, timeout: float = 20.0) -> int:
    """Run the whole transcript; EXIT_OK only when every step did what it shows."""
    began = time.monotonic()
    emulator = await start_emulator(step_delay=0.05)
    watcher = _Watcher(out)
    # Bind the webhook socket first: its URL goes into StatusCallback.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    public = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", emulator.account_sid)
        .set_parameter("AuthToken", emulator.auth_token)
        .set_parameter("ApiBaseUrl", emulator.url)
        .set_parameter("ContentApiBaseUrl", emulator.url)
        .set_parameter("FromNumber", SENDER)
        .set_parameter("StatusCallback", f"{public}{WEBHOOK_PATH}/status")
    )
    connector = build_connector(settings, environ={})
    server: WebhookServer | None = None
    try:
        (await connector.initialize()).unwrap()
        core = build_webhook_core(
            connector, public_url=public, on_message=watcher.on_message, on_status=watcher.on_status
        )
        server = await serve_webhooks(core, sock=sock)
        out.emit(
            "start", f"Twilio emulator  {emulator.url}\nwebhook server   {public}{WEBHOOK_PATH}"
        )
        sids = await _send_examples(out, connector)
        if sids is None:
            return EXIT_FAILED
        out.emit("section", "\n2. Status callbacks (signed by the emulator, verified here)")
        if not await watcher.wait_until_read(sids, timeout):
            out.emit("timeout", "  status callbacks did not all arrive in time")
            return EXIT_FAILED
        for sid in sids:
            status = (await connector.get_message_status(sid)).unwrap()
            out.emit(
                "final", f"  {sid} is {status.status.value}", sid=sid, status=status.status.value
            )
        late = await _out_of_order(out, connector, emulator, watcher, timeout)
        reply_status = await _inbound(out, emulator, public)
        photo = await _inbound_photo(out, connector, emulator, public)
        forged_status = await _forged(out, public)
        await _show_refusals(out, connector)
        ok = late and photo and len(watcher.inbound) == 2
        ok = ok and forged_status == 403 and reply_status == 200
        out.emit(
            "done",
            f"\n{'OK' if ok else 'FAILED'}: {len(sids) + 1} sent, "
            f"{len(watcher.updates)} messages tracked to READ, "
            f"{len(watcher.ignored)} late callbacks ignored, "
            f"{len(watcher.inbound)} inbound, {int(photo)} photo fetched, forged refused "
            f"({time.monotonic() - began:.1f}s)",
            ok=ok,
        )
        return EXIT_OK if ok else EXIT_FAILED
    finally:
        await connector.shutdown()
        if server is not None:
            await server.close()
        await emulator.close()


async def _out_of_order(
    out: Output,
    connector: TwilioWhatsAppConnector,
    emulator: RunningEmulator,
    watcher: _Watcher,
    timeout: float,
) -> bool:
    """Callbacks as Twilio can deliver them: ``read`` first, then ``sent`` and ``delivered``."""
    out.emit("section", "\n   Callbacks out of order: read first, then a late sent and delivered")
    message = MessageBuilder().to_phone(RECIPIENT).with_text("Tracking out of order").build()
    result = await connector.send_message(message)
    if result.error is not None:
        out.failure(result.error)
        return False
    sid = result.unwrap().provider_message_id
    emulator.model.set_status(sid, "read")
    emulator.model.queue_callbacks(sid, ["sent", "delivered"])
    deadline = time.monotonic() + timeout
    while sum(u.message_id == sid for u in watcher.ignored) < 2:
        if time.monotonic() > deadline:
            out.emit("timeout", "  the late callbacks did not arrive in time")
            return False
        watcher.arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watcher.arrived.wait(), timeout=1.0)
    tracked = (await connector.get_message_status(sid, prefer_tracked=True)).unwrap()
    out.emit(
        "tracked",
        f"  {sid} is {tracked.status.value} (from the callbacks received, no request)",
        sid=sid,
        status=tracked.status.value,
    )
    return tracked.status is MessageStatus.READ


async def _send_examples(out: Output, connector: TwilioWhatsAppConnector) -> list[str] | None:
    out.emit("section", "\n1. Sending the documentation's three examples")
    sids: list[str] = []
    for message in documented_messages():
        result = await connector.send_message(message)
        if result.error is not None:
            out.failure(result.error)
            return None
        sent = result.unwrap()
        sids.append(sent.provider_message_id)
        out.emit(
            "sent",
            f"  -> {message.id:14} {sent.provider_message_id} {sent.status.value}",
            message_id=message.id,
            sid=sent.provider_message_id,
        )
    return sids


async def _inbound(out: Output, emulator: RunningEmulator, public: str) -> int:
    out.emit("section", "\n3. An inbound message, signed by the emulator")
    reply = await emulator.inject_inbound(
        f"{public}{WEBHOOK_PATH}",
        from_=CUSTOMER,
        to=SENDER,
        body="Where is my order?",
        profile_name="Zoë Example",
    )
    out.emit("inbound-reply", f"  webhook answered {reply['status']}: {reply['body']}", **reply)
    return int(reply["status"])


async def _inbound_photo(
    out: Output, connector: TwilioWhatsAppConnector, emulator: RunningEmulator, public: str
) -> bool:
    """A customer's photo: Twilio's Media URL needs credentials, then redirects to its CDN."""
    photo = bytes(range(256)) * 16
    reply = await emulator.inject_inbound(
        f"{public}{WEBHOOK_PATH}", from_=CUSTOMER, to=SENDER,
        media=[InboundMedia("image/jpeg", photo)],
    )  # fmt: skip
    [url] = reply["media_urls"]
    out.emit("inbound-photo", f"  <- a photo; its Media URL {url[:48]}...", url=url)
    refused = await connector.fetch_media(url)  # Twilio's media hosts only, by default
    allowed = MediaPolicy(allowed_hosts=(emulator.media_host,))
    fetched = await connector.fetch_media(url, policy=allowed)
    if fetched.error is not None:
        out.failure(fetched.error)
        return False
    if refused.error is None:
        out.emit("unexpected", "  the default policy let the emulator's CDN through")
        return False
    media = fetched.unwrap()
    out.emit(
        "media",
        f"  fetched {media.content_type}, {media.size} bytes: credentials to the API origin "
        f"only, the CDN redirect ({emulator.media_host}) followed without them",
        content_type=media.content_type,
        size=media.size,
    )
    out.emit(
        "media-refused",
        f"  with the default policy (Twilio's media hosts only): {refused.error.code}",
        code=refused.error.code,
    )
    return media.data == photo


async def _forged(out: Output, public: str) -> int:
    out.emit("section", "\n4. A forged inbound message")
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{public}{WEBHOOK_PATH}",
            data={"MessageSid": "SM" + "0" * 32, "From": CUSTOMER, "To": SENDER, "Body": "pay me"},
            headers={"X-Twilio-Signature": "Zm9yZ2VkIHNpZ25hdHVyZQ=="},
        ) as forged,
    ):
        out.emit(
            "forged", f"  forged request refused with HTTP {forged.status}", status=forged.status
        )
        return forged.status


async def _show_refusals(out: Output, connector: TwilioWhatsAppConnector) -> None:
    out.emit("section", "\n5. Refused before reaching Twilio")
    for label, message in _refusals():
        result = await connector.send_message(message)
        code = result.error.code if result.error else "sent?!"
        out.emit("refused", f"  {label:36} -> {code}", label=label, code=code)


def _refusals() -> list[tuple[str, Message]]:
    def base() -> MessageBuilder:
        return MessageBuilder().from_phone(SENDER).to_phone(RECIPIENT)

    return [
        ("recipient without whatsapp:+E164", base().to_phone("5550002222").with_text("hi").build()),
        (
            "template not approved for WhatsApp",
            base().with_content(TemplateContent("pending_promo", {})).build(),
        ),
        (
            "template variable missing",
            base().with_content(TemplateContent("order_confirmed", {"order_id": "1"})).build(),
        ),
        ("body over 1600 characters", base().with_text("x" * 1601).build()),
    ]
