"""What the Redis adapters add to their ports' contracts, on a real redis-server.

The port suites (``tests/ports``) run the Redis adapters with a test clock;
these check what only a shared store has: the server's own clock, several
processes' adapters on one key, leases of dead holders, the key layout that
``docs/scaling.md`` documents, and the store failing.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from redis.asyncio import Redis

from ratatosk.adapters.redis import (
    RedisConversationWindows,
    RedisDeduplicator,
    RedisRateLimiter,
    RedisSendLedger,
    RedisStatusTracker,
    RedisStores,
    RedisTemplateCache,
    redacted,
)
from ratatosk.ports import Claim, LedgerState, StateStoreError, StatusEvent, TemplateInfo
from redis_support import RedisServer, RedisTimeMachine

SENDER = "whatsapp:+14155238886"


class TestTheServersClock:
    async def test_reservations_are_spaced_on_the_servers_clock(
        self, redis_client: Redis, redis_prefix: str
    ) -> None:
        """No clock given: Redis's TIME decides, and the burst, then the rate, still hold."""
        # One request per 100 s: the few milliseconds between calls cannot blur the answers.
        limiter = RedisRateLimiter(redis_client, 0.01, 3.0, prefix=redis_prefix)
        waits = [await limiter.reserve(SENDER) for _ in range(5)]
        assert waits[:3] == [0.0, 0.0, 0.0]
        # Booked behind one another: the fourth waits for one refill, the fifth for two.
        assert 90.0 < waits[3] <= 100.0
        assert 190.0 < waits[4] <= 200.0

    async def test_two_limiters_on_two_clients_share_one_budget(
        self, redis_server: RedisServer, redis_prefix: str
    ) -> None:
        """Two processes' limiters (two clients) count against the same sender's bucket."""
        first, second = redis_server.client(), redis_server.client()
        try:
            a = RedisRateLimiter(first, 1.0, 2.0, prefix=redis_prefix)
            b = RedisRateLimiter(second, 1.0, 2.0, prefix=redis_prefix)
            assert await a.reserve(SENDER) == 0.0
            assert await b.reserve(SENDER) == 0.0
            assert await a.reserve(SENDER) > 0.5  # the burst of 2 is spent across both
        finally:
            await first.aclose()
            await second.aclose()


class TestSharedKeys:
    async def test_a_release_after_the_lease_lapsed_leaves_the_new_holder_alone(
        self, redis_server: RedisServer, redis_prefix: str
    ) -> None:
        """Server A's claim lapses, B takes over; A's late release must not free B's claim."""
        machine = RedisTimeMachine(redis_server)
        try:
            node_a = RedisDeduplicator(machine.client, prefix=redis_prefix, lease=60.0)
            node_b = RedisDeduplicator(machine.client, prefix=redis_prefix, lease=60.0)
            assert await node_a.claim("event:SM1") is Claim.FIRST
            await _age(machine.client, redis_prefix, 61.0)
            assert await node_b.claim("event:SM1") is Claim.FIRST
            await node_a.release("event:SM1")
            assert await node_a.claim("event:SM1") is Claim.IN_FLIGHT
            await node_b.complete("event:SM1")
            assert await node_a.claim("event:SM1") is Claim.REPEAT
        finally:
            await machine.close()

    async def test_a_waiting_repeat_on_another_node_sees_the_outcome(
        self, redis_server: RedisServer, redis_prefix: str
    ) -> None:
        first, second = redis_server.client(), redis_server.client()
        try:
            node_a = RedisDeduplicator(first, prefix=redis_prefix)
            node_b = RedisDeduplicator(second, prefix=redis_prefix)
            assert await node_a.claim("event:SM2") is Claim.FIRST
            waiter = asyncio.create_task(node_b.claim("event:SM2", wait=30.0))
            await asyncio.sleep(0.1)
            assert not waiter.done()
            await node_a.complete("event:SM2")
            assert await waiter is Claim.REPEAT
        finally:
            await first.aclose()
            await second.aclose()

    async def test_a_send_of_a_dead_process_leaves_its_lane_after_member_ttl(
        self, redis_server: RedisServer
    ) -> None:
        """In memory a send stays in its lane until it leaves; in Redis its process may die."""
        machine = RedisTimeMachine(redis_server)
        try:
            ledger = RedisSendLedger(
                machine.client, prefix=machine.prefix, member_ttl=600.0, now=machine
            )
            await ledger.lane_enter("lane", "crashed", "0|x")
            await machine.advance(599.0)
            assert set(await ledger.lane_others("lane", "me")) == {"crashed"}
            await machine.advance(2.0)
            assert await ledger.lane_others("lane", "me") == {}
        finally:
            await machine.close()

    async def test_an_outcome_round_trips_as_json(
        self, redis_client: Redis, redis_prefix: str
    ) -> None:
        ledger = RedisSendLedger(redis_client, prefix=redis_prefix)
        outcome = {"error": {"code": "SEND_OUTCOME_UNKNOWN", "details": {"to": "w\udc80", "n": 1}}}
        assert (await ledger.begin("m1", "f")).state is LedgerState.NEW
        await ledger.finish("m1", outcome)
        again = await ledger.begin("m1", "f")
        assert again.state is LedgerState.DONE
        assert again.outcome == outcome

    async def test_conversation_windows_expire_after_the_window_and_its_slack(
        self, redis_server: RedisServer
    ) -> None:
        machine = RedisTimeMachine(redis_server)
        try:
            windows = RedisConversationWindows(machine.client, prefix=machine.prefix)
            at = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
            await windows.record_inbound("whatsapp:+15550002222", SENDER, at)
            await machine.advance(25 * 3600.0 - 1)
            assert await windows.last_inbound("whatsapp:+15550002222", None) == at
            await machine.advance(2.0)
            assert await windows.last_inbound("whatsapp:+15550002222", None) is None
        finally:
            await machine.close()


