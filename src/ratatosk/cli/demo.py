"""``ratatosk demo`` (``make run``): the whole package end to end on loopback.

Starts the Twilio emulator and the webhook server on free ports, sends the
documentation's three messages (the template by name), watches their signed
status callbacks arrive, receives a signed inbound message, shows a forged
one refused, and shows a few refusals that never reach Twilio.
"""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
from aiohttp import web

from ..adapters.templates import ContentApiTemplateCatalog
from ..adapters.webhook_server import create_webhook_app
from ..bootstrap import build_connector
from ..domain.content import MediaContent, MediaType, TemplateContent
from ..domain.message import Message, MessageBuilder
from ..domain.result import ReceiveResult, StatusUpdate
from ..domain.settings import ConnectionSettings
from ..domain.status import MessageStatus
from ..emulator.app import start_emulator
from .output import EXIT_FAILED, EXIT_OK, Output, status_json

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


async def demo(out: Output, *, timeout: float = 20.0) -> int:
    began = time.monotonic()
    emulator = await start_emulator(step_delay=0.05)
    updates: dict[str, MessageStatus] = {}
    inbound: list[ReceiveResult] = []
    arrived = asyncio.Event()

    async def on_status(update: StatusUpdate) -> None:
        previous = updates.get(update.message_id, MessageStatus.UNKNOWN)
        verdict = "applied" if update.status.supersedes(previous) else "ignored (older)"
        if update.status.supersedes(previous):
            updates[update.message_id] = update.status
        out.emit(
            "callback",
            f"  <- status {update.message_id[:10]}... {update.status.value:10} "
            f"signed+verified, {verdict}",
            **status_json(update),
        )
        arrived.set()

    async def on_message(received: ReceiveResult) -> None:
        inbound.append(received)
        for message in received.messages:
            out.emit(
                "inbound",
                f"  <- inbound {message.id[:10]}... from {message.sender.address if message.sender else '?'}"
                f" ({message.properties.get('ProfileName', '?')}): {message.content!r}",
                sid=message.id,
            )

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
    connector = build_connector(
        settings, environ={}, template_catalog=ContentApiTemplateCatalog.from_settings(settings)
    )
    runner: web.AppRunner | None = None
    try:
        (await connector.initialize()).unwrap()
        app = create_webhook_app(
            connector,
            public_url=public,
            validator=connector.signature_validator,
            on_message=on_message,
            on_status=on_status,
        )
        runner = web.AppRunner(app)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        out.emit(
            "start", f"Twilio emulator  {emulator.url}\nwebhook server   {public}{WEBHOOK_PATH}"
        )

        out.emit("section", "\n1. Sending the documentation's three examples")
        sids: list[str] = []
        for message in documented_messages():
            result = await connector.send_message(message)
            if result.error is not None:
                out.failure(result.error)
                return EXIT_FAILED
            sent = result.unwrap()
            sids.append(sent.provider_message_id)
            out.emit(
                "sent",
                f"  -> {message.id:14} {sent.provider_message_id} {sent.status.value}",
                message_id=message.id,
                sid=sent.provider_message_id,
            )

        out.emit("section", "\n2. Status callbacks (signed by the emulator, verified here)")
        deadline = time.monotonic() + timeout
        while any(updates.get(s) is not MessageStatus.READ for s in sids):
            if time.monotonic() > deadline:
                out.emit("timeout", "  status callbacks did not all arrive in time")
                return EXIT_FAILED
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), timeout=1.0)
            except TimeoutError:
                pass
        for sid in sids:
            status = (await connector.get_message_status(sid)).unwrap()
            out.emit(
                "final", f"  {sid} is {status.status.value}", sid=sid, status=status.status.value
            )

        out.emit("section", "\n3. An inbound message, signed by the emulator")
        reply = await emulator.inject_inbound(
            f"{public}{WEBHOOK_PATH}",
            from_=CUSTOMER,
            to=SENDER,
            body="Where is my order?",
            profile_name="Zoë Example",
        )
        out.emit("inbound-reply", f"  webhook answered {reply['status']}: {reply['body']}", **reply)

        out.emit("section", "\n4. A forged inbound message")
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{public}{WEBHOOK_PATH}",
                data={
                    "MessageSid": "SM" + "0" * 32,
                    "From": CUSTOMER,
                    "To": SENDER,
                    "Body": "pay me",
                },
                headers={"X-Twilio-Signature": "Zm9yZ2VkIHNpZ25hdHVyZQ=="},
            ) as forged,
        ):
            out.emit(
                "forged",
                f"  forged request refused with HTTP {forged.status}",
                status=forged.status,
            )
            forged_status = forged.status

        out.emit("section", "\n5. Refused before reaching Twilio")
        for label, message in _refusals():
            result = await connector.send_message(message)
            code = result.error.code if result.error else "sent?!"
            out.emit("refused", f"  {label:36} -> {code}", label=label, code=code)

        ok = len(inbound) == 1 and forged_status == 403 and reply["status"] == 200
        elapsed = time.monotonic() - began
        out.emit(
            "done",
            f"\n{'OK' if ok else 'FAILED'}: 3 sent, {len(updates)} messages tracked to READ, "
            f"{len(inbound)} inbound, forged refused ({elapsed:.1f}s)",
            ok=ok,
        )
        return EXIT_OK if ok else EXIT_FAILED
    finally:
        await connector.shutdown()
        if runner is not None:
            await runner.cleanup()
        await emulator.close()


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
