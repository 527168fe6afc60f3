"""``ratatosk send-batch FILE``: one message per row, validated first, resumable (CLI layer).

Every row is planned before anything is sent, so a bad row is reported by
line and code and costs no request (``--dry-run`` stops there). The good
rows go out through one connector (its rate limiter and in-flight cap), at
most ``--concurrency`` at a time; each outcome is appended to the results
file as it arrives. A rerun reads that file and sends only the rows with no
SID: a row whose outcome is unknown (the answer was lost, or the run was
abandoned mid-send) is reported and left alone unless ``--resend-unknown``,
since Twilio may already hold it.

Ctrl-C (or SIGTERM) stops taking rows and lets the sends in flight finish;
a second one abandons them, recording each as unknown.

With ``--queue`` (Redis from ``--redis`` or ``REDIS_URL``, as for ``send
--queue``) the good rows are submitted to the send queue instead and the
command follows the workers' results by message id, recording each as it
arrives; the results file holds each row's ticket (a ``queued`` line) first,
so a rerun, or one after ``--no-wait``, waits for those rows rather than
submitting them twice. A row the queue already holds a result for (submitted
by a run that was killed before it could write the ticket down) is collected,
not submitted. A ticket the queue no longer knows (its result outlived the
queue's TTL, or this is another Redis or queue name) ends as
QUEUED_MESSAGE_UNKNOWN, of unknown outcome, instead of being waited on forever.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from ..bootstrap import build_connector, build_outbox, open_redis, settings_from_env
from ..domain.errors import MessagingErrorCodes
from ..domain.result import ConnectorError, ConnectorResult, SendResult
from ..ports import StateStoreError
from ..twilio.connector import TwilioWhatsAppConnector
from ..twilio.errors import TwilioErrorCodes, error
from ..twilio.outbound import SendConfig
from ..twilio.outbox import FIRST_POLL, MAX_POLL, Outbox, Ticket
from ..twilio.resilience import SendPolicy
from ..twilio.schema import TwilioChannelSchemas, settings_problem
from .batch_file import UNKNOWN_CODES, Earlier, ResultsFile, Row, read_results, read_rows
from .output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Output, one_line
from .progress import MODES, Progress, progress_for
from .worker import REDIS_HELP, queue_unreachable, redis_or_usage

EXIT_INTERRUPTED = 130
#: Rows per round trip when submitting to the queue, and results asked for at once.
SUBMIT_CHUNK = 500
RESULT_LOOKUPS = 32
#: The default ``--concurrency`` (direct sends only).
CONCURRENCY = 10


def add_parser(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Register ``send-batch`` on the command's subparsers."""
    batch = commands.add_parser(
        "send-batch",
        parents=list(parents),
        help="send one message per row of a CSV or JSON-lines file",
        description="Send one WhatsApp message per row. Columns (JSON keys): to, and text "
        "(with media/caption) or template with var.NAME columns (a 'variables' object); "
        "optional id, from, language. Results go to a JSON-lines file; a rerun with the "
        "same results file sends only what was not sent.",
    )
    batch.add_argument("file", type=Path, help="the rows: .csv, or .jsonl (one object a line)")
    batch.add_argument("--format", choices=["auto", "csv", "jsonl"], default="auto")
    batch.add_argument("--dry-run", action="store_true", help="validate every row, send nothing")
    batch.add_argument("--results", type=Path, metavar="PATH", help="default: FILE.results.jsonl")
    batch.add_argument(
        "--concurrency",
        type=_positive(int),
        metavar="N",
        help=f"sends at once (default {CONCURRENCY}; with --queue the workers' own decides)",
    )
    batch.add_argument(
        "--rate",
        type=_positive(float),
        metavar="PER_SECOND",
        help=f"sends per second per sender (default {SendPolicy().rate_per_sender:g}, "
        "Twilio's WhatsApp throughput; with --queue the workers' own decides)",
    )
    batch.add_argument(
        "--resend-unknown",
        action="store_true",
        help="also send rows whose earlier outcome is unknown (Twilio may already have them)",
    )
    batch.add_argument("--progress", choices=MODES, default="auto", help="default: bar on a tty")
    batch.add_argument(
        "--queue",
        action="store_true",
        help="submit the rows to the send queue (ratatosk worker sends them) and follow "
        "the workers' results",
    )
    batch.add_argument("--redis", metavar="URL", help=f"with --queue: {REDIS_HELP}")
    batch.add_argument("--queue-name", default="outbound", help="the queue's name (outbound)")
    batch.add_argument(
        "--no-wait",
        action="store_true",
        help="with --queue: submit, record the tickets and exit; a later run with the same "
        "results file collects the results",
    )


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not positive")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its message
    return parse


