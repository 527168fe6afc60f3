"""A ``send-batch`` file read into messages, and its results file (CLI layer).

Rows come from CSV (a header line, ``var.NAME`` columns for template
variables) or JSON lines (one object per line, a ``variables`` object). Each
row becomes a :class:`Row`: its message, or the coded error that says why it
cannot be sent, decided by the connector's own planning (``plan_send``) so a
bad row is found before anything is sent and costs no request.

The results file is the memory of a batch across runs: one JSON object per
line, appended and flushed as each outcome arrives, so an interrupted run
leaves only complete lines behind and the next run knows what was sent. A
row handed to the send queue gets a ``queued`` line (its ticket) first and
its outcome's line when a worker's result is read back.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Final

import attrs

from ..domain.content import MediaContent, MediaType, TemplateContent
from ..domain.errors import MessagingErrorCodes
from ..domain.message import Message, MessageBuilder
from ..domain.result import ConnectorError
from ..domain.schema import ChannelSchema
from ..twilio.errors import TwilioErrorCodes, error
from ..twilio.outbound import SendConfig, plan_send

#: The fields a row may have (CSV columns, JSON keys); CSV adds ``var.NAME``, JSON ``variables``.
FIELDS: Final = ("id", "to", "from", "text", "media", "caption", "template", "language")
VARIABLE_COLUMN: Final = "var."
#: Outcomes after which Twilio may hold the message: never sent again without being asked.
UNKNOWN_CODES: Final = frozenset(
    {
        TwilioErrorCodes.SEND_OUTCOME_UNKNOWN,
        TwilioErrorCodes.SEND_IN_PROGRESS,
        # The send queue lost track of a queued row: a worker may have sent it.
        TwilioErrorCodes.QUEUED_MESSAGE_UNKNOWN,
    }
)


@attrs.frozen
class Row:
    """One row of the file: a message to send, or why it cannot be sent."""

    line: int
    message_id: str
    message: Message | None = None
    error: ConnectorError | None = None


def read_rows(
    path: Path, file_format: str, schema: ChannelSchema, config: SendConfig
) -> list[Row] | ConnectorError:
    """Every row of ``path``, each planned as the connector would plan it.

    A problem of the whole file (not UTF-8, no ``to`` column, an unknown
    column) is one error; a problem of a row is that row's error, with the
    line it starts on. Code of a file problem: MESSAGE_DESERIALIZATION_FAILED
    (unreadable) or INVALID_MESSAGE (columns).
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return error(
            MessagingErrorCodes.MESSAGE_DESERIALIZATION_FAILED,
            f"{path.name} is not UTF-8 (byte {exc.start})",
            file=str(path),
        )
    if file_format == "auto":
        file_format = _guess_format(path, text)
    records = _json_records(text) if file_format == "jsonl" else _csv_records(text)
    rows: list[Row] = []
    seen: dict[str, int] = {}
    try:
        for line, record in records:
            row = _row(path, line, record, schema, config)
            first = seen.setdefault(row.message_id, line)
            if first != line:
                row = attrs.evolve(
                    row,
                    message=None,
                    error=error(
                        TwilioErrorCodes.MESSAGE_ID_REUSED,
                        f"id {row.message_id!r} is also the id of line {first}",
                        field="id",
                        line=first,
                    ),
                )
            rows.append(row)
    except _FileProblem as problem:
        return problem.error
    return rows


