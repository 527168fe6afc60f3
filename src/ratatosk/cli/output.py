"""What the ``ratatosk`` command prints: text lines or JSON lines, never a secret."""

from __future__ import annotations

import enum
import json
import sys
from typing import Any, TextIO

import attrs

from ..domain.content import TextContent
from ..domain.result import ConnectorError, ReceiveResult, StatusUpdate

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class Output:
    """Text or JSON-lines output; everything printed goes through here."""

    def __init__(self, as_json: bool, stream: TextIO | None = None) -> None:
        self.as_json = as_json
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        """The given stream, else ``sys.stdout`` as it is now (so redirections apply)."""
        return self._stream if self._stream is not None else sys.stdout

    def emit(self, kind: str, text: str, **data: Any) -> None:
        """One line (or text block) per event; what came from outside is made inert.

        Text from Twilio or a webhook may hold terminal escape sequences or
        lone surrogates (an escaped ``"\\ud83d"`` in a JSON body): escapes are
        shown as ``\\x1b`` instead of acting on the terminal, and nothing
        printed can raise, so a handler that prints never fails on the data.
        """
        if self.as_json:
            if kind in _TOLD_IN_WORDS and "message" not in data:
                data["message"] = _without_prefix(text, kind)
            payload = {"event": kind, **data}
            line = json.dumps(payload, default=str, ensure_ascii=False).translate(_JSON_ESCAPES)
            if not _encodable(line, self.stream):
                line = json.dumps(payload, default=str)  # ASCII, equally valid JSON
        else:
            line = text.translate(_TEXT_ESCAPES)
            if not _encodable(line, self.stream):
                encoding = self.stream.encoding or "utf-8"
                line = line.encode(encoding, "backslashreplace").decode(encoding)
        print(line, file=self.stream, flush=True)

    def failure(self, error: ConnectorError) -> int:
        self.emit("error", f"error {error.code}: {one_line(error.message)}", error=error.to_dict())
        return EXIT_FAILED


#: Events whose only content is their text: in JSON it is their ``message``, else a
#: script sees ``{"event": "usage"}`` and never learns what was wrong.
_TOLD_IN_WORDS = frozenset({"usage", "warning"})


def _without_prefix(text: str, kind: str) -> str:
    """The text without the ``error: `` (``warning: ``) the event's name already says."""
    for prefix in ("error: ", f"{kind}: "):
        if text.startswith(prefix):
            return text.removeprefix(prefix)
    return text


def one_line(text: str) -> str:
    """``text`` on one line: a newline in Twilio's text must not pass for a line of ours."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _escapes(codes: list[int], form: str) -> dict[int, str]:
    return {code: form.format(code) for code in codes}


_CONTROLS = [*range(0x20), *range(0x7F, 0xA0)]
_SURROGATES = list(range(0xD800, 0xE000))
#: Inside a JSON string: C0 is escaped by json already; C1, DEL and lone surrogates too.
_JSON_ESCAPES = _escapes([*range(0x7F, 0xA0), *_SURROGATES], "\\u{:04x}")
#: In text: every control character but newline and tab, and lone surrogates.
_TEXT_ESCAPES = _escapes([c for c in _CONTROLS if c not in (0x0A, 0x09)], "\\x{:02x}") | (
    _escapes(_SURROGATES, "\\u{:04x}")
)


def _encodable(line: str, stream: TextIO) -> bool:
    try:
        line.encode(stream.encoding or "utf-8")
    except UnicodeEncodeError:
        return False
    except LookupError:  # a stream with an encoding Python does not know
        return line.isascii()
    return True


def status_json(update: StatusUpdate) -> dict[str, Any]:
    return {
        "sid": update.message_id,
        "status": update.status.value,
        "timestamp": update.timestamp.isoformat(),
        "error_code": update.error_code,
        "error_message": update.error_message,
        "data": dict(update.data),
    }


def describe_status(update: StatusUpdate) -> str:
    failure = f" error {update.error_code}" if update.error_code else ""
    return f"status {update.message_id}: {update.status.value}{failure}"


def message_json(received: ReceiveResult) -> list[dict[str, Any]]:
    return [
        {
            "sid": m.id,
            "from": m.sender.address if m.sender else None,
            "to": m.receiver.address if m.receiver else None,
            "content": _content_json(m.content),
            "properties": dict(m.properties),
        }
        for m in received.messages
    ]


def describe_content(content: object) -> str:
    """A message's content on one line for a person: a text quoted, else its kind and fields.

    JSON rather than Python's repr, so a line reads the same as ``--json`` says it.
    """
    if isinstance(content, TextContent):
        return json.dumps(content.text, ensure_ascii=False)
    data = _content_json(content)
    if data is None:
        return "(no content)"
    kind = data.pop("type")
    return f"{kind} {json.dumps(data, ensure_ascii=False, default=str)}"


def _content_json(content: object) -> dict[str, Any] | None:
    """Typed content as plain JSON: its kind, then its fields (parts nested)."""
    if content is None or not attrs.has(type(content)):
        return None
    fields = attrs.asdict(content, recurse=True, value_serializer=_plain)  # type: ignore[arg-type]
    return {"type": type(content).__name__, **fields}


def _plain(_: object, __: object, value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value