def send_batch(args: argparse.Namespace, out: Output) -> int:
    return asyncio.run(_send_batch(args, out))


@attrs.define
class _Counts:
    invalid: int = 0
    already_sent: int = 0
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    #: Rows of this run with an outcome (sent, failed or unknown).
    done: int = 0
    #: Rows in the send queue with no result yet (at the end of the run).
    queued: int = 0
    #: Rows this run submitted to the queue.
    submitted: int = 0
    #: Rows whose result was already in the queue though the results file had no ticket.
    collected: int = 0


async def _send_batch(args: argparse.Namespace, out: Output) -> int:
    path: Path = args.file
    results_path: Path = args.results or path.with_name(path.name + ".results.jsonl")
    if not path.is_file():
        out.emit("usage", f"error: {path} is not a readable file")
        return EXIT_USAGE
    problem = _queue_usage(args)
    if problem is not None:
        out.emit("usage", f"error: {problem}")
        return EXIT_USAGE
    url = redis_or_usage(args, out) if args.queue and not args.dry_run else None
    if args.queue and not args.dry_run and url is None:
        return EXIT_USAGE
    settings = settings_from_env()
    schema = TwilioChannelSchemas.TWILIO_WHATSAPP
    rows = read_rows(path, args.format, schema, SendConfig.from_settings(settings))
    if isinstance(rows, ConnectorError):
        return out.failure(rows)
    earlier = read_results(results_path)
    if isinstance(earlier, ConnectorError):
        return out.failure(earlier)
    counts = _Counts()
    todo, waiting = _classify(args, out, rows, earlier, counts)
    if args.dry_run:
        # The rows are what a dry run judges; settings that would stop the real run at its
        # first step are said too, so the file is not the only thing checked.
        unready = settings_problem(schema, settings)
        if unready is not None:
            out.emit(
                "warning",
                f"warning: the real run would stop before sending: {unready.code}: "
                f"{one_line(unready.message)}",
                code=unready.code,
            )
        _summary(out, len(rows), counts, not_sent=len(todo), results=None)
        return EXIT_OK if not counts.invalid else EXIT_FAILED
    progress = progress_for(
        "none" if args.no_wait else args.progress,
        len(todo) + (len(waiting) if args.queue else 0),
        sys.stderr,
        label="workers" if args.queue else "sending",
    )
    if isinstance(progress, str):
        out.emit("usage", f"error: {progress}")
        return EXIT_USAGE
    if url is not None:
        run = _QueueRun(args, out, rows, progress, counts)
        return await run.run(url, _Plan(todo, waiting, earlier, results_path))
    connector = build_connector(settings, send_policy=_policy(args))
    ready = await connector.initialize()
    if ready.error is not None:
        await connector.shutdown()
        return out.failure(ready.error)
    results = ResultsFile(results_path)
    interrupted = False
    try:
        _record_invalid(rows, earlier, results)
        if todo:
            interrupted = await _send_rows(
                connector,
                todo,
                concurrency=args.concurrency or CONCURRENCY,
                results=results,
                progress=progress,
                out=out,
                counts=counts,
            )
    finally:
        progress.close()
        results.close()
        await connector.shutdown()
    _summary(
        out,
        len(rows),
        counts,
        not_sent=len(todo) - counts.done,
        results=results_path,
        interrupted=interrupted,
    )
    if interrupted:
        return EXIT_INTERRUPTED
    return _exit_code(counts)


