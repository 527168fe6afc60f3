"""One OS process of the multi-process Redis tests: ``python redis_process.py URL PREFIX JOB N``.

It builds the Redis adapters on its own client, waits at a barrier until
every process of the test is ready (so their work overlaps), does its JOB
and prints one JSON line with what the shared store granted it:

* ``limit``: N reservations for one sender, each waited for as the send
  pipeline's throttle does; prints the slot times on Redis's clock;
* ``begin``: ``begin`` of message ids ``m0``..``m{N-1}``, all at once, in a
  shuffled order; prints the ids this process got as NEW;
* ``claim``: deduplication claims of ``event:0``..``event:{N-1}`` at once;
  prints the keys this process got FIRST;
* ``hold``: ``begin`` of ``m0``..``m{N-1}`` with a short lease (no barrier),
  then pushes ``held`` and waits to be killed: a sender that dies mid-send;
* ``takeover``: ``begin`` of those ids again and again until each is taken
  or done; an id taken over (ABANDONED) is finished at once; prints the ids
  this process took over.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time

from ratatosk.adapters.redis import RedisStores
from ratatosk.ports import Claim, LedgerState

SENDER = "whatsapp:+14155238886"
RATE = 20.0
#: The lease of the ``hold`` and ``takeover`` jobs, on Redis's clock.
LEASE = 1.0


async def hold(stores: RedisStores, prefix: str, count: int) -> None:
    ledger = stores.send_ledger(lease=LEASE)
    for n in range(count):
        assert (await ledger.begin(f"m{n}", "same")).state is LedgerState.NEW
    await stores.redis.rpush(prefix + "held", os.getpid())
    await asyncio.Event().wait()  # until SIGKILL: no finish, no cleanup


async def take_over(stores: RedisStores, count: int) -> list[str]:
    ledger = stores.send_ledger(lease=LEASE)
    ids = [f"m{n}" for n in range(count)]
    random.shuffle(ids)
    taken = []
    give_up = time.monotonic() + 60  # a hang guard
    for message_id in ids:
        while time.monotonic() < give_up:
            entry = await ledger.begin(message_id, "same")
            if entry.state is LedgerState.ABANDONED:
                await ledger.finish(message_id, {"by": os.getpid()})
                taken.append(message_id)
                break
            if entry.state is LedgerState.DONE:
                break
            await asyncio.sleep(0.05)  # still held: the dead holder's lease runs
    return taken


async def main(url: str, prefix: str, job: str, count: int) -> None:
    stores = RedisStores.from_url(url, prefix=prefix, timeout=10.0)
    try:
        redis = stores.redis
        if job == "hold":
            await hold(stores, prefix, count)
            return
        await redis.rpush(prefix + "ready", os.getpid())
        await redis.blpop([prefix + "go"], timeout=60)  # the test pushes one "go" per process
        if job == "limit":
            limiter = stores.rate_limiter(RATE, 1.0)
            slots = []
            for _ in range(count):
                slot = await limiter.reserve_slot(SENDER)
                slots.append(slot)
                seconds, micros = await redis.time()
                await asyncio.sleep(max(0.0, slot - (seconds + micros / 1e6)))
            print(json.dumps({"slots": slots}))
        elif job == "begin":
            ledger = stores.send_ledger()
            ids = [f"m{n}" for n in range(count)]
            random.shuffle(ids)
            entries = await asyncio.gather(*(ledger.begin(i, "same") for i in ids))
            new = [i for i, e in zip(ids, entries, strict=True) if e.state is LedgerState.NEW]
            print(json.dumps({"new": new}))
        elif job == "claim":
            dedup = stores.deduplicator()
            keys = [f"event:{n}" for n in range(count)]
            random.shuffle(keys)
            claims = await asyncio.gather(*(dedup.claim(k) for k in keys))
            first = [k for k, c in zip(keys, claims, strict=True) if c is Claim.FIRST]
            print(json.dumps({"first": first}))
        elif job == "takeover":
            print(json.dumps({"taken": await take_over(stores, count)}))
        else:
            raise SystemExit(f"unknown job {job!r}")
    finally:
        await stores.close()


if __name__ == "__main__":
    url, prefix, job, count = sys.argv[1:5]
    asyncio.run(main(url, prefix, job, int(count)))
