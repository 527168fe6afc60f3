"""A ``Message`` and its send result as plain JSON-able data, for the outbound queue.

The queue (``ports.OutboundQueue``) keeps a message as text in a shared
store until a worker on another machine sends it, so the worker must rebuild
the very ``Message`` that was submitted: same id (the send ledger's key),
same content, same properties, or a redelivery would look like another
message. Scalars travel as themselves; anything else (lists, tuples,
mappings, dates, a ``FallbackTemplate``, a non-finite float) as a tagged
object ``{"$": kind, "v": ...}``, so decoding gives back the same types,
not their nearest JSON cousin (a datetime keeps its wall time and UTC
offset; a named zone comes back as that fixed offset). A value with no such form is refused when
submitted (MESSAGE_SERIALIZATION_FAILED), never mangled on the way.

A final result travels as ``{"message_id", "sid", "status", "timestamp",
"data"}`` when Twilio accepted the message, or ``{"message_id", "error"}``
with the coded error's ``to_dict()``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any, Final

from ...domain.content import (
    ButtonReplyContent,
    Content,
    LocationContent,
    MediaContent,
    MediaType,
    MultipartContent,
    TemplateContent,
    TextContent,
)
from ...domain.endpoint import Endpoint, EndpointType
from ...domain.errors import MessagingErrorCodes
from ...domain.message import Message
from ...domain.result import ConnectorError, ConnectorResult, SendResult
from ...domain.status import MessageStatus
from ..errors import error
from .times import datetime_from_iso

#: The format's version, written into every payload; a reader refuses others.
VERSION: Final = 1
_TAG: Final = "$"


class _Unencodable(ValueError):
    pass


def message_to_data(message: Message) -> dict[str, Any] | ConnectorError:
    """``message`` as JSON-able data, or MESSAGE_SERIALIZATION_FAILED naming what has no form."""
    if not isinstance(message, Message):
        raise TypeError(f"a queue takes a Message, not {type(message).__name__}")
    try:
        return {
            "v": VERSION,
            "id": message.id,
            "from": _endpoint(message.sender),
            "to": _endpoint(message.receiver),
            "content": _content(message.content) if message.content is not None else None,
            "properties": {_key(name): _value(value) for name, value in message.properties.items()},
            "timestamp": _time(message.timestamp) if message.timestamp is not None else None,
        }
    except _Unencodable as exc:
        return error(
            MessagingErrorCodes.MESSAGE_SERIALIZATION_FAILED,
            f"message {message.id!r} cannot be queued: {exc}",
            message_id=message.id,
        )


def message_from_data(data: object) -> Message | ConnectorError:
    """The ``Message`` that :func:`message_to_data` gave ``data`` for, or
    MESSAGE_DESERIALIZATION_FAILED (not this format, or damaged)."""
    try:
        if not isinstance(data, Mapping):
            raise _Unencodable(f"a queued message is a JSON object, not {type(data).__name__}")
        if data.get("v") != VERSION:
            raise _Unencodable(f"format version {data.get('v')!r}; this reader knows {VERSION}")
        properties = data.get("properties") or {}
        if not isinstance(properties, Mapping):
            raise _Unencodable("properties must be an object")
        content = data.get("content")
        timestamp = data.get("timestamp")
        return Message(
            id=_text(data.get("id"), "id"),
            sender=_endpoint_from(data.get("from")),
            receiver=_endpoint_from(data.get("to")),
            content=_content_from(content) if content is not None else None,
            properties={_text(k, "property name"): _value_from(v) for k, v in properties.items()},
            timestamp=_time_from(timestamp, "timestamp") if timestamp is not None else None,
        )
    except (_Unencodable, KeyError, TypeError, ValueError) as exc:
        return error(
            MessagingErrorCodes.MESSAGE_DESERIALIZATION_FAILED,
            f"a queued message could not be read: {exc}",
        )


def result_to_data(message_id: str, result: ConnectorResult[SendResult]) -> dict[str, Any]:
    """A send's final result as JSON-able data (the coded error's ``to_dict()`` on failure)."""
    if result.error is not None:
        return {"message_id": message_id, "error": result.error.to_dict()}
    sent = result.value
    assert sent is not None
    return {
        "message_id": message_id,
        "sid": sent.provider_message_id,
        "status": sent.status.value,
        "timestamp": sent.timestamp.isoformat(),
        "data": _plain(dict(sent.data)),
    }


def result_from_data(data: Mapping[str, Any]) -> ConnectorResult[SendResult]:
    """The result :func:`result_to_data` stored; MESSAGE_DESERIALIZATION_FAILED if damaged."""
    try:
        failure = data.get("error")
        if failure is not None:
            return ConnectorResult.failure(
                ConnectorError(
                    code=_text(failure["code"], "code"),
                    message=_text(failure["message"], "message"),
                    domain=_text(failure["domain"], "domain"),
                    provider_code=failure.get("provider_code"),
                    details=failure.get("details") or {},
                )
            )
        return ConnectorResult.success(
            SendResult(
                message_id=_text(data["message_id"], "message_id"),
                provider_message_id=_text(data["sid"], "sid"),
                status=MessageStatus(data["status"]),
                timestamp=_time_from(data["timestamp"], "timestamp"),
                data=data.get("data") or {},
            )
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return ConnectorResult.failure(
            error(
                MessagingErrorCodes.MESSAGE_DESERIALIZATION_FAILED,
                f"a stored send result could not be read: {type(exc).__name__}: {exc}",
            )
        )


# --- encoding -----------------------------------------------------------------------


def _key(name: object) -> str:
    if not isinstance(name, str):
        raise _Unencodable(f"a mapping key must be text, not {type(name).__name__}")
    return name


def _endpoint(endpoint: Endpoint | None) -> dict[str, str] | None:
    if endpoint is None:
        return None
    return {"type": endpoint.type.value, "address": endpoint.address}


def _time(value: dt.datetime) -> str:
    return value.isoformat()


def _content(content: Content) -> dict[str, Any]:
    if isinstance(content, TextContent):
        return {"kind": "text", "text": content.text}
    if isinstance(content, MediaContent):
        return {
            "kind": "media",
            "media_type": content.media_type.value,
            "file_name": content.file_name,
            "url": content.url,
            "mime_type": content.mime_type,
        }
    if isinstance(content, TemplateContent):
        return {
            "kind": "template",
            "template_id": content.template_id,
            "parameters": {_key(k): _value(v) for k, v in content.parameters.items()},
            "language": content.language,
        }
    if isinstance(content, LocationContent):
        return {
            "kind": "location",
            "latitude": _value(content.latitude),
            "longitude": _value(content.longitude),
            "address": _value(content.address),
            "label": _value(content.label),
        }
    if isinstance(content, ButtonReplyContent):
        return {"kind": "button", "text": content.text, "payload": content.payload}
    if isinstance(content, MultipartContent):
        return {
            "kind": "multipart",
            "parts": [_content(part) for part in content.parts],
            "text": content.text,
        }
    raise _Unencodable(f"unknown content {type(content).__name__}")


def _value(value: object) -> Any:
    """A property or template value: a JSON scalar as is, anything else tagged."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {_TAG: "float", "v": repr(value)}
    if isinstance(value, list):
        return {_TAG: "list", "v": [_value(v) for v in value]}
    if isinstance(value, tuple):
        return {_TAG: "tuple", "v": [_value(v) for v in value]}
    if isinstance(value, Mapping):
        return {_TAG: "map", "v": {_key(k): _value(v) for k, v in value.items()}}
    if isinstance(value, dt.datetime):
        return {_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {_TAG: "date", "v": value.isoformat()}
    if isinstance(value, TextContent | MediaContent | TemplateContent | LocationContent):
        return {_TAG: "content", "v": _content(value)}
    raise _Unencodable(f"a {type(value).__name__} value has no JSON form")


def _plain(value: Any) -> Any:
    """Result data as JSON: mappings and sequences opened up, anything else as text."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return str(value)


# --- decoding -----------------------------------------------------------------------


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _Unencodable(f"{what} must be text, not {type(value).__name__}")
    return value


def _optional_text(value: object, what: str) -> str | None:
    return None if value is None else _text(value, what)


def _endpoint_from(data: object) -> Endpoint | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise _Unencodable("an endpoint must be an object")
    return Endpoint(EndpointType(data["type"]), _text(data["address"], "address"))


def _time_from(value: object, what: str) -> dt.datetime:
    return datetime_from_iso(_text(value, what))


def _content_from(data: object) -> Content:
    if not isinstance(data, Mapping):
        raise _Unencodable("content must be an object")
    kind = data.get("kind")
    if kind == "text":
        return TextContent(_text(data["text"], "text"))
    if kind == "media":
        return MediaContent(
            MediaType(data["media_type"]),
            _optional_text(data.get("file_name"), "file_name"),
            _text(data["url"], "url"),
            mime_type=_optional_text(data.get("mime_type"), "mime_type"),
        )
    if kind == "template":
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, Mapping):
            raise _Unencodable("template parameters must be an object")
        return TemplateContent(
            _text(data["template_id"], "template_id"),
            {_text(k, "parameter name"): _value_from(v) for k, v in parameters.items()},
            language=_optional_text(data.get("language"), "language"),
        )
    if kind == "location":
        return LocationContent(
            latitude=_value_from(data["latitude"]),
            longitude=_value_from(data["longitude"]),
            address=_value_from(data.get("address")),
            label=_value_from(data.get("label")),
        )
    if kind == "button":
        return ButtonReplyContent(
            text=_text(data["text"], "text"),
            payload=_optional_text(data.get("payload"), "payload"),
        )
    if kind == "multipart":
        parts = data.get("parts")
        if not isinstance(parts, list):
            raise _Unencodable("multipart parts must be a list")
        return MultipartContent(
            parts=tuple(_content_from(p) for p in parts),
            text=_optional_text(data.get("text"), "text"),
        )
    raise _Unencodable(f"unknown content kind {kind!r}")


def _value_from(value: object) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        raise _Unencodable("a bare list is not this format (lists are tagged)")
    if not isinstance(value, Mapping) or set(value) != {_TAG, "v"}:
        raise _Unencodable("a value must be a JSON scalar or a tagged object")
    kind, inner = value[_TAG], value["v"]
    if kind == "float":
        number = float(_text(inner, "float"))
        if math.isfinite(number):
            raise _Unencodable("a tagged float is not finite")
        return number
    if kind in {"list", "tuple"}:
        if not isinstance(inner, list):
            raise _Unencodable(f"a {kind} holds a list")
        items = [_value_from(v) for v in inner]
        return items if kind == "list" else tuple(items)
    if kind == "map":
        if not isinstance(inner, Mapping):
            raise _Unencodable("a map holds an object")
        return {_text(k, "key"): _value_from(v) for k, v in inner.items()}
    if kind == "datetime":
        return _time_from(inner, "datetime")
    if kind == "date":
        return dt.date.fromisoformat(_text(inner, "date"))
    if kind == "content":
        return _content_from(inner)
    raise _Unencodable(f"unknown value kind {kind!r}")


__all__ = [
    "VERSION",
    "message_from_data",
    "message_to_data",
    "result_from_data",
    "result_to_data",
]