def _classify(
    args: argparse.Namespace, out: Output, rows: list[Row], earlier: Earlier, counts: _Counts
) -> tuple[list[Row], list[Row]]:
    """The rows to send or submit, and those an earlier run left in the send queue.

    Bad rows and rows of unknown outcome are reported here. Without
    ``--queue`` a queued row is reported and left alone: a worker has it, and
    sending it here too could send it twice.
    """
    todo: list[Row] = []
    waiting: list[Row] = []
    for row in rows:
        if row.error is not None:
            counts.invalid += 1
            _report(out, "invalid", row, row.error)
        elif row.message_id in earlier.sids:
            counts.already_sent += 1
        elif row.message_id in earlier.queued:
            waiting.append(row)
        elif earlier.unknown(row.message_id) and not args.resend_unknown:
            counts.unknown += 1
            _report(out, "unknown", row, _EARLIER_UNKNOWN)
        else:
            todo.append(row)
    counts.queued = len(waiting)
    if not args.queue:
        for row in waiting:
            _report(out, "queued", row, _EARLIER_QUEUED)
    return todo, waiting


def _exit_code(counts: _Counts) -> int:
    """1 while any row is bad, failed, of unknown outcome or left in the queue unread."""
    unfinished = counts.invalid or counts.failed or counts.unknown or counts.queued
    return EXIT_OK if not unfinished else EXIT_FAILED


def _record_invalid(rows: list[Row], earlier: Earlier, results: ResultsFile) -> None:
    """Each bad row's code, recorded once: a rerun adds nothing for a row already refused so."""
    for row in rows:
        if row.error is not None and earlier.codes.get(row.message_id) != row.error.code:
            results.failed(row, row.error)


def _queue_usage(args: argparse.Namespace) -> str | None:
    """Why the options do not go together, or None."""
    if not args.queue:
        given = [o for o, v in (("--redis", args.redis), ("--no-wait", args.no_wait)) if v]
        if given:
            return f"{' and '.join(given)} go with --queue (submit the rows to the send queue)"
        return None
    if args.concurrency is not None or args.rate is not None:
        return (
            "with --queue the workers send: their --concurrency and --rate decide "
            "(ratatosk worker --help)"
        )
    if args.resend_unknown:
        return (
            "--resend-unknown does not go with --queue: the queue keeps a message id's first "
            "result, so resend those rows without --queue"
        )
    return None


def _policy(args: argparse.Namespace) -> SendPolicy:
    """The default policy, at ``--rate``, with room in flight for ``--concurrency`` sends."""
    default = SendPolicy()
    return attrs.evolve(
        default,
        rate_per_sender=args.rate or default.rate_per_sender,
        max_in_flight=max(default.max_in_flight, args.concurrency or CONCURRENCY),
    )


async def _send_rows(
    connector: TwilioWhatsAppConnector,
    todo: list[Row],
    *,
    concurrency: int,
    results: ResultsFile,
    progress: Progress,
    out: Output,
    counts: _Counts,
) -> bool:
    """Send ``todo`` with ``concurrency`` workers; True when a signal cut the run short."""
    pending = iter(todo)
    stopping = asyncio.Event()

    def record(row: Row, outcome: tuple[str, str] | ConnectorError) -> None:
        _record(out, row, outcome, results, counts)
        progress.advance(not isinstance(outcome, ConnectorError))

    async def worker() -> None:
        while not stopping.is_set() and (row := next(pending, None)) is not None:
            try:
                outcome = await _send_one(connector, row)
            except asyncio.CancelledError:
                record(row, _abandoned())
                raise
            record(row, outcome)

    workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(todo)))]
    with _Interrupts(stopping, workers):
        try:
            await asyncio.wait(workers)
        except asyncio.CancelledError:  # no loop signal handlers: Ctrl-C cancelled the run
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)  # each records its row
            raise
    return stopping.is_set()


def _abandoned() -> ConnectorError:
    return error(
        TwilioErrorCodes.SEND_OUTCOME_UNKNOWN,
        "the run was stopped while this row was being sent; Twilio may have it",
    )


