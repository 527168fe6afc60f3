"""The send queue with real processes: ``ratatosk worker`` x 4, one killed, on a real Redis.

A redis-server of the test's own, the emulator on loopback (in this process,
on its own thread), and ``ratatosk worker`` subprocesses draining the queue
into it at one sender's rate R. One worker is killed with SIGKILL in the
middle of the run (sends in flight, entries it read and never acknowledged)
and another is started. What is checked is what the emulator stored and what
the queue recorded, never how long anything took:

* every submitted message has exactly one final result, and it is "sent";
* the emulator stored each message exactly once (its message list);
* over any one-second window, the creates the emulator received from all
  workers together are at most R x 1.05;
* a worker stopped with SIGTERM exits 0 and leaves nothing half-done: what
  it did not finish is still in the queue, and another worker sends it once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ratatosk.adapters.redis import RedisStores
from ratatosk.bootstrap import build_outbox
from ratatosk.domain.message import Message, MessageBuilder
from ratatosk.domain.settings import ConnectionSettings
from ratatosk.testing import BackgroundEmulator
from ratatosk.twilio.outbox import Outbox, Ticket
from redis_support import RedisServer

SENDER = "whatsapp:+14155238886"
#: What the submitting process plans with: the workers' sender (their TWILIO_WHATSAPP_FROM).
SETTINGS = ConnectionSettings().set_parameter("FromNumber", SENDER)
RATE = 200.0  #: R: the one sender's rate, all workers together (burst 1)
#: Sends at once per worker. A worker the machine stalls fires the creates it had booked
#: late, all at once; only sends in flight can be late, so any one-second window holds at
#: most R + burst + (workers alive x CONCURRENCY) creates: 200 + 1 + 3 x 2 <= R x 1.05
#: whatever the machine's load, and the check below cannot pass or fail by timing luck.
CONCURRENCY = "2"
#: A hang guard for waits on other processes, never a timing assertion.
PATIENCE = 90.0


@pytest.fixture
def emulator() -> Iterator[BackgroundEmulator]:
    with BackgroundEmulator(step_delay=60.0) as running:
        yield running


class Workers:
    """``ratatosk worker`` subprocesses, their output in files; all stopped at the end."""

    def __init__(self, redis: RedisServer, emulator: BackgroundEmulator, logs: Path) -> None:
        self.redis = redis
        self.logs = logs
        self.env = {
            **os.environ,
            "TWILIO_ACCOUNT_SID": emulator.account_sid,
            "TWILIO_AUTH_TOKEN": emulator.auth_token,
            "TWILIO_API_BASE_URL": emulator.url,
            "TWILIO_WHATSAPP_FROM": SENDER,
            "RATATOSK_LOG_LEVEL": "WARNING",
        }
        self.env.pop("REDIS_URL", None)
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *options: str) -> subprocess.Popen[bytes]:
        out = (self.logs / f"{name}.out").open("wb")
        err = (self.logs / f"{name}.err").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "ratatosk", "worker", "--json", "--redis", self.redis.url,
             "--consumer", name, "--rate", str(RATE), "--burst", "1",
             "--visibility-timeout", "2", "--lease", "8", "--max-deliveries", "30",
             *options],
            env=self.env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        out.close()
        err.close()
        self.running[name] = process
        return process

    def lines(self, name: str) -> list[dict[str, Any]]:
        text = (self.logs / f"{name}.out").read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def stderr(self, name: str) -> str:
        return (self.logs / f"{name}.err").read_text()

    def stop_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


@pytest.fixture
def workers(
    own_redis_server: RedisServer, emulator: BackgroundEmulator, tmp_path: Path
) -> Iterator[Workers]:
    started = Workers(own_redis_server, emulator, tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


def messages(count: int, tag: str) -> list[Message]:
    """Distinct bodies, ten recipients: each message recognisable at the emulator."""
    return [
        MessageBuilder()
        .with_id(f"{tag}-{n}")
        .to_phone(f"whatsapp:+1555000{n % 10:04d}")
        .with_text(f"{tag}: order {n} shipped")
        .build()
        for n in range(count)
    ]


async def submit(outbox: Outbox, batch: list[Message]) -> list[Ticket]:
    return [result.unwrap() for result in await outbox.submit_many(batch)]


async def results_so_far(outbox: Outbox, tickets: list[Ticket]) -> int:
    found = await asyncio.gather(*(outbox.result(t.message_id) for t in tickets))
    return sum(r is not None for r in found)


async def until(outbox: Outbox, tickets: list[Ticket], count: int, workers: Workers) -> None:
    """Wait (bounded) until ``count`` results are in; fail with the workers' logs if not."""
    deadline = time.monotonic() + PATIENCE
    while await results_so_far(outbox, tickets) < count:
        if time.monotonic() > deadline:
            logs = {name: workers.stderr(name)[-2000:] for name in workers.running}
            pytest.fail(f"only {await results_so_far(outbox, tickets)} of {count} results: {logs}")
        await asyncio.sleep(0.05)


async def stored_bodies(emulator: BackgroundEmulator) -> Counter[str]:
    """The emulator's message list, as the control endpoint dumps it: body -> times stored."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{emulator.url}/_emulator/messages") as answer,
    ):
        stored = await answer.json()
    return Counter(m["body"] for m in stored if m["direction"] == "outbound-api")


def busiest_second(times: list[dt.datetime]) -> int:
    """The most creates within any one-second window [t, t + 1 s)."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= dt.timedelta(seconds=1):
            start += 1
        best = max(best, end - start + 1)
    return best


def wait_exit(process: subprocess.Popen[bytes]) -> int:
    return process.wait(timeout=PATIENCE)


