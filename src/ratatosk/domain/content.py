"""Message content (domain layer).

Outbound content is text, one media item, a template or a location. Inbound
WhatsApp messages can also carry a button reply or several media items; they
get typed content too instead of untyped string properties, so callers never
have to dig coordinates out of a dict.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from ._frozen import frozen_mapping


class ContentType(enum.Enum):
    """Every content kind the kernel names, including those a channel refuses."""

    PLAIN_TEXT = "PlainText"
    HTML = "Html"
    MULTIPART = "Multipart"
    TEMPLATE = "Template"
    MEDIA = "Media"
    JSON = "Json"
    BINARY = "Binary"
    LOCATION = "Location"
    BUTTON = "Button"
    QUICK_REPLY = "QuickReply"
    CAROUSEL = "Carousel"
    LIST_PICKER = "ListPicker"


class MediaType(enum.Enum):
    """Media kinds WhatsApp distinguishes (``FILE`` for anything else)."""

    IMAGE = "Image"
    AUDIO = "Audio"
    VIDEO = "Video"
    DOCUMENT = "Document"
    STICKER = "Sticker"
    FILE = "File"

    @classmethod
    def from_mime(cls, mime: str) -> MediaType:
        """Best guess from a MIME type such as ``image/jpeg``; WEBP images are stickers."""
        major, _, minor = mime.lower().partition("/")
        if major == "image":
            return cls.STICKER if minor == "webp" else cls.IMAGE
        if major == "audio":
            return cls.AUDIO
        if major == "video":
            return cls.VIDEO
        if major in {"application", "text"}:
            return cls.DOCUMENT
        return cls.FILE


def _str(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a str, not {type(value).__name__}")


@attrs.frozen
class TextContent:
    """Plain text; becomes Twilio's ``Body``."""

    text: str = attrs.field(validator=_str)

    @property
    def content_type(self) -> ContentType:
        return ContentType.PLAIN_TEXT


@attrs.frozen
class MediaContent:
    """One media item at a public URL; ``content_type_hint`` is the MIME type when known."""

    media_type: MediaType = attrs.field(validator=attrs.validators.instance_of(MediaType))
    file_name: str | None = attrs.field(default=None, validator=attrs.validators.optional(_str))
    url: str = attrs.field(default="", validator=_str)
    mime_type: str | None = attrs.field(default=None, kw_only=True)

    @property
    def content_type(self) -> ContentType:
        return ContentType.MEDIA


def _freeze_parameters(value: Mapping[str, object] | None) -> Mapping[str, object]:
    if value is not None and not isinstance(value, Mapping):
        raise TypeError("template parameters must be a mapping")
    return frozen_mapping(value)


@attrs.frozen
class TemplateContent:
    """An approved template, named by Content SID (``HX...``) or by friendly name.

    Parameter values are turned into strings when encoded; ``None`` values are
    refused at send time rather than silently dropped.
    """

    template_id: str = attrs.field(validator=_str)
    # Left out of the hash (a read-only mapping is unhashable) but still compared by ==.
    parameters: Mapping[str, object] = attrs.field(
        factory=dict, converter=_freeze_parameters, hash=False
    )
    language: str | None = attrs.field(default=None, kw_only=True)

    @property
    def content_type(self) -> ContentType:
        return ContentType.TEMPLATE


@attrs.frozen(kw_only=True)
class LocationContent:
    """A shared location, received from a customer or sent to one (WhatsApp)."""

    latitude: float
    longitude: float
    address: str | None = None
    label: str | None = None

    @property
    def content_type(self) -> ContentType:
        return ContentType.LOCATION


@attrs.frozen(kw_only=True)
class ButtonReplyContent:
    """A tap on a quick-reply or interactive button (inbound)."""

    text: str
    payload: str | None = None

    @property
    def content_type(self) -> ContentType:
        return ContentType.BUTTON


@attrs.frozen(kw_only=True)
class MultipartContent:
    """Several parts in one message, e.g. an inbound message with two images."""

    parts: tuple[Content, ...]
    text: str | None = None

    @property
    def content_type(self) -> ContentType:
        return ContentType.MULTIPART


Content = (
    TextContent
    | MediaContent
    | TemplateContent
    | LocationContent
    | ButtonReplyContent
    | MultipartContent
)
CONTENT_CLASSES = (
    TextContent,
    MediaContent,
    TemplateContent,
    LocationContent,
    ButtonReplyContent,
    MultipartContent,
)