class TestKeyLayout:
    async def test_keys_carry_the_prefix_and_the_documented_hash_tags(
        self, redis_client: Redis, redis_prefix: str
    ) -> None:
        """The layout docs/scaling.md describes, key by key."""
        p = redis_prefix
        await RedisRateLimiter(redis_client, 10.0, 1.0, prefix=p).reserve(SENDER)
        ledger = RedisSendLedger(redis_client, prefix=p)
        await ledger.begin("m1", "f")
        await ledger.lane_enter(f"{SENDER}>whatsapp:+1555", "m1", "0|x")
        await ledger.claim_sid("SM1", "m1", adopted=False)
        dedup = RedisDeduplicator(redis_client, prefix=p)
        await dedup.claim("event:SM1")
        info = TemplateInfo(sid="HX" + "a" * 32, friendly_name="order_confirmed", language="en")
        await RedisTemplateCache(redis_client, prefix=p).put("order_confirmed", "en", info, 60.0)
        windows = RedisConversationWindows(redis_client, prefix=p)
        await windows.record_inbound("whatsapp:+1555", SENDER, dt.datetime.now(dt.UTC))
        sent = StatusEvent(status="sent", at=dt.datetime.now(dt.UTC))
        await RedisStatusTracker(redis_client, prefix=p).apply("SM1", sent)
        keys = {key async for key in redis_client.scan_iter(match=p + "*")}
        assert keys == {
            f"{p}rate:{{{SENDER}}}",
            f"{p}id:m1",
            f"{p}lane:{{{SENDER}>whatsapp:+1555}}",
            f"{p}sid:SM1",
            f"{p}dedup:event:SM1",
            f'{p}template:["order_confirmed","en"]',
            f"{p}window:{{whatsapp:+1555}}",
            f"{p}status:SM1",
        }
        for key in keys:  # nothing is kept for ever
            assert await redis_client.pttl(key) > 0, key

    def test_a_prefix_cannot_break_the_hash_tags(self, redis_client: Redis) -> None:
        with pytest.raises(ValueError, match="hash tags"):
            RedisStores(redis_client, prefix="app{1}:")


class TestUnavailable:
    async def test_every_adapter_reports_a_stopped_server_as_state_store_error(
        self, own_redis_server: RedisServer
    ) -> None:
        stores = RedisStores.from_url(own_redis_server.url, timeout=1.0)
        try:
            await stores.ping()
            own_redis_server.stop()
            calls = [
                stores.deduplicator().claim("event:a"),
                stores.rate_limiter(10.0, 1.0).reserve(SENDER),
                stores.send_ledger().begin("m1", "f"),
                stores.template_cache().get("order_confirmed", None),
                stores.conversation_windows().last_inbound("whatsapp:+1555", None),
                stores.ping(),
            ]
            for call in calls:
                with pytest.raises(StateStoreError, match="Redis could not"):
                    await call
            own_redis_server.start()  # back on the same port: the same client works again
            await stores.ping()
            assert (await stores.send_ledger().begin("m1", "f")).state is LedgerState.NEW
        finally:
            await stores.close()

    def test_a_password_never_shows(self) -> None:
        url = "redis://:s3cret-pass@cache.example:6380/2"
        assert redacted(url) == "redis://:***@cache.example:6380/2"
        assert redacted("rediss://user:pw@h/0") == "rediss://user:***@h/0"
        assert redacted("redis://h:1/0") == "redis://h:1/0"


async def _age(client: Redis, prefix: str, seconds: float) -> None:
    """Let ``seconds`` pass for the keys under ``prefix`` only (no adapter clock involved)."""
    keys = [key async for key in client.scan_iter(match=prefix + "*")]
    for key in keys:
        left = await client.pttl(key)
        if left > 0:
            rest = left - round(seconds * 1000)
            await (client.delete(key) if rest <= 0 else client.pexpire(key, rest))