async def test_four_workers_one_killed_send_each_message_once_within_the_rate(
    own_redis_server: RedisServer, emulator: BackgroundEmulator, workers: Workers
) -> None:
    stores = RedisStores.from_url(own_redis_server.url)
    try:
        outbox = build_outbox(SETTINGS, redis=stores, environ={})
        tickets = await submit(outbox, messages(600, "kill"))
        for name in ("w1", "w2", "w3"):
            workers.start(name, "--concurrency", CONCURRENCY, "--delivery", "at-least-once")
        await until(outbox, tickets, 150, workers)
        victim = workers.running["w1"]
        victim.send_signal(signal.SIGKILL)
        assert wait_exit(victim) == -signal.SIGKILL
        workers.start("w4", "--concurrency", CONCURRENCY, "--delivery", "at-least-once")
        await until(outbox, tickets, len(tickets), workers)
        results = await outbox.wait_all(tickets, timeout=1.0)
        stats = await outbox.queue.stats()
        dead = await outbox.queue.dead_letters()
    finally:
        await stores.close()
    failed = [r.error for r in results if r is None or r.error is not None]
    assert failed == []
    sids = [r.unwrap().provider_message_id for r in results if r is not None]
    assert len(set(sids)) == len(tickets)
    stored = await stored_bodies(emulator)
    assert sum(stored.values()) == len(tickets)
    assert set(stored.values()) == {1}, "a message was created twice at the emulator"
    assert set(stored) == {f"kill: order {n} shipped" for n in range(600)}
    creates = [a.at for a in emulator.model.attempts]
    assert len(creates) >= len(tickets)
    assert busiest_second(creates) <= RATE * 1.05
    assert (stats.waiting, stats.pending, stats.dead, dead) == (0, 0, 0, [])
    assert workers.lines("w1")[0]["event"] == "worker"  # it had started before it was killed
    for name in ("w2", "w3", "w4"):
        process = workers.running[name]
        process.send_signal(signal.SIGTERM)
        assert wait_exit(process) == 0, workers.stderr(name)
        assert workers.lines(name)[-1]["event"] == "stopped"


async def test_a_worker_stopped_with_sigterm_exits_0_and_leaves_nothing_half_done(
    own_redis_server: RedisServer, emulator: BackgroundEmulator, workers: Workers
) -> None:
    stores = RedisStores.from_url(own_redis_server.url)
    try:
        outbox = build_outbox(SETTINGS, redis=stores, environ={})
        tickets = await submit(outbox, messages(120, "term"))
        first = workers.start("t1", "--concurrency", "6")
        await until(outbox, tickets, 20, workers)
        first.send_signal(signal.SIGTERM)
        assert wait_exit(first) == 0, workers.stderr("t1")
        stopped = workers.lines("t1")[-1]
        assert stopped["event"] == "stopped"
        done = await results_so_far(outbox, tickets)
        stats = await outbox.queue.stats()
        # What it finished has a result; what it did not is back in the queue, whole.
        assert done == stopped["completed"]
        assert stats.waiting + stats.pending == len(tickets) - done
        assert stats.pending == stopped["handed_back"]
        assert done < len(tickets), "the worker was stopped after the queue was empty"
        workers.start("t2", "--concurrency", "6")
        await until(outbox, tickets, len(tickets), workers)
        results = await outbox.wait_all(tickets, timeout=1.0)
    finally:
        await stores.close()
    assert all(r is not None and r.successful for r in results)
    stored = await stored_bodies(emulator)
    assert sum(stored.values()) == len(tickets)
    assert set(stored.values()) == {1}


async def test_a_redis_restart_mid_run_loses_no_message_and_sends_none_twice(
    own_redis_server: RedisServer, emulator: BackgroundEmulator, workers: Workers
) -> None:
    """Redis stopped under two busy workers and started again (a snapshot taken on the clean
    stop, as a production Redis with persistence does): every message ends sent once.

    What the workers saw meanwhile is in their output: reads and sends refused with
    STATE_STORE_UNAVAILABLE (nothing reaches Twilio without the shared limiter and
    ledger), never a crash.
    """
    setup = own_redis_server.client()
    await setup.config_set("save", "3600 1")  # an RDB snapshot when the server stops cleanly
    await setup.aclose()
    stores = RedisStores.from_url(own_redis_server.url)
    try:
        outbox = build_outbox(SETTINGS, redis=stores, environ={})
        tickets = await submit(outbox, messages(300, "restart"))
        for name in ("r1", "r2"):
            workers.start(name, "--concurrency", CONCURRENCY, "--delivery", "at-least-once")
        await until(outbox, tickets, 60, workers)
        await asyncio.to_thread(own_redis_server.stop)
        await asyncio.sleep(2.0)  # the outage: long enough for every worker to hit it
        await asyncio.to_thread(own_redis_server.start)
        await until(outbox, tickets, len(tickets), workers)
        results = await outbox.wait_all(tickets, timeout=1.0)
        stats = await outbox.queue.stats()
    finally:
        await stores.close()
    assert [r.error for r in results if r is None or r.error is not None] == []
    stored = await stored_bodies(emulator)
    assert set(stored) == {f"restart: order {n} shipped" for n in range(300)}
    assert set(stored.values()) == {1}, "a message was created twice at the emulator"
    assert (stats.waiting, stats.pending, stats.dead) == (0, 0, 0)
    saw = {name: workers.stderr(name).count("the queue could not") for name in ("r1", "r2")}
    assert sum(saw.values()) > 0, "no worker met the outage: the test proved nothing"
    for name in ("r1", "r2"):
        assert "Traceback" not in workers.stderr(name)
        assert workers.running[name].poll() is None, "a worker died of the outage"
