"""``make scale``: the send queue's figures with real processes (issue 11), never part of test.

Starts a redis-server of its own and the emulator on loopback (its own thread
here, so every create it receives has a precise time), then measures:

1. **Kill and restart.** N queued sends (20,000 by default) of one sender at
   rate R, drained by 4 ``ratatosk worker`` processes (at-least-once); one is
   killed with SIGKILL when a third is done, and a fifth is started. Counted:
   messages without exactly one final result, messages the emulator stored
   twice, the busiest one-second window of creates, how the killed worker's
   messages were settled (adopted by a recheck, resent).
2. **Throughput** with 1, 2 and 4 workers, several senders, the limiter set
   far above what the workers reach (so the workers are what is measured).
3. **CPU per send**, Redis against in memory: the CPU one worker process and
   redis-server spend per send, against one process draining an in-memory
   queue with in-memory state (``QueueWorker`` on ``InMemoryOutboundQueue``).

Writes ``bench/out/scale.json`` and prints a Markdown summary. ``--sends``,
``--rate`` make a smaller run (``--sends 2000`` takes about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import cpu_seconds, free_port, wait_for_port
from ratatosk.adapters.memory.outbound_queue import InMemoryOutboundQueue
from ratatosk.adapters.redis import RedisStores
from ratatosk.adapters.worker import QueueWorker, WorkerSettings
from ratatosk.domain.message import Message, MessageBuilder
from ratatosk.domain.settings import ConnectionSettings
from ratatosk.testing import BackgroundEmulator
from ratatosk.twilio import SendPolicy, TwilioChannelSchemas, TwilioWhatsAppConnector
from ratatosk.twilio.outbox import Outbox

OUT = Path(__file__).resolve().parent / "out"
SENDERS = [f"whatsapp:+1415523888{n}" for n in range(4)]
#: Sends at once per worker in the kill run: the busiest second is then bounded by
#: R + burst + 4 x 2 creates even when the machine stalls a worker (see the test).
KILL_CONCURRENCY = 2


def batch(count: int, tag: str, senders: list[str]) -> list[Message]:
    return [
        MessageBuilder()
        .with_id(f"{tag}-{n}")
        .from_phone(senders[n % len(senders)])
        .to_phone(f"whatsapp:+1555{n % 1000:07d}")
        .with_text(f"{tag}: order {n} shipped")
        .build()
        for n in range(count)
    ]


class Redis:
    """A redis-server of this run's own, no persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.dir = Path(tempfile.mkdtemp(prefix="ratatosk-scale-"))
        self.port = free_port()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port, self.process)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Fleet:
    """``ratatosk worker`` processes on one Redis and one emulator."""

    def __init__(self, redis: Redis, emulator: BackgroundEmulator, logs: Path) -> None:
        self.redis = redis
        self.logs = logs
        self.env = {
            **os.environ,
            "TWILIO_ACCOUNT_SID": emulator.account_sid,
            "TWILIO_AUTH_TOKEN": emulator.auth_token,
            "TWILIO_API_BASE_URL": emulator.url,
            "RATATOSK_LOG_LEVEL": "ERROR",
        }
        self.env.pop("REDIS_URL", None)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *options: str) -> subprocess.Popen[bytes]:
        with (
            (self.logs / f"{name}.out").open("wb") as out,
            (self.logs / f"{name}.err").open("wb") as err,
        ):
            process = subprocess.Popen(
                [sys.executable, "-m", "ratatosk", "worker", "--json", "--redis", self.redis.url,
                 "--consumer", name, *options],
                env=self.env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.processes[name] = process
        return process

    def stop(self) -> dict[str, int]:
        codes = {}
        for name, process in self.processes.items():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            codes[name] = process.wait(timeout=120)
        self.processes.clear()
        return codes


async def drained(outbox: Outbox, total: int, on_progress: Any = None) -> float:
    """Wait until the queue holds nothing (waiting or pending); the seconds it took."""
    started = time.monotonic()
    while True:
        stats = await outbox.queue.stats()
        done = total - stats.waiting - stats.pending
        if on_progress is not None:
            on_progress(done)
        if stats.waiting == 0 and stats.pending == 0:
            return time.monotonic() - started
        await asyncio.sleep(0.2)


async def results(outbox: Outbox, messages: list[Message]) -> list[Any]:
    found: list[Any] = []
    for start in range(0, len(messages), 500):
        chunk = messages[start : start + 500]
        found += await asyncio.gather(*(outbox.result(m.id) for m in chunk))
    return found


def busiest_second(times: list[dt.datetime]) -> int:
    ordered = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= dt.timedelta(seconds=1):
            start += 1
        best = max(best, end - start + 1)
    return best


def planning() -> ConnectionSettings:
    return ConnectionSettings().set_parameter("FromNumber", SENDERS[0])


async def kill_run(
    redis: Redis, emulator: BackgroundEmulator, logs: Path, sends: int, rate: float
) -> dict[str, Any]:
    stores = RedisStores.from_url(redis.url)
    fleet = Fleet(redis, emulator, logs)
    before = len(emulator.model.attempts)
    try:
        outbox = Outbox.from_settings(stores.outbound_queue(name="kill"), planning())
        messages = batch(sends, "kill", SENDERS[:1])
        for start in range(0, sends, 1000):
            for ticket in await outbox.submit_many(messages[start : start + 1000]):
                ticket.unwrap()
        options = ["--queue-name", "kill", "--rate", str(rate), "--burst", "1",
                   "--concurrency", str(KILL_CONCURRENCY), "--delivery", "at-least-once",
                   "--visibility-timeout", "5", "--lease", "20",
                   "--max-deliveries", "30"]  # fmt: skip
        for name in ("k1", "k2", "k3", "k4"):
            fleet.start(name, *options)
        killed: dict[str, Any] = {}

        def progress(done: int) -> None:
            if not killed and done >= sends // 3:
                victim = fleet.processes.pop("k1")
                victim.send_signal(signal.SIGKILL)
                victim.wait(timeout=30)
                killed.update(at_done=done, exit=victim.returncode)
                fleet.start("k5", *options)

        seconds = await drained(outbox, sends, progress)
        found = await results(outbox, messages)
        dead = await outbox.queue.dead_letters(1000)
    finally:
        codes = fleet.stop()
        await stores.close()
    attempts = emulator.model.attempts[before:]
    stored = Counter(m.body for m in emulator.model.outbound if m.body.startswith("kill: "))
    outcomes = Counter(
        "missing" if r is None else ("SENT" if r.error is None else r.error.code) for r in found
    )
    sent = [r.value for r in found if r is not None and r.value is not None]
    return {
        "sends": sends,
        "rate": rate,
        "workers": 4,
        "killed": killed,
        "exit_codes": codes,
        "seconds": round(seconds, 2),
        "outcomes": dict(outcomes),
        "without_a_result": outcomes.get("missing", 0),
        "stored_at_emulator": sum(stored.values()),
        "stored_twice": sum(n - 1 for n in stored.values() if n > 1),
        "never_stored": sends - len(stored),
        "creates": len(attempts),
        "busiest_second": busiest_second([a.at for a in attempts]),
        "limit": rate * 1.05,
        "rechecked": sum(bool(s.data.get("rechecked")) for s in sent),
        "resent": sum(bool(s.data.get("resent")) for s in sent),
        "adopted": sum(bool(s.data.get("rechecked")) and not s.data.get("resent") for s in sent),
        "dead_letters": len(dead),
    }


async def throughput_run(
    redis: Redis, emulator: BackgroundEmulator, logs: Path, workers: int, sends: int
) -> dict[str, Any]:
    stores = RedisStores.from_url(redis.url)
    fleet = Fleet(redis, emulator, logs)
    name = f"tp{workers}"
    try:
        outbox = Outbox.from_settings(stores.outbound_queue(name=name), planning())
        messages = batch(sends, name, SENDERS)
        options = ["--queue-name", name, "--rate", "100000", "--burst", "1000",
                   "--concurrency", "32", "--visibility-timeout", "30"]  # fmt: skip
        for n in range(workers):
            fleet.start(f"{name}-{n}", *options)
        await asyncio.sleep(3.0)  # let them start (import, connect) before the clock starts
        cpu_before = {p.pid: cpu_seconds(p.pid) for p in fleet.processes.values()}
        redis_before = redis.cpu()
        for start in range(0, sends, 1000):
            for ticket in await outbox.submit_many(messages[start : start + 1000]):
                ticket.unwrap()
        seconds = await drained(outbox, sends)
        worker_cpu = sum(cpu_seconds(pid) - cpu for pid, cpu in cpu_before.items())
        redis_cpu = redis.cpu() - redis_before
        found = await results(outbox, messages)
    finally:
        fleet.stop()
        await stores.close()
    return {
        "workers": workers,
        "senders": len(SENDERS),
        "sends": sends,
        "sent": sum(r is not None and r.error is None for r in found),
        "seconds": round(seconds, 2),
        "per_second": round(sends / seconds, 1),
        "worker_cpu_ms_per_send": round(worker_cpu / sends * 1000, 3),
        "redis_cpu_ms_per_send": round(redis_cpu / sends * 1000, 3),
    }


def in_memory_run(emulator: BackgroundEmulator, sends: int) -> dict[str, Any]:
    """One process, in-memory queue and state: this script again, as a child."""
    child = subprocess.run(
        [sys.executable, __file__, "--in-memory-child", str(sends)],
        env={
            **os.environ,
            "SCALE_EMULATOR": json.dumps([emulator.url, emulator.account_sid, emulator.auth_token]),
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result: dict[str, Any] = json.loads(child.stdout)
    return result


async def _in_memory_child(sends: int) -> dict[str, Any]:
    url, account, token = json.loads(os.environ["SCALE_EMULATOR"])
    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", account)
        .set_parameter("AuthToken", token)
        .set_parameter("ApiBaseUrl", url)
    )
    queue = InMemoryOutboundQueue(time.monotonic)
    outbox = Outbox.from_settings(queue, planning())
    messages = batch(sends, "memory", SENDERS)
    policy = SendPolicy(rate_per_sender=100000.0, burst=1000.0)
    async with TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP, settings, send_policy=policy
    ) as connector:
        worker = QueueWorker(connector, queue, WorkerSettings(consumer="m", concurrency=32))
        for ticket in await outbox.submit_many(messages):
            ticket.unwrap()
        cpu = time.process_time()
        started = time.monotonic()
        running = asyncio.create_task(worker.run())
        while (await queue.stats()).waiting or (await queue.stats()).pending:
            await asyncio.sleep(0.05)
        seconds = time.monotonic() - started
        cpu = time.process_time() - cpu
        worker.stop()
        await running
    sent = sum([(await outbox.result(m.id)) is not None for m in messages])
    return {
        "sends": sends,
        "sent": sent,
        "seconds": round(seconds, 2),
        "per_second": round(sends / seconds, 1),
        "cpu_ms_per_send": round(cpu / sends * 1000, 3),
    }


async def main(sends: int, rate: float, throughput_sends: int) -> dict[str, Any]:
    OUT.mkdir(exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="ratatosk-scale-logs-"))
    redis = Redis()
    figures: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
    }
    try:
        with BackgroundEmulator(step_delay=3600.0) as emulator:
            print(f"kill run: {sends} sends, 4 workers, rate {rate:g}/s ...", flush=True)
            figures["kill_and_restart"] = await kill_run(redis, emulator, logs, sends, rate)
            print(json.dumps(figures["kill_and_restart"]), flush=True)
            figures["throughput"] = []
            for workers in (1, 2, 4):
                print(f"throughput: {workers} worker(s), {throughput_sends} sends ...", flush=True)
                run = await throughput_run(redis, emulator, logs, workers, throughput_sends)
                figures["throughput"].append(run)
                print(json.dumps(run), flush=True)
            print("in memory: one process ...", flush=True)
            figures["in_memory"] = in_memory_run(emulator, throughput_sends)
            print(json.dumps(figures["in_memory"]), flush=True)
    finally:
        redis.close()
        figures["machine"]["load_average_at_end"] = os.getloadavg()
    (OUT / "scale.json").write_text(json.dumps(figures, indent=2) + "\n")
    shutil.rmtree(logs, ignore_errors=True)
    return figures


