"""Twilio's side of the webhook-node runs: signed events, repeats, retries, and the tally.

Shared by ``test_webhook_nodes.py`` (a few hundred events, in ``make test``)
and ``bench/scale_webhooks.py`` (10,000, ``make scale``). The nodes are
``webhook_node.py`` processes sharing one redis-server; the caller plays
Twilio behind a load balancer:

* every event is signed once for the public URL, so any node verifies it;
* first deliveries go to the nodes round-robin; a repeat (Twilio's own
  retry after a timeout) goes to a different node than the first delivery,
  either together with it or after it was answered, or, for a *gated*
  event, while the first delivery is provably inside its handler (the node
  holds it there until the caller has its answer to the repeat);
* an answer that says "retry later" (500 ``HANDLER_FAILED``, 503
  ``DELIVERY_IN_FLIGHT`` or ``STATE_STORE_UNAVAILABLE``, or no answer at all)
  is sent again after a short back-off, to the next node, as a load
  balancer would pick it, until it is answered 200.

What each node handled comes from its event log (one JSON line per event),
never from the answers: an answer cannot tell a duplicate from a handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import aiohttp
from webhook_node import gate_file, message_key, status_key

from ratatosk.adapters.webhook_server import DEFAULT_PREFIX, SIGNATURE_HEADER
from ratatosk.emulator.model import inbound_form, status_callback_params
from ratatosk.twilio.signature import compute_signature

NODE_PROGRAM: Final = Path(__file__).with_name("webhook_node.py")
PUBLIC_URL: Final = "https://hooks.example.com"  # the load balancer's address, which Twilio signs
ACCOUNT_SID: Final = "AC" + "5a" * 16
AUTH_TOKEN: Final = "webhook-nodes-auth-token-0123456"
BUSINESS: Final = "whatsapp:+14155238886"
CHANNEL_INSTALL_SID: Final = "XE" + "7c" * 16

#: The answers the server documents as "not handled yet, send it again later".
RETRY_LATER: Final = frozenset(
    {(500, "HANDLER_FAILED"), (503, "DELIVERY_IN_FLIGHT"), (503, "STATE_STORE_UNAVAILABLE")}
)
#: Twilio's status callbacks, and the error code a failed one carries.
_STATUSES: Final = (("sent", None), ("delivered", None), ("read", None), ("failed", 63016))


@dataclass(frozen=True)
class Event:
    """One signed webhook, ready to be delivered (again) to any node."""

    key: str  # the event key the server deduplicates on (webhook_node.message_key / status_key)
    path: str
    body: str
    signature: str


def make_events(count: int, *, seed: int, status_share: float = 1 / 3) -> list[Event]:
    """``count`` distinct events: inbound messages from 50 customers, and status callbacks."""
    rng = random.Random(seed)
    events = []
    for n in range(count):
        sid = "SM" + format(rng.getrandbits(128), "032x")
        customer = f"whatsapp:+1555{rng.randrange(50):07d}"
        if rng.random() < status_share:
            status, error = rng.choice(_STATUSES)
            form = status_callback_params(
                sid=sid,
                account_sid=ACCOUNT_SID,
                from_=BUSINESS,
                to=customer,
                status=status,
                channel_install_sid=CHANNEL_INSTALL_SID,
                error_code=error,
                error_message="not delivered" if error else None,
            )
            key, path = status_key(sid, status, error), DEFAULT_PREFIX + "/status"
        else:
            form = inbound_form(
                sid=sid, account_sid=ACCOUNT_SID, from_=customer, to=BUSINESS, body=f"hello {n}"
            )
            key, path = message_key(sid), DEFAULT_PREFIX
        signature = compute_signature(AUTH_TOKEN, PUBLIC_URL + path, form)
        events.append(Event(key, path, urlencode(form), signature))
    return events


@dataclass
class Plan:
    """Which events are repeated and how, which are gated, which fail on purpose and where."""

    together: set[str] = field(default_factory=set)  # repeat sent with the first delivery
    after: set[str] = field(default_factory=set)  # repeat sent once the first was answered
    gated: list[str] = field(default_factory=list)  # repeat sent while the first is held
    fail_on: dict[str, str] = field(default_factory=dict)  # key -> node whose first try fails

    @property
    def repeated(self) -> set[str]:
        return self.together | self.after | set(self.gated)

    def for_nodes(self) -> dict[str, dict[str, Any]]:
        """The plan as ``webhook_node.py --plan`` reads it."""
        plan: dict[str, dict[str, Any]] = {key: {"gate": True} for key in self.gated}
        for key, node in self.fail_on.items():
            plan.setdefault(key, {})["fail_on"] = node
        return plan


def node_name(index: int) -> str:
    return f"node{index}"


def make_plan(
    events: Sequence[Event],
    nodes: int,
    *,
    seed: int,
    repeat_share: float = 0.2,
    gated: int = 0,
    fail_share: float = 0.0,
) -> Plan:
    """Repeats for ``repeat_share`` of the events (``gated`` of them held), half together.

    ``fail_share`` of the events fail once on the node of their first
    delivery (event ``n`` goes first to node ``n % nodes``), half of the
    gated ones among them: those show that a repeat held off while the first
    delivery might still fail is handled when it does fail.
    """
    rng = random.Random(seed)
    indices = list(range(len(events)))
    repeated = rng.sample(indices, round(len(events) * repeat_share))
    plan = Plan(gated=[events[i].key for i in repeated[:gated]])
    for position, i in enumerate(repeated[gated:]):
        (plan.together if position % 2 == 0 else plan.after).add(events[i].key)
    for position, i in enumerate(repeated[:gated]):
        if position % 2 == 0:
            plan.fail_on[events[i].key] = node_name(i % nodes)
    others = [i for i in indices if events[i].key not in plan.fail_on]
    for i in rng.sample(others, round(len(events) * fail_share)):
        plan.fail_on[events[i].key] = node_name(i % nodes)
    return plan


# --- the nodes ------------------------------------------------------------------------


@dataclass
class Node:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    events: Path
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.stderr.read_text(errors="replace")[-3000:]
        return "(no log)"


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_nodes(
    count: int,
    redis_url: str,
    prefix: str,
    workdir: Path,
    *,
    delay: str = "0",
    in_flight_wait: float = 10.0,
    lease: float = 120.0,
    redis_timeout: float = 2.0,
    plan: Plan | None = None,
) -> list[Node]:
    """``count`` node processes (not yet listening: :func:`wait_ready`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    gates = workdir / "gates"
    gates.mkdir(exist_ok=True)
    extra = []
    if plan is not None:
        plan_file = workdir / "plan.json"
        plan_file.write_text(json.dumps(plan.for_nodes()))
        extra = ["--plan", str(plan_file), "--gates", str(gates)]
    env = {**os.environ, "TWILIO_AUTH_TOKEN": AUTH_TOKEN}
    nodes = []
    for index in range(count):
        name, port = node_name(index), _free_port()
        events, stderr = workdir / f"{name}.jsonl", workdir / f"{name}.log"
        args = [sys.executable, str(NODE_PROGRAM), "--redis", redis_url, "--prefix", prefix]
        args += ["--port", str(port), "--name", name, "--events", str(events)]
        args += ["--public-url", PUBLIC_URL, "--account-sid", ACCOUNT_SID, "--delay", delay]
        args += ["--in-flight-wait", str(in_flight_wait), "--lease", str(lease)]
        args += ["--redis-timeout", str(redis_timeout), *extra]
        with stderr.open("wb") as log:
            process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        nodes.append(Node(name, port, process, events, stderr))
    return nodes


async def wait_ready(session: aiohttp.ClientSession, nodes: Sequence[Node]) -> None:
    """Until every node answers ``/healthz``; a node that exits fails with its log."""
    deadline = time.monotonic() + 60  # a hang guard, not a timing assertion
    for node in nodes:
        while True:
            if node.process.poll() is not None:
                raise RuntimeError(f"{node.name} exited:\n{node.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(node.url + "/healthz") as answer:
                    if answer.status == 200:
                        break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.name} never listened:\n{node.log_tail()}")
            await asyncio.sleep(0.05)


def stop_nodes(nodes: Iterable[Node]) -> None:
    """SIGTERM each (a graceful stop), SIGKILL what is still there after 10 s."""
    running = [node for node in nodes if node.process.poll() is None]
    for node in running:
        node.process.send_signal(signal.SIGTERM)
    for node in running:
        try:
            node.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait(timeout=10)


def read_event_logs(nodes: Iterable[Node]) -> list[dict[str, Any]]:
    lines = []
    for node in nodes:
        if node.events.exists():
            lines += [json.loads(line) for line in node.events.read_text().splitlines() if line]
    return lines


# --- Twilio's deliveries --------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One HTTP delivery and what came back (status 0: no answer, the connection failed)."""

    key: str
    node: int
    status: int
    code: str | None
    sent: float  # time.monotonic() when the request was started
    received: float

    @property
    def latency(self) -> float:
        return self.received - self.sent

    @property
    def retry_later(self) -> bool:
        return self.status == 0 or (self.status, self.code) in RETRY_LATER or self.status >= 500


class Caller:
    """Twilio behind a load balancer: deliveries with bounded concurrency, retried when told."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        nodes: Sequence[Node],
        *,
        concurrency: int,
        backoff: tuple[float, float] = (0.05, 0.5),
        max_attempts: int = 200,
        on_answer: Callable[[Answer], None] | None = None,
    ) -> None:
        self._session = session
        self._urls = [node.url for node in nodes]
        self._slots = asyncio.Semaphore(concurrency)
        self._backoff = backoff
        self._max_attempts = max_attempts
        self._on_answer = on_answer
        self.answers: list[Answer] = []

    @property
    def nodes(self) -> int:
        return len(self._urls)

    async def post(self, event: Event, node: int) -> Answer:
        """One delivery of ``event`` to ``node``, as Twilio sends it (signed form)."""
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            SIGNATURE_HEADER: event.signature,
        }
        async with self._slots:
            sent = time.monotonic()
            status, code = 0, None
            try:
                async with self._session.post(
                    self._urls[node] + event.path, data=event.body, headers=headers
                ) as response:
                    status = response.status
                    text = await response.text()
                    if response.content_type == "application/json":
                        code = json.loads(text).get("code")
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            answer = Answer(event.key, node, status, code, sent, time.monotonic())
        self.answers.append(answer)
        if self._on_answer is not None:
            self._on_answer(answer)
        return answer

    async def deliver(self, event: Event, node: int, *, first: Answer | None = None) -> Answer:
        """Deliver until answered for good; a "retry later" goes to the next node after a pause.

        ``first`` is an answer the caller already has for this delivery.
        Returns the final answer (200, or a refusal that is not "retry later").
        """
        answer = first if first is not None else await self.post(event, node)
        attempts = 1
        while answer.retry_later:
            if attempts >= self._max_attempts:
                raise RuntimeError(f"{event.key} still refused after {attempts} deliveries")
            low, high = self._backoff
            await asyncio.sleep(min(high, low * 2 ** min(attempts - 1, 10)))
            node = (node + 1) % self.nodes
            answer = await self.post(event, node)
            attempts += 1
        return answer


async def _wait_for_file(path: Path, first: asyncio.Task[Answer]) -> None:
    deadline = time.monotonic() + 60  # a hang guard, not a timing assertion
    while not path.exists():
        if first.done():
            raise RuntimeError(f"the first delivery ended ({first.result()}) before {path.name}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path.name} never appeared")
        await asyncio.sleep(0.01)


@dataclass
class Gated:
    """A gated event: the answer to its repeat sent while the first was held in its handler."""

    key: str
    held_repeat: Answer
    first_final: Answer
    repeat_final: Answer


async def send_all(
    caller: Caller,
    events: Sequence[Event],
    plan: Plan,
    gates: Path,
    *,
    gated_at_once: int = 4,
    started: Callable[[int], Awaitable[None]] | None = None,
) -> list[Gated]:
    """Every event delivered as the plan says, each chain until its final answer.

    Event ``n`` goes first to node ``n % nodes``, its repeat to the next node.
    ``started(n)``, when given, is awaited before event ``n`` is sent (the
    restart run holds phases back with it).
    """
    gated_keys = set(plan.gated)
    gated_slots = asyncio.Semaphore(gated_at_once)  # a held first delivery keeps its slot
    held: list[Gated] = []

    async def gated_flow(event: Event, first_node: int, other: int) -> None:
        async with gated_slots:
            first = asyncio.create_task(caller.deliver(event, first_node))
            await _wait_for_file(gate_file(gates, event.key, ".started"), first)
            repeat = await caller.post(event, other)  # the first delivery cannot finish now
            gate_file(gates, event.key, ".open").touch()
            repeat_final = await caller.deliver(event, other, first=repeat)
            held.append(Gated(event.key, repeat, await first, repeat_final))

    async def chain(n: int, event: Event) -> None:
        if started is not None:
            await started(n)
        first_node = n % caller.nodes
        other = (first_node + 1) % caller.nodes
        if event.key in gated_keys:
            await gated_flow(event, first_node, other)
        elif event.key in plan.together:
            await asyncio.gather(caller.deliver(event, first_node), caller.deliver(event, other))
        elif event.key in plan.after:
            await caller.deliver(event, first_node)
            await caller.deliver(event, other)
        else:
            await caller.deliver(event, first_node)

    await asyncio.gather(*(chain(n, event) for n, event in enumerate(events)))
    return held


# --- the tally ------------------------------------------------------------------------


@dataclass
class Tally:
    """What the nodes logged, against the events that were sent."""

    handled: Counter[str]
    by_node: Counter[str]
    failed_on_purpose: list[str]
    complete_failed: set[str]
    handled_on: dict[str, list[str]]  # key -> the nodes that handled it

    @classmethod
    def of(cls, lines: Iterable[dict[str, Any]]) -> Tally:
        handled: Counter[str] = Counter()
        by_node: Counter[str] = Counter()
        failed, complete_failed = [], set()
        handled_on: dict[str, list[str]] = {}
        for line in lines:
            if line.get("failed"):
                failed.append(line["key"])
            elif line.get("complete_failed"):
                complete_failed.add(line["key"])
            else:
                handled[line["key"]] += 1
                by_node[line["node"]] += 1
                handled_on.setdefault(line["key"], []).append(line["node"])
        return cls(handled, by_node, failed, complete_failed, handled_on)

    def twice(self) -> set[str]:
        return {key for key, count in self.handled.items() if count > 1}


def by_status(answers: Iterable[Answer]) -> dict[str, int]:
    """Answers counted by ``status`` or ``status code`` (``0`` is no answer)."""
    counts = Counter(f"{a.status} {a.code}" if a.code else str(a.status) for a in answers)
    return dict(sorted(counts.items()))


def figures(
    events: Sequence[Event], plan: Plan, answers: Sequence[Answer], tally: Tally, elapsed: float
) -> dict[str, Any]:
    """The run in numbers: answers, exactly-once, duplicates prevented, latency, rate."""
    keys = [event.key for event in events]
    latencies = sorted(a.latency for a in answers)
    ok = sum(1 for a in answers if a.status == 200)
    return {
        "events": len(keys),
        "repeated_events": len(plan.repeated),
        "failing_once_on_purpose": len(plan.fail_on),
        "deliveries": len(answers),
        "answers": by_status(answers),
        "handled_exactly_once": sum(1 for k in keys if tally.handled[k] == 1),
        "handled_twice_or_more": sum(1 for k in keys if tally.handled[k] > 1),
        "never_handled": sum(1 for k in keys if tally.handled[k] == 0),
        "handled_by_node": dict(sorted(tally.by_node.items())),
        "failures_on_purpose": len(tally.failed_on_purpose),
        "duplicates_prevented": ok - sum(tally.handled.values()),
        "latency_ms": {
            "p50": round(1000 * statistics.median(latencies), 1),
            "p99": round(1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
            "max": round(1000 * latencies[-1], 1),
        },
        "seconds": round(elapsed, 2),
        "deliveries_per_second": round(len(answers) / elapsed, 1),
    }


# --- Redis stopped and started again mid-run ------------------------------------------


@dataclass
class Outage:
    """When Redis was down, as the caller knows it: after ``stop`` returned, before ``start``."""

    stopped: float = 0.0
    restarted: float = 0.0
    drained: float = 0.0  # every delivery begun before the late repeats answered 200
    late_repeats: list[str] = field(default_factory=list)

    def covers(self, answer: Answer) -> bool:
        """Sent and answered while no redis-server was running at all."""
        return self.stopped <= answer.sent and answer.received <= self.restarted


async def _until(condition: Callable[[], bool], running: asyncio.Task[Any], what: str) -> None:
    deadline = time.monotonic() + 120  # a hang guard, not a timing assertion
    while not condition():
        if running.done():
            running.result()  # its error, if it failed
            raise RuntimeError(f"the deliveries ended before {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"never {what}")
        await asyncio.sleep(0.01)


async def send_through_restart(
    caller: Caller,
    events: Sequence[Event],
    plan: Plan,
    gates: Path,
    *,
    stop: Callable[[], Awaitable[None]],
    start: Callable[[], Awaitable[None]],
    before: int,
    stop_after: int,
    restart_after: int,
    late_repeats: int,
    seed: int,
    min_outage: float = 0.0,
) -> Outage:
    """Deliver ``events`` while Redis is stopped and started again, and return the outage.

    1. ``events[:before]`` are delivered and answered (their repeats too);
    2. the rest start; once ``stop_after`` of their deliveries are answered,
       Redis is stopped (``stop``: the process ends) while deliveries are
       in flight; everything refused meanwhile is retried with back-off;
    3. once ``restart_after`` deliveries were sent and answered during the
       outage (and ``min_outage`` seconds have passed: a bench's longer
       outage), Redis is started again, and every chain runs to its 200;
    4. ``late_repeats`` events of step 1 are delivered again, to another
       node: Twilio repeating an event handled before the outage.
    """
    outage = Outage()
    await send_all(caller, events[:before], plan, gates)
    seen = len(caller.answers)
    rest = asyncio.create_task(send_all(caller, events[before:], plan, gates))
    try:
        await _until(lambda: len(caller.answers) - seen >= stop_after, rest, "Redis was stopped")
        await stop()
        outage.stopped = time.monotonic()

        def refused_enough() -> bool:
            if time.monotonic() < outage.stopped + min_outage:
                return False
            during = (a for a in caller.answers if a.sent >= outage.stopped)
            return sum(1 for a in during if a.status != 0) >= restart_after

        await _until(refused_enough, rest, "enough deliveries were refused")
        outage.restarted = time.monotonic()
        await start()
        await rest
        outage.drained = time.monotonic()
    finally:
        if not rest.done():
            rest.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rest
    rng = random.Random(seed)
    late = rng.sample(range(before), late_repeats)
    outage.late_repeats = [events[n].key for n in late]
    await asyncio.gather(
        *(caller.deliver(events[n], (n % caller.nodes + 2) % caller.nodes) for n in late)
    )
    return outage
