"""An event handled while Redis is down is not handled again when Twilio retries it after.

The handler of the first delivery returns while no redis-server runs: the
server answers 200 (it was handled) but cannot mark the delivery handled in
Redis. It keeps the keys and marks them once Redis answers again. So a
repeat that reaches the same server, even during the outage, is answered as
a duplicate; and once the mark is written, a repeat that reaches another
server sharing the Redis is a duplicate there too. Without the retry, that
second server would handle the event again (a restart without persistence
forgets the claim; with persistence the stale claim only delays it until the
lease runs out).

Real pieces only: a real redis-server stopped and started on its port, the
package's webhook servers (aiohttp and ASGI) on loopback, signed POSTs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlencode

import aiohttp
import pytest
from redis.asyncio import Redis

from ratatosk import ConnectionSettings, ReceiveResult
from ratatosk.adapters.redis import RedisStores
from ratatosk.testing import FakeTwilio
from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector
from ratatosk.twilio.signature import compute_signature
from redis_support import RedisServer
from webhook_apps import KINDS, Served, serve_webhooks

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "unrecorded-test-token"
PATH = "/webhooks/twilio/whatsapp"
SID = "SM" + "7" * 32
#: A hang guard for waits on a condition, never an assertion on time.
GUARD = 30.0


class Handler:
    """Counts the events it handled; the first one is held until the test lets it go."""

    def __init__(self) -> None:
        self.handled: list[str] = []
        self.entered = asyncio.Event()
        self.go = asyncio.Event()
        self.hold = True

    async def __call__(self, received: ReceiveResult) -> None:
        if self.hold:
            self.hold = False
            self.entered.set()
            await self.go.wait()
        self.handled.extend(message.id for message in received.messages)


def _form() -> dict[str, str]:
    return {
        "MessageSid": SID,
        "SmsMessageSid": SID,
        "AccountSid": ACCOUNT_SID,
        "From": "whatsapp:+15551234567",
        "To": "whatsapp:+14155238886",
        "Body": "where is my order?",
        "NumMedia": "0",
    }


async def _deliver(session: aiohttp.ClientSession, served: Served, token: str) -> int:
    """One signed delivery of the event, as Twilio sends it (its retries keep the token)."""
    form = _form()
    url = served.url + PATH
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": compute_signature(AUTH_TOKEN, url, form),
        "I-Twilio-Idempotency-Token": token,
    }
    async with session.post(url, data=urlencode(form), headers=headers) as response:
        await response.read()
        return response.status


async def _until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(GUARD):
        while not check():
            await asyncio.sleep(0.02)


@pytest.fixture
async def connector() -> AsyncIterator[TwilioWhatsAppConnector]:
    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", ACCOUNT_SID)
        .set_parameter("AuthToken", AUTH_TOKEN)
    )
    receiver = TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP, settings, transport=FakeTwilio()
    )
    async with receiver as ready:
        yield ready


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("persisted", [True, False], ids=["persisted", "not-persisted"])
async def test_an_event_handled_while_redis_was_down_is_not_handled_again(
    kind: str,
    persisted: bool,
    own_redis_server: RedisServer,
    connector: TwilioWhatsAppConnector,
) -> None:
    if persisted:  # a snapshot on a clean stop: the stale claim survives the restart
        client: Redis = own_redis_server.client()
        try:
            await client.config_set("save", "3600 1")
        finally:
            await client.aclose()
    stores = RedisStores.from_url(own_redis_server.url, timeout=1.0)
    first, other = Handler(), Handler()
    other.hold = False
    nodes: list[Served] = []
    try:
        for handler in (first, other):
            nodes.append(
                await serve_webhooks(
                    kind,
                    connector,
                    validator=connector.signature_validator,
                    on_message=handler,
                    dedup=stores.deduplicator(lease=60.0),
                    in_flight_wait=0.2,
                )
            )
        node_a, node_b = nodes
        async with aiohttp.ClientSession() as session:
            delivery = asyncio.create_task(_deliver(session, node_a, "token-1"))
            async with asyncio.timeout(GUARD):
                await first.entered.wait()
            await asyncio.to_thread(own_redis_server.stop)
            first.go.set()
            assert await delivery == 200  # handled: answering otherwise would repeat it
            assert first.handled == [SID]
            assert node_a.stats.unrecorded == 2  # the event's key and its token's

            # Twilio retries on the same node while Redis is still down: a duplicate.
            assert await _deliver(session, node_a, "token-1") == 200
            assert node_a.stats.duplicates == 1

            await asyncio.to_thread(own_redis_server.start)
            await _until(lambda: node_a.stats.unrecorded == 0)
            assert node_a.stats.recorded_late == 2

            # ... and on another node, once Redis is back: a duplicate there too.
            assert await _deliver(session, node_b, "token-2") == 200
            assert node_b.stats.duplicates == 1
            assert await _deliver(session, node_a, "token-3") == 200
        assert first.handled == [SID]
        assert other.handled == []
    finally:
        for served in nodes:
            await served.close()
        await stores.close()
