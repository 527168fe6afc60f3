"""One webhook node of the scaling tests and ``make scale``: ``webhook_node.py --port N ...``.

A real ``ratatosk`` webhook server (the one ``ratatosk serve`` runs, on loopback) wired as
``ratatosk serve --redis URL`` wires it: the connector's conversation
windows and the server's deduplicator are the Redis adapters of one
``RedisStores``. What differs from ``serve`` is the handler, which exists to
be watched:

* it takes ``--delay MIN:MAX`` seconds (``asyncio.sleep``), so a repeat can
  arrive on another node while the first delivery is still being handled;
* an event the ``--plan`` marks ``gate`` waits in its handler until the
  file ``<gates>/<key>.open`` exists, and says it is inside by creating
  ``<gates>/<key>.started``: a caller can then send the repeat while the
  first delivery provably has not finished, without guessing at timings;
* an event the plan marks ``fail_on: <this node>`` makes the handler raise
  the first time it reaches this node (the server answers 500 and forgets
  the delivery, so Twilio's retry is handled instead of lost);
* every event handled is one JSON line in ``--events``:
  ``{"node", "key", "sid", "kind"}``; a failure on purpose is a line with
  ``"failed": true``, and a handled event the server could not mark handled
  in Redis (``Deduplicator.complete`` failed) a line with
  ``"complete_failed": true``.

The auth token comes from ``TWILIO_AUTH_TOKEN`` (never the command line, which
any local user can read). The node stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from ratatosk import ConnectionSettings, ReceiveResult, StatusUpdate
from ratatosk.adapters.http11_server import serve_webhooks
from ratatosk.adapters.http_server import wait_for_stop_signal
from ratatosk.adapters.redis import RedisStores
from ratatosk.adapters.webhook_core import WebhookCore
from ratatosk.bootstrap import build_connector
from ratatosk.ports import Claim, Deduplicator, StateStoreError

#: The key under which the server claims an event (``event:`` + the event's own key).
EVENT_NAMESPACE = "event:"


def message_key(sid: str) -> str:
    """The event key of an inbound message, as the server forms it."""
    return f"message:{sid}"


def status_key(sid: str, twilio_status: str, error_code: int | None = None) -> str:
    """The event key of a status callback, as the server forms it."""
    code = "" if error_code is None else str(error_code)
    return f"status:{sid}:{twilio_status.strip().lower()}:{code}"


def gate_file(gates: Path, key: str, suffix: str) -> Path:
    return gates / (key.replace(":", "_") + suffix)


class EventLog:
    """One JSON line per event, flushed at once: a line written is a line the caller can read."""

    def __init__(self, stream: IO[str], node: str) -> None:
        self._stream = stream
        self._node = node

    def write(self, **fields: Any) -> None:
        self._stream.write(json.dumps({"node": self._node, **fields}) + "\n")
        self._stream.flush()


class RecordedCompletions:
    """The Redis deduplicator, telling the event log which completions Redis refused.

    The server answers 200 to a handled event even when Redis cannot record
    it as handled (answering 503 would make Twilio repeat an event already
    handled); such an event may be handled again if it is repeated. The
    caller needs to know which events those were to tell that documented
    limit from a real double handling. Everything else passes through.
    """

    def __init__(self, inner: Deduplicator, events: EventLog) -> None:
        self._inner = inner
        self._events = events

    async def claim(self, key: str, *, wait: float = 0.0) -> Claim:
        return await self._inner.claim(key, wait=wait)

    async def complete(self, key: str) -> None:
        try:
            await self._inner.complete(key)
        except StateStoreError:
            self._events.write(key=key.removeprefix(EVENT_NAMESPACE), complete_failed=True)
            raise

    async def release(self, key: str) -> None:
        await self._inner.release(key)


class Handlers:
    """The watched handler: its delay, its gates, its failures on purpose, its log."""

    def __init__(
        self,
        node: str,
        events: EventLog,
        delay: tuple[float, float],
        plan: Mapping[str, Mapping[str, Any]],
        gates: Path | None,
    ) -> None:
        self._node = node
        self._events = events
        self._delay = delay
        self._plan = plan
        self._gates = gates
        self._failed_here: set[str] = set()

    async def on_message(self, received: ReceiveResult) -> None:
        sid = ",".join(m.id for m in received.messages)
        await self._handle("message", message_key(sid), sid)

    async def on_status(self, update: StatusUpdate) -> None:
        twilio_status = str(update.data.get("twilio_status") or update.status.value)
        key = status_key(update.message_id, twilio_status, update.error_code)
        await self._handle("status", key, update.message_id)

    async def _handle(self, kind: str, key: str, sid: str) -> None:
        planned = self._plan.get(key, {})
        if planned.get("gate") and self._gates is not None:
            gate_file(self._gates, key, ".started").touch()
            opened = gate_file(self._gates, key, ".open")
            while not opened.exists():
                await asyncio.sleep(0.01)
        low, high = self._delay
        await asyncio.sleep(random.uniform(low, high))
        if planned.get("fail_on") == self._node and key not in self._failed_here:
            self._failed_here.add(key)
            self._events.write(key=key, sid=sid, kind=kind, failed=True)
            raise RuntimeError(f"{key} fails on {self._node} on purpose")
        self._events.write(key=key, sid=sid, kind=kind)


def _delay(value: str) -> tuple[float, float]:
    low, _, high = value.partition(":")
    bounds = (float(low), float(high or low))
    if not 0 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError("--delay is MIN[:MAX] seconds, 0 <= MIN <= MAX")
    return bounds


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True, help="redis:// URL of the shared Redis")
    parser.add_argument("--prefix", default="ratatosk:", help="Redis key prefix")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True, help="this node's name in the event log")
    parser.add_argument("--events", type=Path, required=True, help="JSON lines, appended")
    parser.add_argument("--public-url", required=True, help="the URL Twilio signs")
    parser.add_argument("--account-sid", required=True)
    parser.add_argument("--delay", type=_delay, default=(0.0, 0.0), help="MIN[:MAX] seconds")
    parser.add_argument("--plan", type=Path, help="JSON {key: {gate, fail_on}}")
    parser.add_argument("--gates", type=Path, help="directory of the gate files")
    parser.add_argument("--in-flight-wait", type=float, default=10.0)
    parser.add_argument("--lease", type=float, default=120.0, help="dedup claim lease, seconds")
    parser.add_argument("--redis-timeout", type=float, default=2.0)
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    token = os.environ.get("TWILIO_AUTH_TOKEN", "")
    if not token:
        raise SystemExit("set TWILIO_AUTH_TOKEN: the token the webhooks are signed with")
    plan = json.loads(args.plan.read_text()) if args.plan is not None else {}
    stores = RedisStores.from_url(args.redis, prefix=args.prefix, timeout=args.redis_timeout)
    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", args.account_sid)
        .set_parameter("AuthToken", token, sensitive=True)
        .set_parameter("ApiBaseUrl", "http://127.0.0.1:9")  # receives only: never called
    )
    connector = build_connector(settings, environ={}, redis=stores)
    with args.events.open("a", encoding="utf-8") as stream:
        events = EventLog(stream, args.name)
        handlers = Handlers(args.name, events, args.delay, plan, args.gates)
        try:
            (await connector.initialize()).unwrap()
            core = WebhookCore(
                connector,
                validator=connector.signature_validator,
                public_url=args.public_url,
                on_message=handlers.on_message,
                on_status=handlers.on_status,
                dedup=RecordedCompletions(stores.deduplicator(lease=args.lease), events),
                in_flight_wait=args.in_flight_wait,
            )
            server = await serve_webhooks(core, "127.0.0.1", args.port)
            try:
                await wait_for_stop_signal()
            finally:
                await server.close()
        finally:
            await connector.shutdown()
            await stores.close()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(run(_arguments(argv)))


if __name__ == "__main__":
    main()
