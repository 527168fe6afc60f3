"""Where a webhook's payload came from (domain layer).

A ``MessageSource`` is the raw body plus its encoding, handed to
``receive_messages`` / ``receive_message_status``. Keeping the raw body (not a
parsed dict) lets the connector verify a ``bodySHA256`` signature and report
exactly what it could not parse.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

import attrs

from ._frozen import frozen_mapping


class SourceFormat(enum.Enum):
    URL_POST = "application/x-www-form-urlencoded"
    JSON = "application/json"
    OTHER = "other"


def _text(value: str | bytes) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    raise TypeError(f"a webhook body must be str or bytes, not {type(value).__name__}")


def _frozen_form(form: Mapping[str, Sequence[str]] | None) -> Mapping[str, tuple[str, ...]] | None:
    if form is None:
        return None
    return frozen_mapping({name: tuple(values) for name, values in form.items()})


@attrs.frozen
class MessageSource:
    """A webhook body and how it is encoded.

    ``form`` is the body already split into fields, when whoever checked its
    signature did that (the webhook server): decoding then reads exactly the
    fields that were verified instead of parsing the body a second time. It
    must be the parse of ``body``; None (the default) means "parse the body".
    """

    format: SourceFormat
    body: str = attrs.field(converter=_text)
    content_type: str | None = None
    form: Mapping[str, tuple[str, ...]] | None = attrs.field(
        default=None, converter=_frozen_form, eq=False, repr=False, kw_only=True
    )

    @classmethod
    def url_post(cls, body: str | bytes) -> MessageSource:
        """A form-encoded POST body, as Twilio sends webhooks."""
        return cls(SourceFormat.URL_POST, body, SourceFormat.URL_POST.value)

    @classmethod
    def json(cls, body: str | bytes) -> MessageSource:
        """A JSON body: one message object, or ``{"Messages": [...]}``."""
        return cls(SourceFormat.JSON, body, SourceFormat.JSON.value)

    @classmethod
    def from_content_type(cls, content_type: str | None, body: str | bytes) -> MessageSource:
        """Pick the format from an HTTP ``Content-Type`` header."""
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media == SourceFormat.URL_POST.value:
            return cls.url_post(body)
        if media == SourceFormat.JSON.value or media.endswith("+json"):
            return cls.json(body)
        return cls(SourceFormat.OTHER, body, content_type)
