"""Benchmarks that need no server: memory over many sends, and the pure hot path."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import timeit
from typing import Any

from sending import SENDER, body, recipient


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def _forget(fake: Any) -> None:
    """Drop what the fake's model records per message (test-double bookkeeping only)."""
    model = fake.model
    model._messages.clear()
    model._outbound.clear()
    model._heap.clear()
    model._attempts.clear()
    model._callbacks.clear()


async def _memory(count: int, warmup: int, bounded: bool) -> dict[str, Any]:
    from ratatosk import ConnectionSettings, MessageBuilder
    from ratatosk.testing import FakeTwilio
    from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector
    from ratatosk.twilio.resilience import SendPolicy

    fake = FakeTwilio()
    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", fake.account_sid)
        .set_parameter("AuthToken", fake.auth_token)
    )
    connector = TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP,
        settings,
        transport=fake,
        send_policy=SendPolicy(rate_per_sender=1e9, burst=1e9),
    )
    (await connector.initialize()).unwrap()
    failures = 0

    async def send_range(start: int, stop: int) -> None:
        nonlocal failures
        for i in range(start, stop):
            message = (
                MessageBuilder()
                .from_phone(SENDER)
                .to_phone(recipient(i))
                .with_text(body(i))
                .build()
            )
            result = await connector.send_message(message)
            failures += not result.successful
            if bounded and i % 1000 == 999:
                _forget(fake)
            if i % 256 == 255:
                # FakeTwilio answers without suspending, so this loop would never let the
                # event loop turn: asyncio drops cancelled timers (each send's deadline)
                # only when it turns, as it does between network sends.
                await asyncio.sleep(0)

    at_start = rss_bytes()
    # Warm-up fills the bounded caches (numbers: 8,192; claimed SIDs: 10,000) first.
    await send_range(1_000_000, 1_000_000 + warmup)
    if bounded:
        _forget(fake)
    gc.collect()
    before = rss_bytes()
    await send_range(0, count)
    if bounded:
        _forget(fake)
    gc.collect()
    after = rss_bytes()
    stored = len(fake.model._outbound)
    await connector.shutdown()
    return {
        "count": count,
        "warmup": warmup,
        "bounded_fake": bounded,
        "rss_start_mb": at_start / 2**20,
        "rss_before_mb": before / 2**20,
        "rss_after_mb": after / 2**20,
        "growth_mb": (after - before) / 2**20,
        "growth_from_start_mb": (after - at_start) / 2**20,
        "fake_records_kept": stored,
        "failures": failures,
    }


def memory(count: int, warmup: int, bounded: bool) -> dict[str, Any]:
    return asyncio.run(_memory(count, warmup, bounded))


def hot_path(number: int) -> dict[str, Any]:
    """Microseconds per operation: build, validate + plan, encode, decode the answer."""
    from ratatosk import MessageBuilder
    from ratatosk.twilio import TwilioChannelSchemas, wire
    from ratatosk.twilio.outbound import SendConfig, plan_send

    schema = TwilioChannelSchemas.TWILIO_WHATSAPP
    config = SendConfig()
    to = recipient(1)

    def build() -> Any:
        return MessageBuilder().from_phone(SENDER).to_phone(to).with_text(body(1)).build()

    message = build()

    def validate() -> Any:
        return plan_send(schema, config, message)

    plan = validate()

    def encode() -> bytes:  # what the HTTP adapter sends
        return wire.encode_form(plan.request.to_form()).encode("ascii")

    def build_validate_encode() -> bytes:
        planned = plan_send(schema, config, build())
        return wire.encode_form(planned.request.to_form()).encode("ascii")

    counter = iter(range(10**9))

    def build_validate_encode_new_recipient() -> bytes:
        i = next(counter)
        fresh = MessageBuilder().from_phone(SENDER).to_phone(recipient(i)).with_text(body(i))
        planned = plan_send(schema, config, fresh.build())
        return wire.encode_form(planned.request.to_form()).encode("ascii")

    answer = json.dumps(
        {
            "sid": "SM" + "0" * 32,
            "account_sid": "AC" + "0" * 32,
            "to": to,
            "from": SENDER,
            "body": body(1),
            "status": "queued",
            "direction": "outbound-api",
            "num_segments": "1",
            "num_media": "0",
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "messaging_service_sid": None,
            "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
            "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000",
            "date_sent": "Thu, 24 Aug 2023 05:01:45 +0000",
            "uri": "/2010-04-01/Accounts/AC/Messages/SM.json",
            "api_version": "2010-04-01",
        }
    ).encode()

    def decode() -> Any:
        return wire.decode_message(wire.decode_json(answer))

    cases = {
        "build": build,
        "validate": validate,
        "encode": encode,
        "build_validate_encode": build_validate_encode,
        "build_validate_encode_new_recipient": build_validate_encode_new_recipient,
        "decode_answer": decode,
    }
    results = {}
    for name, function in cases.items():
        best = min(timeit.repeat(function, number=number, repeat=5))
        results[name] = best / number * 1e6
    return results
