"""What the ``ratatosk`` command prints: text lines or JSON lines, never a secret."""

from __future__ import annotations

import enum
import json
import sys
from typing import Any, TextIO

import attrs

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
        if self.as_json:
            line = json.dumps({"event": kind, **data}, default=str, ensure_ascii=False)
            print(line, file=self.stream, flush=True)
        else:
            print(text, file=self.stream, flush=True)

    def failure(self, error: ConnectorError) -> int:
        self.emit("error", f"error {error.code}: {error.message}", error=error.to_dict())
        return EXIT_FAILED


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


def _content_json(content: object) -> dict[str, Any] | None:
    """Typed content as plain JSON: its kind, then its fields (parts nested)."""
    if content is None or not attrs.has(type(content)):
        return None
    fields = attrs.asdict(content, recurse=True, value_serializer=_plain)  # type: ignore[arg-type]
    return {"type": type(content).__name__, **fields}


def _plain(_: object, __: object, value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value
