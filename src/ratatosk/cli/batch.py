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
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from ..bootstrap import build_connector, settings_from_env
from ..domain.errors import MessagingErrorCodes
from ..domain.result import ConnectorError
from ..twilio.connector import TwilioWhatsAppConnector
from ..twilio.errors import TwilioErrorCodes, error
from ..twilio.outbound import SendConfig
from ..twilio.resilience import SendPolicy
from ..twilio.schema import TwilioChannelSchemas
from .batch_file import UNKNOWN_CODES, ResultsFile, Row, read_results, read_rows
from .output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Output, one_line
from .progress import MODES, Progress, progress_for

EXIT_INTERRUPTED = 130


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
    batch.add_argument("--concurrency", type=_positive(int), default=10, metavar="N")
    batch.add_argument(
        "--rate",
        type=_positive(float),
        metavar="PER_SECOND",
        help=f"sends per second per sender (default {SendPolicy().rate_per_sender:g}, "
        "Twilio's WhatsApp throughput)",
    )
    batch.add_argument(
        "--resend-unknown",
        action="store_true",
        help="also send rows whose earlier outcome is unknown (Twilio may already have them)",
    )
    batch.add_argument("--progress", choices=MODES, default="auto", help="default: bar on a tty")


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


async def _send_batch(args: argparse.Namespace, out: Output) -> int:
    path: Path = args.file
    results_path: Path = args.results or path.with_name(path.name + ".results.jsonl")
    if not path.is_file():
        out.emit("usage", f"error: {path} is not a readable file")
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
    todo: list[Row] = []
    for row in rows:
        if row.error is not None:
            counts.invalid += 1
            _report(out, "invalid", row, row.error)
        elif row.message_id in earlier.sids:
            counts.already_sent += 1
        elif earlier.unknown(row.message_id) and not args.resend_unknown:
            counts.unknown += 1
            _report(out, "unknown", row, _EARLIER_UNKNOWN)
        else:
            todo.append(row)
    if args.dry_run:
        _summary(out, len(rows), counts, not_sent=len(todo), results=None)
        return EXIT_OK if not counts.invalid else EXIT_FAILED
    progress = progress_for(args.progress, len(todo), sys.stderr)
    if isinstance(progress, str):
        out.emit("usage", f"error: {progress}")
        return EXIT_USAGE
    connector = build_connector(settings, send_policy=_policy(args))
    ready = await connector.initialize()
    if ready.error is not None:
        await connector.shutdown()
        return out.failure(ready.error)
    results = ResultsFile(results_path)
    interrupted = False
    try:
        for row in rows:  # recorded once: a rerun adds nothing for a row already refused so
            if row.error is not None and earlier.codes.get(row.message_id) != row.error.code:
                results.failed(row, row.error)
        if todo:
            interrupted = await _send_rows(
                connector,
                todo,
                concurrency=args.concurrency,
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
    return EXIT_OK if not (counts.invalid or counts.failed or counts.unknown) else EXIT_FAILED


def _policy(args: argparse.Namespace) -> SendPolicy:
    """The default policy, at ``--rate``, with room in flight for ``--concurrency`` sends."""
    default = SendPolicy()
    return attrs.evolve(
        default,
        rate_per_sender=args.rate or default.rate_per_sender,
        max_in_flight=max(default.max_in_flight, args.concurrency),
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
    results: ResultsFile,
    counts: _Counts,
) -> None:
    counts.done += 1
    if not isinstance(outcome, ConnectorError):
        counts.sent += 1
        results.sent(row, *outcome)
        return
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

    def __init__(self, stopping: asyncio.Event, workers: list[asyncio.Task[None]]) -> None:
        self._stopping = stopping
        self._workers = workers
        self._loop = asyncio.get_running_loop()
        self._installed: list[signal.Signals] = []

    def _on_signal(self) -> None:
        if not self._stopping.is_set():
            self._stopping.set()
            print(
                "stopping: letting the sends in flight finish (again to abandon them)",
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
) -> None:
    c = counts
    where = f"; results in {results}" if results is not None else " (dry run: nothing sent)"
    valid = total - c.invalid
    if results is None:
        text = f"{total} rows: {valid} valid, {c.invalid} invalid, {c.already_sent} already sent"
        text += f", {c.unknown} of unknown outcome, {not_sent} to send{where}"
    else:
        text = (
            f"{total} rows: {c.sent} sent now, {c.already_sent} already sent, {c.invalid} "
            f"invalid, {c.failed} failed, {c.unknown} of unknown outcome, {not_sent} not sent"
            f"{where}"
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
        results=str(results) if results is not None else None,
    )