def _guess_format(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    return "jsonl" if text.lstrip().startswith("{") else "csv"


class _FileProblem(Exception):
    def __init__(self, problem: ConnectorError) -> None:
        super().__init__(problem.message)
        self.error = problem


#: What a reader yields per row: its fields and variables, or why it cannot be read.
_Record = tuple[dict[str, object], dict[str, object]] | ConnectorError


def _csv_records(text: str) -> Iterator[tuple[int, _Record]]:
    """Rows of a CSV file with the line each starts on (a quoted field may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    start = 1
    try:
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header = _header(cells)
                continue
            if len(cells) > len(header):
                yield line, _row_error(f"{len(cells)} cells but the header names {len(header)}")
                continue
            fields: dict[str, object] = {}
            variables: dict[str, object] = {}
            for name, cell in zip(header, cells, strict=False):
                if cell == "":
                    continue
                if name.startswith(VARIABLE_COLUMN):
                    variables[name[len(VARIABLE_COLUMN) :]] = cell
                else:
                    fields[name] = cell
            yield line, (fields, variables)
    except csv.Error as exc:
        raise _FileProblem(
            error(
                MessagingErrorCodes.MESSAGE_DESERIALIZATION_FAILED,
                f"CSV line {reader.line_num}: {exc}",
                line=reader.line_num,
            )
        ) from None
    if header is None:
        raise _FileProblem(error(TwilioErrorCodes.INVALID_MESSAGE, "the file has no header line"))


def _header(cells: list[str]) -> list[str]:
    names = [cell.strip() for cell in cells]
    unknown = [n for n in names if n not in FIELDS and not n.startswith(VARIABLE_COLUMN)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    problem = None
    if unknown or repeated:
        problem = "; ".join(
            part
            for part in (
                f"unknown column(s) {', '.join(map(repr, unknown))}" if unknown else "",
                f"repeated column(s) {', '.join(map(repr, repeated))}" if repeated else "",
            )
            if part
        )
        problem += f" (columns: {', '.join(FIELDS)}, var.NAME)"
    elif "to" not in names:
        problem = "the header has no 'to' column"
    elif not {"text", "media", "template"} & set(names):
        problem = "the header has none of the columns 'text', 'media' or 'template'"
    if problem is not None:
        raise _FileProblem(
            error(TwilioErrorCodes.INVALID_MESSAGE, problem, line=1, columns=unknown + repeated)
        )
    return names


def _json_records(text: str) -> Iterator[tuple[int, _Record]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except ValueError as exc:
            yield (
                line,
                error(
                    MessagingErrorCodes.MESSAGE_DESERIALIZATION_FAILED,
                    f"not JSON: {exc}",
                ),
            )
            continue
        if not isinstance(value, dict):
            yield (
                line,
                error(
                    MessagingErrorCodes.MESSAGE_DESERIALIZATION_FAILED,
                    f"a row is a JSON object, not {type(value).__name__}",
                ),
            )
            continue
        variables = value.pop("variables", None) or {}
        unknown = sorted(k for k in value if k not in FIELDS)
        if unknown:
            yield line, _row_error(f"unknown field(s) {', '.join(map(repr, unknown))}", unknown)
        elif not isinstance(variables, dict):
            yield line, _row_error("variables is a JSON object of name: value", ["variables"])
        else:
            yield line, (value, variables)


def _row_error(message: str, fields: list[str] | None = None) -> ConnectorError:
    return error(TwilioErrorCodes.INVALID_MESSAGE, message, fields=fields or [])


def _row(path: Path, line: int, record: _Record, schema: ChannelSchema, config: SendConfig) -> Row:
    default_id = f"{path.name}:{line}"
    if isinstance(record, ConnectorError):
        return Row(line, default_id, error=record)
    fields, variables = record
    wrong = sorted(k for k, v in fields.items() if v is not None and not isinstance(v, str))
    if wrong:
        return Row(
            line, default_id, error=_row_error(f"{', '.join(wrong)} must be a JSON string", wrong)
        )
    given = {k: v.strip() if k != "text" else v for k, v in fields.items() if isinstance(v, str)}
    message_id = given.get("id") or default_id
    message = _message(message_id, given, variables)
    if isinstance(message, ConnectorError):
        return Row(line, message_id, error=message)
    plan = plan_send(schema, config, message)
    if isinstance(plan, ConnectorError):
        return Row(line, message_id, error=plan)
    return Row(line, message_id, message=message)


def _message(
    message_id: str, given: Mapping[str, str], variables: Mapping[str, object]
) -> Message | ConnectorError:
    """The row's message; which kind it is follows from which fields it has."""
    text, media, template = given.get("text"), given.get("media"), given.get("template")
    caption = given.get("caption")
    builder = MessageBuilder().with_id(message_id).to_phone(given.get("to", ""))
    if given.get("from"):
        builder.from_phone(given["from"])
    if template is not None:
        if text is not None or media is not None:
            return _row_error("a row sends a template or text/media, not both", ["template"])
        language = given.get("language")
        builder.with_content(TemplateContent(template, variables, language=language))
    elif variables or given.get("language"):
        return _row_error("variables and language belong to a template row", ["template"])
    elif media is not None:
        if caption is not None and text is not None:
            return _row_error("a media row takes text or caption (the same thing), not both")
        builder.with_content(MediaContent(MediaType.IMAGE, media.rsplit("/", 1)[-1] or None, media))
        caption = caption if caption is not None else text
    elif text is not None:
        builder.with_text(text)
    else:
        return _row_error("the row has no text, media or template", ["text", "media", "template"])
    if caption is not None:  # off a media row plan_send refuses it, as it refuses a send
        builder.with_property("caption", caption)
    return builder.build()


@attrs.frozen
class Earlier:
    """What earlier runs recorded: each message id's SID, last failure code, and doubts.

    A row once of unknown outcome stays unknown until a SID settles it: a
    later failed resend says nothing about whether the first attempt arrived.
    ``queued`` holds the rows submitted to the send queue whose final result
    is not recorded yet (message id -> queue entry id): a worker has them or
    will, so they are waited for, never submitted or sent again.
    """

    sids: Mapping[str, str]
    codes: Mapping[str, str]
    doubtful: frozenset[str]
    queued: Mapping[str, str] = attrs.field(factory=dict)

    def unknown(self, message_id: str) -> bool:
        return message_id not in self.sids and message_id in self.doubtful


def read_results(path: Path) -> Earlier | ConnectorError:
    """An existing results file (or nothing); a torn last line (no newline) is ignored.

    Code: MESSAGE_DESERIALIZATION_FAILED for a complete line that is not a result.
    """
    sids: dict[str, str] = {}
    codes: dict[str, str] = {}
    doubtful: set[str] = set()
    queued: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Earlier({}, {}, frozenset())
    except (OSError, UnicodeDecodeError) as exc:
        return error(
            MessagingErrorCodes.MESSAGE_DESERIALIZATION_FAILED,
            f"cannot read the results file {path.name}: {type(exc).__name__}",
        )
    complete = text[: text.rfind("\n") + 1]
    for number, raw in enumerate(complete.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            message_id = record["id"]
            if not isinstance(message_id, str):
                raise TypeError("id")
        except (ValueError, TypeError, KeyError):
            return error(
                MessagingErrorCodes.MESSAGE_DESERIALIZATION_FAILED,
                f"{path.name} line {number} is not a send-batch result",
                line=number,
            )
        if isinstance(record.get("sid"), str):
            sids.setdefault(message_id, record["sid"])
            queued.pop(message_id, None)
        elif isinstance(record.get("code"), str):
            codes[message_id] = record["code"]
            queued.pop(message_id, None)
            if record["code"] in UNKNOWN_CODES:
                doubtful.add(message_id)
        elif isinstance(record.get("queued"), str) and message_id not in sids:
            queued[message_id] = record["queued"]
    return Earlier(sids, codes, frozenset(doubtful), queued)


class ResultsFile:
    """Appends one complete JSON line per outcome, flushed at once.

    A torn last line (a process killed mid-write) is cut off when the file is
    opened, so every line stays one whole result.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] = _open_for_append(path)

    def sent(self, row: Row, sid: str, status: str) -> None:
        self._write({"line": row.line, "id": row.message_id, "sid": sid, "status": status})

    def queued(self, row: Row, entry_id: str) -> None:
        """The row is in the send queue (its ticket): a later line holds its final result."""
        self._write({"line": row.line, "id": row.message_id, "queued": entry_id})

    def failed(self, row: Row, problem: ConnectorError) -> None:
        self._write(
            {
                "line": row.line,
                "id": row.message_id,
                "code": problem.code,
                "provider_code": problem.provider_code,
                "message": problem.message,
            }
        )

    def _write(self, record: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")  # ASCII: any text can be written
        self._file.flush()

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


def _open_for_append(path: Path) -> IO[str]:
    with path.open("ab+") as raw:
        size = raw.seek(0, os.SEEK_END)
        if size:
            raw.seek(max(0, size - 65536))
            tail = raw.read()
            cut = tail.rfind(b"\n")
            if not tail.endswith(b"\n") and (cut >= 0 or len(tail) == size):
                raw.truncate(size - len(tail) + cut + 1)
    return path.open("a", encoding="utf-8")
