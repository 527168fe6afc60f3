"""Webhook nodes at full size (``make scale``): 3 processes, one Redis, 10,000 signed webhooks.

The same nodes and the same Twilio-like caller as the integration test
``tests/integration/test_webhook_nodes.py`` (``webhook_node.py``,
``webhook_load.py``), on a redis-server this script starts on loopback
(``tests/redis_support.py``), at full size:

1. **load**: 10,000 events (a third status callbacks), 20% repeated to a
   different node than the first delivery (together with it, after it, or
   held: sent while the first is provably inside its handler), 1% failing
   once on purpose; answers by status, events handled exactly once,
   duplicates prevented, p50/p99 latency, deliveries per second;
2. **restart, persisted**: Redis stopped mid-run (it saves a snapshot on a
   clean stop, as a Redis with persistence does) and started again after a
   few seconds; what the callers saw meanwhile, and what was handled twice;
3. **restart, not persisted**: the same with a Redis that forgets everything
   on restart (the test fixture's default): events handled before the stop
   and repeated after it are handled again.

Every figure is counted from the nodes' own event logs and the answers the
caller got; nothing is assumed. Prints the figures and writes
``bench/out/scale_webhooks.json``. ``SCALE_WEBHOOKS_EVENTS`` changes the
event count of run 1 (the restart runs use half of it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
sys.path[:0] = [str(ROOT / "tests" / "integration"), str(ROOT / "tests")]

import aiohttp  # noqa: E402
from webhook_load import (  # noqa: E402
    Caller,
    Tally,
    by_status,
    figures,
    make_events,
    make_plan,
    read_event_logs,
    send_all,
    send_through_restart,
    start_nodes,
    stop_nodes,
    wait_ready,
)

from redis_support import RedisServer, find_redis_server  # noqa: E402

NODES = 3
CONCURRENCY = 64
DELAY = "0.005:0.05"  # the handler's time, seconds (uniform)
IN_FLIGHT_WAIT = 2.0  # how long a repeat waits for the first delivery's outcome
LEASE = 10.0  # the claim's lease in the restart runs (120 s by default)


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=CONCURRENCY),
        timeout=aiohttp.ClientTimeout(total=60),
    )


async def load(redis: RedisServer, workdir: Path, count: int) -> dict[str, Any]:
    events = make_events(count, seed=1)
    plan = make_plan(events, NODES, seed=1, repeat_share=0.2, gated=30, fail_share=0.01)
    nodes = start_nodes(
        NODES,
        redis.url,
        "scale-load:",
        workdir,
        delay=DELAY,
        in_flight_wait=IN_FLIGHT_WAIT,
        plan=plan,
    )
    try:
        async with _session() as session:
            await wait_ready(session, nodes)
            caller = Caller(session, nodes, concurrency=CONCURRENCY)
            started = time.monotonic()
            held = await send_all(caller, events, plan, workdir / "gates", gated_at_once=8)
            elapsed = time.monotonic() - started
    finally:
        stop_nodes(nodes)
    tally = Tally.of(read_event_logs(nodes))
    result = figures(events, plan, caller.answers, tally, elapsed)
    result["held_repeats_answered"] = by_status(g.held_repeat for g in held)
    result["held_then_first_failed_handled_elsewhere"] = sum(
        1
        for g in held
        if g.key in plan.fail_on and tally.handled_on[g.key] != [plan.fail_on[g.key]]
    )
    return result


async def restart(workdir: Path, count: int, *, persisted: bool) -> dict[str, Any]:
    redis = RedisServer(workdir / "redis")
    redis.start()
    try:
        if persisted:
            client = redis.client()
            await client.config_set("save", "3600 1")  # a snapshot on a clean stop
            await client.aclose()
        events = make_events(count, seed=2)
        plan = make_plan(events, NODES, seed=2, repeat_share=0.2)
        nodes = start_nodes(
            NODES,
            redis.url,
            "ratatosk:",
            workdir,
            delay=DELAY,
            in_flight_wait=IN_FLIGHT_WAIT,
            lease=LEASE,
            redis_timeout=1.0,
            plan=plan,
        )
        try:
            async with _session() as session:
                await wait_ready(session, nodes)
                caller = Caller(session, nodes, concurrency=CONCURRENCY, backoff=(0.1, 2.0))
                started = time.monotonic()
                outage = await send_through_restart(
                    caller,
                    events,
                    plan,
                    workdir / "gates",
                    stop=lambda: asyncio.to_thread(redis.stop),
                    start=lambda: asyncio.to_thread(redis.start),
                    before=count // 3,
                    stop_after=count // 10,
                    restart_after=count // 10,
                    late_repeats=count // 25,
                    seed=2,
                    min_outage=5.0,
                )
                elapsed = time.monotonic() - started
        finally:
            stop_nodes(nodes)
    finally:
        redis.stop()
    tally = Tally.of(read_event_logs(nodes))
    answers = caller.answers
    keys = [event.key for event in events]
    during = [a for a in answers if outage.covers(a)]
    twice = tally.twice()
    return {
        "events": count,
        "redis_persisted": persisted,
        "deliveries": len(answers),
        "answers": by_status(answers),
        "outage_seconds": round(outage.restarted - outage.stopped, 2),
        "answers_during_outage": by_status(during),
        "answers_after_restart": by_status(a for a in answers if a.sent >= outage.restarted),
        "seconds_from_restart_to_all_answered_200": round(outage.drained - outage.restarted, 2),
        "handled_exactly_once": sum(1 for k in keys if tally.handled[k] == 1),
        "handled_twice_or_more": len(twice),
        "never_handled": sum(1 for k in keys if tally.handled[k] == 0),
        "handled_while_redis_went_down_unrecorded": len(tally.complete_failed),
        "handled_twice_of_those": len(twice & tally.complete_failed),
        "late_repeats_of_events_handled_before_the_stop": len(outage.late_repeats),
        "late_repeats_handled_again": sum(1 for k in outage.late_repeats if tally.handled[k] > 1),
        "seconds": round(elapsed, 2),
    }


def _machine() -> dict[str, Any]:
    version = subprocess.run(
        [find_redis_server(), "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    return {
        "date": dt.date.today().isoformat(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "redis": next((part[2:] for part in version if part.startswith("v=")), "?"),
    }


async def main() -> None:
    count = int(os.environ.get("SCALE_WEBHOOKS_EVENTS", "10000"))
    summary: dict[str, Any] = {"machine": _machine(), "nodes": NODES}
    summary["settings"] = {
        "concurrency": CONCURRENCY,
        "handler_delay_s": DELAY,
        "in_flight_wait_s": IN_FLIGHT_WAIT,
        "restart_lease_s": LEASE,
    }
    with tempfile.TemporaryDirectory(prefix="ratatosk-scale-webhooks-") as tmp:
        work = Path(tmp)
        redis = RedisServer(work / "redis")
        redis.start()
        try:
            print(f"load: {count} events on {NODES} nodes ...", flush=True)
            summary["load"] = await load(redis, work / "load", count)
        finally:
            redis.stop()
        print(json.dumps(summary["load"], indent=2), flush=True)
        for persisted in (True, False):
            name = "restart_persisted" if persisted else "restart_not_persisted"
            print(f"{name}: {count // 2} events ...", flush=True)
            summary[name] = await restart(work / name, count // 2, persisted=persisted)
            print(json.dumps(summary[name], indent=2), flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "scale_webhooks.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"written: {OUT / 'scale_webhooks.json'}")


if __name__ == "__main__":
    asyncio.run(main())