def summary(figures: dict[str, Any]) -> str:
    kill = figures["kill_and_restart"]
    lines = [
        f"kill and restart: {kill['sends']} sends, rate {kill['rate']:g}/s, 4 workers, one "
        f"SIGKILLed at {kill['killed'].get('at_done')} done, a fifth started",
        f"  without a result {kill['without_a_result']}, stored twice {kill['stored_twice']}, "
        f"never stored {kill['never_stored']}, busiest second {kill['busiest_second']} "
        f"(limit {kill['limit']:g}), outcomes {kill['outcomes']}, adopted {kill['adopted']}, "
        f"resent {kill['resent']}, {kill['seconds']} s",
        "",
        "| workers | senders | sends | sends/s | worker CPU ms/send | redis CPU ms/send |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for run in figures["throughput"]:
        lines.append(
            f"| {run['workers']} | {run['senders']} | {run['sends']} | {run['per_second']} | "
            f"{run['worker_cpu_ms_per_send']} | {run['redis_cpu_ms_per_send']} |"
        )
    memory = figures["in_memory"]
    lines.append(
        f"| 1, in memory | {len(SENDERS)} | {memory['sends']} | {memory['per_second']} | "
        f"{memory['cpu_ms_per_send']} | - |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=20_000, help="the kill run's sends")
    parser.add_argument("--rate", type=float, default=200.0, help="R, the one sender's rate")
    parser.add_argument("--throughput-sends", type=int, default=4000)
    parser.add_argument("--in-memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_memory_child:
        print(json.dumps(asyncio.run(_in_memory_child(args.in_memory_child))))
    else:
        print(summary(asyncio.run(main(args.sends, args.rate, args.throughput_sends))))
