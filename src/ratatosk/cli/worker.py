"""``ratatosk worker``, ``ratatosk send --queue`` and ``ratatosk result``: the send queue.

``worker`` drains the Redis queue until SIGTERM or SIGINT (exit 0 after a
graceful stop: sends in flight finished, the rest handed back); ``send
--queue`` submits one message and prints its ticket; ``result`` reads the
final result of queued messages by id, optionally waiting for it. Redis
comes from ``--redis`` or ``REDIS_URL``; credentials from ``TWILIO_*`` as for
every command, and never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import socket
from typing import TYPE_CHECKING, Any

from ..adapters.worker import WorkerSettings
from ..bootstrap import build_outbox, build_worker, open_redis, redis_url, settings_from_env
from ..domain.message import Message
from ..domain.result import ConnectorError, ConnectorResult, SendResult
from ..ports import StateStoreError
from ..twilio.errors import TwilioErrorCodes, error
from ..twilio.outbox import Outbox
from ..twilio.resilience import SendPolicy
from ..twilio.schema import is_redis_url
from ..twilio.send import Delivery
from .loop import loop_name
from .loop import run as run_loop
from .output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Output, one_line

if TYPE_CHECKING:
    from ..adapters.redis import RedisStores

REDIS_HELP = (
    "the Redis holding the queue: redis://[:password@]host[:port][/db] (default: REDIS_URL)"
)


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    worker = commands.add_parser(
        "worker", parents=parents, help="send the messages of the Redis queue until stopped"
    )
    worker.add_argument("--redis", metavar="URL", help=REDIS_HELP)
    worker.add_argument("--concurrency", type=int, default=16, help="sends at once (16)")
    worker.add_argument(
        "--delivery",
        choices=[d.value for d in Delivery],
        default=Delivery.AT_MOST_ONCE.value,
        help="a message whose outcome stayed unknown and Twilio does not have: reported "
        "not sent (at-most-once, the default) or sent again (at-least-once)",
    )
    worker.add_argument("--consumer", help="this worker's name in the queue (default: HOST-PID)")
    worker.add_argument(
        "--rate", type=float, default=80.0, help="sends per second per sender, all workers (80)"
    )
    worker.add_argument("--burst", type=float, help="sends a sender may burst (default: --rate)")
    worker.add_argument(
        "--visibility-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="an entry untouched that long is taken by another worker; also the delay "
        "before an unknown outcome is looked at again (30)",
    )
    worker.add_argument(
        "--max-deliveries", type=int, default=30, help="hand-outs before dead-lettering (30)"
    )
    worker.add_argument(
        "--lease",
        type=float,
        metavar="SECONDS",
        help="how long the send ledger holds a message being sent (default: from the "
        "send deadline, at least 600); a dead worker's message is looked at after it",
    )
    worker.add_argument(
        "--grace", type=float, default=30.0, metavar="SECONDS", help="to finish sends on stop"
    )
    worker.add_argument("--queue-name", default="outbound", help="the queue's name (outbound)")

    result = commands.add_parser(
        "result", parents=parents, help="the final result of queued messages, by message id"
    )
    result.add_argument("message_ids", nargs="+", metavar="MESSAGE_ID")
    result.add_argument("--redis", metavar="URL", help=REDIS_HELP)
    result.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS", help="wait that long for results"
    )
    result.add_argument("--queue-name", default="outbound", help="the queue's name (outbound)")


def add_send_options(send: argparse.ArgumentParser) -> None:
    """``send --queue --redis URL``: submit to the workers instead of sending."""
    send.add_argument(
        "--queue", action="store_true", help="submit to the send queue; a worker sends it"
    )
    send.add_argument(
        "--redis",
        metavar="URL",
        help="with --queue: " + REDIS_HELP + "; without it: send now, with the rate limit and "
        "the send ledger shared through this Redis (the same --id is sent once across processes)",
    )
    send.add_argument("--queue-name", default="outbound", help="the queue's name (outbound)")


def queue_unreachable(exc: StateStoreError) -> ConnectorError:
    """The coded error every command prints when its Redis does not answer, as ``send`` does."""
    return error(
        TwilioErrorCodes.STATE_STORE_UNAVAILABLE,
        f"the queue could not be asked; try again later ({exc})",
    )


def redis_or_usage(args: argparse.Namespace, out: Output) -> str | None:
    url = args.redis or redis_url(settings_from_env())
    if not url:
        out.emit("usage", "error: the queue lives in Redis: give --redis URL or set REDIS_URL")
        return None
    if not is_redis_url(url):
        out.emit(
            "usage",
            "error: --redis must be a redis:// or rediss:// URL "
            "(redis://[:password@]host[:port][/db])",
        )
        return None
    return str(url)


def worker(args: argparse.Namespace, out: Output) -> int:
    url = redis_or_usage(args, out)
    if url is None:
        return EXIT_USAGE
    if args.concurrency < 1 or args.max_deliveries < 1 or args.rate <= 0:
        out.emit("usage", "error: --concurrency, --max-deliveries and --rate must be positive")
        return EXIT_USAGE
    if (
        args.visibility_timeout <= 0
        or args.grace < 0
        or (args.lease is not None and args.lease <= 0)
    ):
        out.emit("usage", "error: --visibility-timeout and --lease must be positive")
        return EXIT_USAGE
    return run_loop(_work(args, out, url))


async def _work(args: argparse.Namespace, out: Output, url: str) -> int:
    stores = open_redis(url)
    try:
        return await _work_with(args, out, stores)
    finally:
        await stores.close()


async def _work_with(args: argparse.Namespace, out: Output, stores: RedisStores) -> int:
    consumer = args.consumer or f"{socket.gethostname()}-{os.getpid()}"
    settings = WorkerSettings(
        consumer=consumer,
        concurrency=args.concurrency,
        delivery=Delivery(args.delivery),
        max_deliveries=args.max_deliveries,
        grace=args.grace,
    )
    policy = SendPolicy(rate_per_sender=args.rate, burst=args.burst or args.rate)
    try:
        queue_worker = build_worker(
            stores,
            settings,
            send_policy=policy,
            lease=args.lease,
            visibility_timeout=args.visibility_timeout,
            queue_name=args.queue_name,
        )
    except ValueError as exc:
        out.emit("usage", f"error: {exc}")
        return EXIT_USAGE
    connector = queue_worker.connector
    initialized = await connector.initialize()
    if initialized.error is not None:
        return out.failure(initialized.error)
    try:
        try:
            await stores.ping()
        except StateStoreError as exc:
            out.emit("warning", f"{exc}; waiting for it")
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, queue_worker.stop)
        out.emit(
            "worker",
            f"worker {consumer}: sending queue {args.queue_name!r} from Redis at {stores.where} "
            f"(concurrency {args.concurrency}, {settings.delivery.value}, "
            f"{args.rate:g}/s per sender; {loop_name()} loop)",
            consumer=consumer,
            queue=args.queue_name,
            redis=stores.where,
            concurrency=args.concurrency,
            delivery=settings.delivery.value,
            rate=args.rate,
            loop=loop_name(),
        )
        report = await queue_worker.run()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    finally:
        await connector.shutdown()
    out.emit(
        "stopped",
        f"worker {consumer} stopped: {report.completed} completed, {report.left} left for a "
        f"re-check, {report.dead_lettered} dead-lettered, {report.handed_back} handed back",
        consumer=consumer,
        completed=report.completed,
        left=report.left,
        dead_lettered=report.dead_lettered,
        handed_back=report.handed_back,
        failed_to_record=report.failed_to_record,
    )
    return EXIT_OK


async def submit(args: argparse.Namespace, out: Output, message: Message) -> int:
    """``send --queue``: the message planned here, queued, its ticket printed."""
    url = redis_or_usage(args, out)
    if url is None:
        return EXIT_USAGE
    stores = open_redis(url)
    try:
        outbox = build_outbox(redis=stores, queue_name=args.queue_name)
        submitted = await outbox.submit(message)
    finally:
        await stores.close()
    if submitted.error is not None:
        return out.failure(submitted.error)
    ticket = submitted.unwrap()
    out.emit(
        "queued",
        f"queued {ticket.message_id} (entry {ticket.entry_id}); its result: "
        f"{_result_command(args, ticket.message_id)}",
        message_id=ticket.message_id,
        entry_id=ticket.entry_id,
        queue=args.queue_name,
    )
    return EXIT_OK


def _result_command(args: argparse.Namespace, message_id: str) -> str:
    """The ``ratatosk result`` that finds this message, to run as printed.

    A ``--redis`` given on the command line goes in (``REDIS_URL`` is there
    for the next command too), its password masked: a hint is no place for
    a secret, and the reader puts it back. A queue other than the default
    goes in as well, or the follow-up would look in the wrong one.
    """
    words = ["ratatosk", "result", message_id]
    if args.redis:
        from ..adapters.redis import redacted  # noqa: PLC0415 - redis-py, loaded by the submit

        words += ["--redis", redacted(args.redis)]
    if args.queue_name != "outbound":
        words += ["--queue-name", args.queue_name]
    return shlex.join([*words, "--wait", "30"])


def result(args: argparse.Namespace, out: Output) -> int:
    url = redis_or_usage(args, out)
    if url is None:
        return EXIT_USAGE
    if args.wait < 0:
        out.emit("usage", "error: --wait takes seconds, 0 or more")
        return EXIT_USAGE
    return asyncio.run(_results(args, out, url))


async def _results(args: argparse.Namespace, out: Output, url: str) -> int:
    stores = open_redis(url)
    try:
        outbox = build_outbox(redis=stores, queue_name=args.queue_name)
        try:
            found = await _read(outbox, args.message_ids, args.wait)
        except StateStoreError as exc:
            return out.failure(queue_unreachable(exc))
    finally:
        await stores.close()
    code = EXIT_OK
    for message_id, outcome in zip(args.message_ids, found, strict=True):
        if outcome is None:
            out.emit("pending", f"{message_id}: no result yet", message_id=message_id)
            code = EXIT_FAILED
        elif outcome.error is not None:
            failure = outcome.error
            out.emit(
                "failed",
                f"{message_id}: error {failure.code}: {one_line(failure.message)}",
                message_id=message_id,
                error=failure.to_dict(),
            )
            code = EXIT_FAILED
        else:
            sent = outcome.unwrap()
            out.emit(
                "sent",
                f"{message_id}: sent {sent.provider_message_id} ({sent.status.value})",
                message_id=message_id,
                sid=sent.provider_message_id,
                status=sent.status.value,
                timestamp=sent.timestamp.isoformat(),
                data=dict(sent.data),
            )
    return code


async def _read(
    outbox: Outbox, message_ids: list[str], wait: float
) -> list[ConnectorResult[SendResult] | None]:
    if wait > 0:
        return await outbox.wait_all(message_ids, timeout=wait)
    return [await outbox.result(message_id) for message_id in message_ids]
