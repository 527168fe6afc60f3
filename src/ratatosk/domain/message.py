"""Messages and the fluent builder (domain layer).

A ``Message`` is immutable; the builder is the one mutable convenience, and
its setters only check types (programming errors raise). Whether a message is
*acceptable* to a channel is a separate question answered by the schema and
the connector, with coded errors, so a builder never throws on user data.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs

from ._frozen import frozen_mapping
from .content import CONTENT_CLASSES, Content, MediaContent, TemplateContent, TextContent
from .endpoint import Endpoint

_T = TypeVar("_T")


def _new_id() -> str:
    """``uuid.uuid4().hex`` without building a UUID object: the same bits, the same text."""
    value = int.from_bytes(os.urandom(16), "big")
    value = (value & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
    value = (value & ~(0xF000 << 64)) | (4 << 76)  # version 4
    return f"{value:032x}"


@attrs.frozen(kw_only=True)
class Message:
    """One message, outbound or inbound.

    For inbound messages ``id`` is Twilio's message SID and ``properties``
    holds what Twilio told us about the sender (ProfileName, WaId ...).
    """

    id: str = attrs.field(factory=_new_id)
    sender: Endpoint | None = None
    receiver: Endpoint | None = None
    content: Content | None = None
    # Left out of the hash (a read-only mapping is unhashable) but still compared by ==.
    properties: Mapping[str, Any] = attrs.field(factory=dict, converter=frozen_mapping, hash=False)
    timestamp: dt.datetime | None = None


class MessageBuilder:
    """Fluent construction of a :class:`Message`, mirroring the documentation's examples."""

    __slots__ = ("_content", "_id", "_properties", "_receiver", "_sender", "_timestamp")

    def __init__(self) -> None:
        self._id: str | None = None
        self._sender: Endpoint | None = None
        self._receiver: Endpoint | None = None
        self._content: Content | None = None
        self._properties: dict[str, Any] = {}
        self._timestamp: dt.datetime | None = None

    def with_id(self, message_id: str | None = None) -> MessageBuilder:
        """Our own id for the message; a random one when omitted."""
        if message_id is not None and not isinstance(message_id, str):
            raise TypeError("message id must be a str")
        self._id = message_id or _new_id()
        return self

    def from_phone(self, address: str) -> MessageBuilder:
        self._sender = Endpoint.phone(_require_str(address, "sender address"))
        return self

    def to_phone(self, address: str) -> MessageBuilder:
        self._receiver = Endpoint.phone(_require_str(address, "recipient address"))
        return self

    def from_endpoint(self, endpoint: Endpoint) -> MessageBuilder:
        self._sender = _require(endpoint, Endpoint, "sender")
        return self

    def to_endpoint(self, endpoint: Endpoint) -> MessageBuilder:
        self._receiver = _require(endpoint, Endpoint, "receiver")
        return self

    def with_text(self, text: str) -> MessageBuilder:
        self._content = TextContent(_require_str(text, "text"))
        return self

    def with_content(self, content: Content) -> MessageBuilder:
        if not isinstance(content, CONTENT_CLASSES):
            raise TypeError(f"unknown content type: {type(content).__name__}")
        self._content = content
        return self

    def with_media(self, content: MediaContent) -> MessageBuilder:
        return self.with_content(_require(content, MediaContent, "media"))

    def with_template(self, content: TemplateContent) -> MessageBuilder:
        return self.with_content(_require(content, TemplateContent, "template"))

    def with_property(self, name: str, value: Any) -> MessageBuilder:
        self._properties[_require_str(name, "property name")] = value
        return self

    def with_timestamp(self, timestamp: dt.datetime) -> MessageBuilder:
        self._timestamp = _require(timestamp, dt.datetime, "timestamp")
        return self

    def build(self) -> Message:
        """An immutable message; the builder can be reused afterwards."""
        return Message(
            id=self._id or _new_id(),
            sender=self._sender,
            receiver=self._receiver,
            content=self._content,
            properties=self._properties,
            timestamp=self._timestamp,
        )


def _require_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    return value


def _require(value: object, kind: type[_T], what: str) -> _T:
    if not isinstance(value, kind):
        raise TypeError(f"{what} must be a {kind.__name__}, not {type(value).__name__}")
    return value