async def _send_one(
    connector: TwilioWhatsAppConnector, row: Row
) -> tuple[str, str] | ConnectorError:
    assert row.message is not None
    try:
        result = await connector.send_message(row.message)
    except Exception as exc:  # a bug in an adapter fails its row, not the batch
        return error(
            MessagingErrorCodes.SEND_MESSAGE_FAILED,
            f"unexpected {type(exc).__name__} while sending",
        )
    if result.error is not None:
        return result.error
    sent = result.unwrap()
    return sent.provider_message_id, sent.status.value


def _record(
    out: Output,
    row: Row,
    outcome: tuple[str, str] | ConnectorError,
    results: ResultsFile | None,
    counts: _Counts,
) -> None:
    """Count and report an outcome; write it down unless ``results`` is None (already there)."""
    counts.done += 1
    if not isinstance(outcome, ConnectorError):
        counts.sent += 1
        if results is not None:
            results.sent(row, *outcome)
        return
    if results is not None:
        results.failed(row, outcome)
    if outcome.code in UNKNOWN_CODES:
        counts.unknown += 1
        _report(out, "unknown", row, outcome)
    else:
        counts.failed += 1
        _report(out, "failed", row, outcome)


class _Interrupts:
    """SIGINT/SIGTERM: the first stops taking rows, the second cancels the sends in flight."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(
        self,
        stopping: asyncio.Event,
        workers: list[asyncio.Task[None]],
        notice: str = "stopping: letting the sends in flight finish (again to abandon them)",
    ) -> None:
        self._stopping = stopping
        self._workers = workers
        self._notice = notice
        self._loop = asyncio.get_running_loop()
        self._installed: list[signal.Signals] = []

    def _on_signal(self) -> None:
        if not self._stopping.is_set():
            self._stopping.set()
            print(
                self._notice,
                file=sys.stderr,
                flush=True,
            )
            return
        for worker in self._workers:
            worker.cancel()

    def __enter__(self) -> _Interrupts:
        for number in self.SIGNALS:
            try:
                self._loop.add_signal_handler(number, self._on_signal)
            except (NotImplementedError, RuntimeError):  # no loop signal handlers (Windows)
                continue
            self._installed.append(number)
        return self

    def __exit__(self, *_: object) -> None:
        for number in self._installed:
            self._loop.remove_signal_handler(number)


@attrs.frozen
class _Plan:
    """What a run with ``--queue`` does: rows to submit, rows an earlier run submitted."""

    todo: list[Row]
    waiting: list[Row]
    earlier: Earlier
    results_path: Path


class _QueueRun:
    """``--queue``: collect what the queue already finished, submit the rest, follow the workers.

    Every row's ticket is written down (a ``queued`` line) before the next
    chunk is submitted, and every result as it is read, so whenever the run
    stops the results file says which rows a worker has.
    """

    def __init__(
        self,
        args: argparse.Namespace,
        out: Output,
        rows: list[Row],
        progress: Progress,
        counts: _Counts,
    ) -> None:
        self._args = args
        self._out = out
        self._rows = rows
        self._progress = progress
        self._counts = counts
        self._stopping = asyncio.Event()
        #: Rows in the queue with no result read yet, by message id, with their tickets.
        self._pending: dict[str, tuple[Row, Ticket]] = {}

    async def run(self, url: str, plan: _Plan) -> int:
        stores = open_redis(url)
        results = ResultsFile(plan.results_path)
        self._pending = {
            row.message_id: (row, Ticket(row.message_id, plan.earlier.queued[row.message_id]))
            for row in plan.waiting
        }
        problem: ConnectorError | None = None
        notice = "stopping: the rows in the queue stay there; a rerun waits for their results"
        try:
            outbox = build_outbox(redis=stores, queue_name=self._args.queue_name)
            _record_invalid(self._rows, plan.earlier, results)
            with _Interrupts(self._stopping, [], notice):
                try:
                    fresh = await self._collect_finished(outbox, plan, results)
                    await self._submit(outbox, fresh, results)
                    if not self._args.no_wait:
                        await self._follow(outbox, results)
                except StateStoreError as exc:
                    problem = queue_unreachable(exc)
        finally:
            self._progress.close()
            results.close()
            await stores.close()
        return self._finish(plan, problem)

    def _finish(self, plan: _Plan, problem: ConnectorError | None) -> int:
        counts = self._counts
        counts.queued = len(self._pending)
        interrupted = self._stopping.is_set()
        if problem is not None:
            self._out.failure(problem)
        _summary(
            self._out,
            len(self._rows),
            counts,
            not_sent=len(plan.todo) - counts.submitted - counts.collected,
            results=plan.results_path,
            interrupted=interrupted,
            queue=True,
        )
        if interrupted:
            return EXIT_INTERRUPTED
        if problem is not None:
            return EXIT_FAILED
        if self._args.no_wait:  # the rows in the queue are what was asked for
            return _exit_code(attrs.evolve(counts, queued=0))
        return _exit_code(counts)

    def _record(
        self,
        results: ResultsFile,
        row: Row,
        outcome: ConnectorResult[SendResult] | ConnectorError,
        earlier: Earlier | None = None,
    ) -> None:
        done = _outcome(outcome)
        known = (  # a failure read from the queue by an earlier run: reported, not written again
            earlier is not None
            and isinstance(done, ConnectorError)
            and earlier.codes.get(row.message_id) == done.code
        )
        _record(self._out, row, done, None if known else results, self._counts)
        self._progress.advance(not isinstance(done, ConnectorError))

    async def _collect_finished(
        self, outbox: Outbox, plan: _Plan, results: ResultsFile
    ) -> list[Row]:
        """Rows the queue has no result for; the others' results recorded.

        Such a row was submitted by a run that died before it wrote the
        ticket down (or, under the same message id, by another batch).
        """
        fresh: list[Row] = []
        unrecorded = 0
        found = await _results_of(outbox, [row.message_id for row in plan.todo])
        for row, outcome in zip(plan.todo, found, strict=True):
            if outcome is None:
                fresh.append(row)
            else:
                self._counts.collected += 1
                unrecorded += row.message_id not in plan.earlier.codes
                self._record(results, row, outcome, plan.earlier)
        if unrecorded:
            self._out.emit(
                "warning",
                f"warning: {unrecorded} row(s) the results file has no record of already have a "
                "result in the queue under their message id, recorded as theirs and not "
                "submitted; if this is another batch than the one that submitted them, give "
                "its rows their own ids (an id column, or another file name)",
                rows=unrecorded,
            )
        return fresh

    async def _submit(self, outbox: Outbox, fresh: list[Row], results: ResultsFile) -> None:
        """Submit in chunks of one round trip each, each chunk's tickets written down at once.

        A signal stops between chunks: a chunk is queued whole or not at all.
        """
        for start in range(0, len(fresh), SUBMIT_CHUNK):
            if self._stopping.is_set():
                return
            chunk = fresh[start : start + SUBMIT_CHUNK]
            tickets = await outbox.submit_many([row.message for row in chunk if row.message])
            for row, ticket in zip(chunk, tickets, strict=True):
                if ticket.error is not None:  # refused, or the queue not asked: not queued
                    self._record(results, row, ticket.error)
                    continue
                queued = ticket.unwrap()
                results.queued(row, queued.entry_id)
                self._counts.submitted += 1
                self._pending[row.message_id] = (row, queued)

    async def _follow(self, outbox: Outbox, results: ResultsFile) -> None:
        """Read the workers' results until every pending row has one or a signal stops the wait.

        Polls as :meth:`Outbox.wait` does (50 ms at first, backing off to a
        second while nothing new arrives); a Redis that stops answering is
        waited for, as the workers wait for it. A row whose ticket the queue
        no longer knows gets QUEUED_MESSAGE_UNKNOWN from the outbox and is
        recorded like any result, so the wait ends.
        """
        pause = FIRST_POLL
        unreachable = False
        pending = self._pending
        while pending and not self._stopping.is_set():
            message_ids = list(pending)
            try:
                found = await _results_by_ticket(outbox, [pending[m][1] for m in message_ids])
            except StateStoreError as exc:
                if not unreachable:
                    self._out.emit("warning", f"the queue could not be asked: {exc}; waiting")
                unreachable = True
                found = []
            else:
                unreachable = False
            arrived = False
            for message_id, outcome in zip(message_ids, found, strict=False):
                if outcome is not None:
                    self._record(results, pending.pop(message_id)[0], outcome)
                    arrived = True
            if not pending:
                return
            pause = FIRST_POLL if arrived else min(pause * 2, MAX_POLL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)


async def _results_of(
    outbox: Outbox, message_ids: Sequence[str]
) -> list[ConnectorResult[SendResult] | None]:
    """The queue's final results for ``message_ids`` (None: none yet), a few lookups at once."""
    found: list[ConnectorResult[SendResult] | None] = []
    for start in range(0, len(message_ids), RESULT_LOOKUPS):
        chunk = message_ids[start : start + RESULT_LOOKUPS]
        found.extend(await asyncio.gather(*(outbox.result(mid) for mid in chunk)))
    return found


