"""The Redis queue across a Redis restart without persistence: the group comes back by itself.

A restart that loses the stream also loses its consumer group; workers keep
reading, so the adapter must make the group again rather than fail every
read with NOGROUP until someone intervenes. What was queued before the
restart is gone (docs/scaling.md says so); what is queued after is served.
"""

from __future__ import annotations

import pytest

from ratatosk.adapters.redis import RedisStores
from ratatosk.ports import QueueStats, StateStoreError
from redis_support import RedisServer


async def test_after_a_restart_the_queue_serves_again(own_redis_server: RedisServer) -> None:
    stores = RedisStores.from_url(own_redis_server.url)
    try:
        queue = stores.outbound_queue()
        await queue.add([("before", {"v": 1})])
        assert [e.message_id for e in await queue.read("w1", count=5)] == ["before"]
        own_redis_server.stop()
        with pytest.raises(StateStoreError):
            await queue.read("w1", count=5)
        own_redis_server.start()
        assert await queue.read("w1", count=5) == []  # the group is made again, empty
        assert await queue.reclaim("w1", count=5) == []
        await queue.add([("after", {"v": 1})])
        (entry,) = await queue.read("w2", count=5)
        assert entry.message_id == "after"
        assert await queue.complete(entry, {"message_id": "after"}) is True
        assert await queue.stats() == QueueStats(waiting=0, pending=0, dead=0)
    finally:
        await stores.close()
