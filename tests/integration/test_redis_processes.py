"""Several OS processes sharing one Redis: the claims issue 11 makes, with real processes.

Each process is ``redis_process.py`` with its own client; they start
together at a barrier in Redis so their work overlaps. What is checked is
what the shared store granted (slot times on Redis's clock, NEW answers,
FIRST claims), never how long anything of ours took.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from redis_support import RedisServer

WORKER = Path(__file__).with_name("redis_process.py")
RATE = 20  # the worker's rate per second, burst 1


async def _run(
    server: RedisServer, client: Redis, prefix: str, job: str, *, count: int, processes: int = 2
) -> list[dict[str, Any]]:
    started = [
        subprocess.Popen(
            [sys.executable, str(WORKER), server.url, prefix, job, str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        deadline = time.monotonic() + 60  # a hang guard, not a timing assertion
        while await client.llen(prefix + "ready") < processes:
            assert all(p.poll() is None for p in started), [p.communicate() for p in started]
            assert time.monotonic() < deadline, "the worker processes never got ready"
            time.sleep(0.02)
        await client.rpush(prefix + "go", *["go"] * processes)
        results = []
        for process in started:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
            results.append(json.loads(out))
        return results
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.communicate()


async def test_two_processes_never_exceed_the_rate_over_any_second(
    redis_server: RedisServer, redis_client: Redis, redis_prefix: str
) -> None:
    """Each process alone may send RATE a second; together they still get RATE, not 2 x RATE."""
    results = await _run(redis_server, redis_client, redis_prefix, "limit", count=25)
    first, second = (r["slots"] for r in results)
    assert len(first) == len(second) == 25
    assert max(first[0], second[0]) < min(first[-1], second[-1])  # they really overlapped
    slots = sorted(first + second)
    # At most RATE slots in any half-open second: slot i and slot i + RATE are a second apart.
    tightest = min(later - earlier for earlier, later in zip(slots, slots[RATE:], strict=False))
    assert tightest >= 1.0 - 1e-6
    counts = [sum(1 for s in slots if start <= s < start + 1.0 - 1e-6) for start in slots]
    assert max(counts) == RATE  # and the rate was reached, so the bound was what held it


async def test_one_message_id_is_new_to_exactly_one_process(
    redis_server: RedisServer, redis_client: Redis, redis_prefix: str
) -> None:
    results = await _run(redis_server, redis_client, redis_prefix, "begin", count=300)
    won = [set(r["new"]) for r in results]
    assert won[0].isdisjoint(won[1])
    assert won[0] | won[1] == {f"m{n}" for n in range(300)}


async def test_one_webhook_delivery_is_first_on_exactly_one_process(
    redis_server: RedisServer, redis_client: Redis, redis_prefix: str
) -> None:
    results = await _run(redis_server, redis_client, redis_prefix, "claim", count=300, processes=3)
    won = [set(r["first"]) for r in results]
    assert sum(len(w) for w in won) == 300
    assert set().union(*won) == {f"event:{n}" for n in range(300)}


async def test_a_dead_senders_ids_are_each_taken_over_by_exactly_one_process(
    redis_server: RedisServer, redis_client: Redis, redis_prefix: str
) -> None:
    """A process holding 100 ids is killed; three others race for them once its lease ran out."""
    holder = subprocess.Popen(
        [sys.executable, str(WORKER), redis_server.url, redis_prefix, "hold", "100"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert await redis_client.blpop([redis_prefix + "held"], timeout=60), holder.stderr
    finally:
        holder.kill()  # SIGKILL: it never finishes, never lets go
        holder.communicate(timeout=30)
    assert holder.returncode == -signal.SIGKILL
    results = await _run(
        redis_server, redis_client, redis_prefix, "takeover", count=100, processes=3
    )
    taken = [set(r["taken"]) for r in results]
    assert sum(len(t) for t in taken) == 100  # nobody took an id twice
    assert set().union(*taken) == {f"m{n}" for n in range(100)}