async def _results_by_ticket(
    outbox: Outbox, tickets: Sequence[Ticket]
) -> list[ConnectorResult[SendResult] | None]:
    """:meth:`Outbox.results` for ``tickets``, a few lookups at once."""
    found: list[ConnectorResult[SendResult] | None] = []
    for start in range(0, len(tickets), RESULT_LOOKUPS):
        found.extend(await outbox.results(tickets[start : start + RESULT_LOOKUPS]))
    return found


def _outcome(
    outcome: ConnectorResult[SendResult] | ConnectorError,
) -> tuple[str, str] | ConnectorError:
    if isinstance(outcome, ConnectorError):
        return outcome
    if outcome.error is not None:
        return outcome.error
    sent = outcome.unwrap()
    return sent.provider_message_id, sent.status.value


_EARLIER_QUEUED = error(
    TwilioErrorCodes.SEND_IN_PROGRESS,
    "submitted to the send queue by an earlier run and not finished there; not sent here: "
    "collect its result with send-batch --queue and the same results file",
)

_EARLIER_UNKNOWN = error(
    TwilioErrorCodes.SEND_OUTCOME_UNKNOWN,
    "an earlier run could not tell whether Twilio has this row's message; not sent again: "
    "check it (ratatosk status, Twilio's console), then use --resend-unknown if it never arrived",
)


