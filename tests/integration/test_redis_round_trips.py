"""What a send costs in Redis round trips, counted where they are written to the socket.

docs/scaling.md sizes Redis by these numbers; a change to the pipeline or an
adapter that adds a round trip to every send fails here. The adapters run
unchanged on a real redis-server; only redis-py's connection is subclassed
to count each request it writes (a pipeline's batch is one write, one
round trip), and the server's ``INFO commandstats`` says which scripts ran.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis.asyncio import BlockingConnectionPool, Connection, Redis

from ratatosk import MessageBuilder
from ratatosk.adapters.redis import RedisStores
from ratatosk.bootstrap import build_connector
from ratatosk.testing import FakeTwilio
from ratatosk.twilio import Delivery
from redis_support import RedisServer

SENDS = 50


class Counting(Connection):
    """redis-py's connection, counting the requests it writes."""

    written = 0

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        type(self).written += 1
        await super().send_packed_command(command, check_health)


def _stores(server: RedisServer) -> RedisStores:
    options: dict[str, Any] = {"connection_class": Counting, "decode_responses": True}
    pool = BlockingConnectionPool.from_url(server.url, max_connections=8, **options)
    return RedisStores(Redis.from_pool(pool), owns_client=True)


async def _calls(client: Redis) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}


def _spent(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    spent = {name: after[name] - before.get(name, 0) for name in after}
    return {name: n for name, n in spent.items() if n and name != "info"}


async def test_a_send_costs_six_round_trips_and_a_recheck_that_finds_nothing_seven(
    own_redis_server: RedisServer,
) -> None:
    fake = FakeTwilio()
    environ = {
        "TWILIO_ACCOUNT_SID": fake.account_sid,
        "TWILIO_AUTH_TOKEN": fake.auth_token,
        "TWILIO_WHATSAPP_FROM": "whatsapp:+14155238886",
    }
    stores = _stores(own_redis_server)
    probe = own_redis_server.client()

    def text(i: int) -> object:
        return MessageBuilder().to_phone(f"whatsapp:+1555000{i:04d}").with_text("hi").build()

    try:
        async with build_connector(environ=environ, transport=fake, redis=stores) as connector:
            (await connector.send_message(text(9999))).unwrap()  # loads the scripts
            before, written = await _calls(probe), Counting.written
            for i in range(SENDS):
                (await connector.send_message(text(i))).unwrap()
            per_send = (Counting.written - written) / SENDS
            scripts = _spent(before, await _calls(probe))["evalsha"]
            lost = text(8888)
            fake.reset_next()  # dropped before Twilio stored it: the outcome stays unknown
            assert not (await connector.send_message(lost)).successful
            written = Counting.written
            checked = await connector.recheck_message(lost, delivery=Delivery.AT_MOST_ONCE)
            per_recheck = Counting.written - written
    finally:
        await probe.aclose()
        await stores.close()
    assert per_send == 6  # begin, lane_enter, reserve, claim_sid, lane_leave, finish
    assert scripts == 6 * SENDS  # every one of them a single script
    assert checked.error is not None
    assert checked.error.code == "MESSAGE_NOT_SENT"
    # begin, lane_enter, lane_reconciling, lane_others before and after listing, leave, finish
    assert per_recheck == 7