def _report(out: Output, kind: str, row: Row, problem: ConnectorError) -> None:
    out.emit(
        kind,
        f"line {row.line}: {kind} {problem.code}: {one_line(problem.message)}",
        line=row.line,
        id=row.message_id,
        error=problem.to_dict(),
    )


def _summary(
    out: Output,
    total: int,
    counts: _Counts,
    *,
    not_sent: int,
    results: Path | None,
    interrupted: bool = False,
    queue: bool = False,
) -> None:
    c = counts
    where = f"; results in {results}" if results is not None else " (dry run: nothing sent)"
    valid = total - c.invalid
    in_queue = f", {c.queued} in the send queue" if c.queued else ""
    if results is None:
        text = f"{total} rows: {valid} valid, {c.invalid} invalid, {c.already_sent} already sent"
        text += f", {c.unknown} of unknown outcome{in_queue}, {not_sent} to send{where}"
    elif queue:
        found = f" ({c.collected} found finished in the queue)" if c.collected else ""
        text = (
            f"{total} rows: {c.submitted} submitted now, {c.sent} sent{found}, {c.already_sent} "
            f"already sent, {c.invalid} invalid, {c.failed} failed, {c.unknown} of unknown "
            f"outcome, {c.queued} still in the send queue, {not_sent} not submitted{where}"
        )
    else:
        text = (
            f"{total} rows: {c.sent} sent now, {c.already_sent} already sent, {c.invalid} "
            f"invalid, {c.failed} failed, {c.unknown} of unknown outcome{in_queue}, "
            f"{not_sent} not sent{where}"
        )
    out.emit(
        "summary",
        f"stopped early: {text}" if interrupted else text,
        interrupted=interrupted,
        rows=total,
        invalid=c.invalid,
        already_sent=c.already_sent,
        sent=c.sent,
        failed=c.failed,
        unknown=c.unknown,
        not_sent=not_sent,
        queued=c.queued,
        submitted=c.submitted,
        collected=c.collected,
        results=str(results) if results is not None else None,
    )
