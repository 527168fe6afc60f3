"""Webhook decoding (connector layer, pure): inbound messages and status callbacks -> kernel types.

Every decoder is total over its input: a body that cannot be read, or lacks
what Twilio always sends, or repeats a field Twilio sends once, gives one
coded ``ConnectorError`` in the result, never an exception.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from typing import Any, Final

from ...domain.content import (
    ButtonReplyContent,
    Content,
    LocationContent,
    MediaContent,
    MediaType,
    MultipartContent,
    TextContent,
)
from ...domain.endpoint import Endpoint
from ...domain.errors import MessagingErrorCodes
from ...domain.message import Message
from ...domain.result import ConnectorError, ConnectorResult, ReceiveResult, StatusUpdate
from ...domain.source import MessageSource, SourceFormat
from ..errors import TwilioErrorCodes, error
from ..provider_errors import annotate_status
from .form import Form, parse_form
from .rest import map_status

#: Fields Twilio sends at most once per message. Twilio signs keys and values
#: simply joined, so a signed body can be split again into other fields (a text
#: that spells ``...From...`` becomes a second From); a repeat of one of these
#: is such a re-split, never Twilio, and is refused.
SINGLE_VALUE_FIELDS: Final = frozenset(
    {
        "AccountSid", "Address", "ApiVersion", "Body", "ButtonPayload", "ButtonText",
        "ChannelInstallSid", "ChannelPrefix", "ChannelStatusMessage", "ChannelToAddress",
        "ErrorCode", "ErrorMessage", "EventType", "Forwarded", "From", "FrequentlyForwarded",
        "Label", "Latitude", "Longitude", "MessagePrice", "MessagePriceUnit", "MessageSid",
        "MessageStatus", "MessageType", "MessagingServiceSid", "NumMedia", "NumSegments",
        "OriginalRepliedMessageSender", "OriginalRepliedMessageSid", "ProfileName",
        "RawDlrDoneDate", "ReferralBody", "ReferralCtwaClid", "ReferralHeadline",
        "ReferralMediaContentType", "ReferralMediaId", "ReferralMediaUrl", "ReferralNumMedia",
        "ReferralSourceId", "ReferralSourceType", "ReferralSourceUrl", "SmsMessageSid", "SmsSid",
        "SmsStatus", "StructuredMessage", "To", "WaId",
    }
)  # fmt: skip
_MEDIA_KEY: Final = re.compile(r"Media(Url|ContentType)\d+")


def _first(form: Form, key: str) -> str | None:
    values = form.get(key)
    if not values:
        return None
    value = values[0]
    return value if isinstance(value, str) else None


def _to_float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _fields(source: MessageSource, unreadable: str) -> list[Form] | ConnectorError:
    """One form per message in the body; JSON may hold an object or a ``Messages`` list.

    A form body already split by whoever checked its signature
    (``source.form``) is used as it is, so what is decoded is what was
    verified. A body that cannot be read at all gets the ``unreadable`` code
    (the RECEIVE_*_FAILED of the operation); one that reads but lacks what
    Twilio always sends, or repeats a field, gets INVALID_WEBHOOK_DATA.
    """
    if source.format is SourceFormat.URL_POST:
        if source.form is not None:
            return _once_each([source.form])
        try:
            return _once_each([parse_form(source.body)])
        except ValueError as exc:
            return error(unreadable, f"unreadable form body: {exc}")
    if source.format is SourceFormat.JSON:
        try:
            data = json.loads(source.body)
            items = data.get("Messages") if isinstance(data, dict) and "Messages" in data else data
            if isinstance(items, dict):
                items = [items]
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                return _webhook_error("JSON body must be an object or a Messages list of objects")
            forms: list[Form] = [{str(k): _json_values(v) for k, v in i.items()} for i in items]
            return _once_each(forms)
        except (ValueError, RecursionError) as exc:  # nesting too deep to load or to re-encode
            return error(unreadable, f"unreadable JSON body: {exc}")
    return error(
        MessagingErrorCodes.UNSUPPORTED_CONTENT_TYPE,
        f"webhook content type {source.content_type!r} is not form or JSON",
    )


def _once_each(forms: list[Form]) -> list[Form] | ConnectorError:
    """The forms, unless one repeats a field Twilio sends once (see SINGLE_VALUE_FIELDS)."""
    for form in forms:
        repeated = sorted(
            [
                key
                for key, values in form.items()
                if len(values) > 1 and (key in SINGLE_VALUE_FIELDS or _MEDIA_KEY.fullmatch(key))
            ]
        )
        if repeated:
            return _webhook_error(
                f"webhook repeats {', '.join(repeated)}, which Twilio sends once", repeated=repeated
            )
    return forms


def _json_values(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [v if isinstance(v, str) else json.dumps(v) for v in value]
    if isinstance(value, str):
        return [value]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    return [json.dumps(value)]


def _webhook_error(message: str, **details: Any) -> ConnectorError:
    return error(MessagingErrorCodes.INVALID_WEBHOOK_DATA, message, **details)


_INBOUND_CONTENT_KEYS: Final = frozenset(
    {"Body", "NumMedia", "Latitude", "Longitude", "Address", "Label"}
)


def decode_inbound(form: Form) -> Message | ConnectorError:
    """One inbound WhatsApp message from its webhook fields."""
    sid, sender, receiver = _first(form, "MessageSid"), _first(form, "From"), _first(form, "To")
    missing = [k for k, v in (("MessageSid", sid), ("From", sender), ("To", receiver)) if not v]
    if missing:
        return _webhook_error(f"inbound message lacks {', '.join(missing)}", missing=missing)
    assert sid is not None
    assert sender is not None
    assert receiver is not None
    properties: dict[str, Any] = {
        key: values[0] if len(values) == 1 else tuple(values)
        for key, values in form.items()
        if values
        and key not in _INBOUND_CONTENT_KEYS
        and not (key.startswith("Media") and _MEDIA_KEY.fullmatch(key))
    }
    return Message(
        id=sid,
        sender=Endpoint.phone(sender),
        receiver=Endpoint.phone(receiver),
        content=_inbound_content(form),
        properties=properties,
    )


def _inbound_content(form: Form) -> Content:
    body = _first(form, "Body") or ""
    latitude, longitude = _to_float(_first(form, "Latitude")), _to_float(_first(form, "Longitude"))
    if latitude is not None and longitude is not None:
        return LocationContent(
            latitude=latitude,
            longitude=longitude,
            address=_first(form, "Address"),
            label=_first(form, "Label"),
        )
    media = _inbound_media(form)
    if len(media) == 1 and not body:
        return media[0]
    if media:
        return MultipartContent(parts=tuple(media), text=body or None)
    button_payload = _first(form, "ButtonPayload")
    button_text = _first(form, "ButtonText")
    if button_payload is not None or button_text is not None:
        return ButtonReplyContent(text=button_text or body, payload=button_payload)
    return TextContent(body)


def _inbound_media(form: Form) -> list[MediaContent]:
    declared = _first(form, "NumMedia")
    # Twilio sends at most 10; a longer number is noise, not a reason to loop or overflow.
    count = int(declared) if declared and declared.isdecimal() and len(declared) <= 2 else 0
    # Trust the fields that are present, not only the count: never drop a URL.
    index, items = 0, []
    while index < max(count, 0) + 10:
        url = _first(form, f"MediaUrl{index}")
        if url is None and index >= count:
            break
        if url:
            mime = _first(form, f"MediaContentType{index}") or ""
            items.append(MediaContent(MediaType.from_mime(mime), None, url, mime_type=mime or None))
        index += 1
    return items


def decode_receive(source: MessageSource) -> ConnectorResult[ReceiveResult]:
    """Every inbound message of one webhook body, or one coded error."""
    forms = _fields(source, TwilioErrorCodes.RECEIVE_MESSAGE_FAILED)
    if isinstance(forms, ConnectorError):
        return ConnectorResult.failure(forms)
    messages: list[Message] = []
    for form in forms:
        decoded = decode_inbound(form)
        if isinstance(decoded, ConnectorError):
            return ConnectorResult.failure(decoded)
        messages.append(decoded)
    return ConnectorResult.success(ReceiveResult(messages=tuple(messages)))


_STATUS_EXTRAS: Final = (
    "To",
    "From",
    "AccountSid",
    "MessagingServiceSid",
    "ChannelPrefix",
    "ChannelInstallSid",
    "ChannelStatusMessage",
    "ChannelToAddress",
    "EventType",
    "MessagePrice",
    "MessagePriceUnit",
    "ProfileName",
    "ButtonText",
    "ButtonPayload",
    "ApiVersion",
    "SmsStatus",
    "RawDlrDoneDate",
    "StructuredMessage",
)


def decode_status_callback(form: Form, received_at: dt.datetime) -> StatusUpdate | ConnectorError:
    """A status callback; refuses one without MessageSid or MessageStatus."""
    sid = _first(form, "MessageSid") or _first(form, "SmsSid")
    raw_status = _first(form, "MessageStatus") or _first(form, "SmsStatus")
    missing = [k for k, v in (("MessageSid", sid), ("MessageStatus", raw_status)) if not v]
    if missing:
        return _webhook_error(f"status callback lacks {', '.join(missing)}", missing=missing)
    assert sid is not None
    assert raw_status is not None
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    error_code_text = (_first(form, "ErrorCode") or "").strip()
    error_code = int(error_code_text) if re.fullmatch(r"[0-9]{1,18}", error_code_text) else None
    data: dict[str, Any] = {"twilio_status": raw_status}
    for key in _STATUS_EXTRAS:
        value = _first(form, key)
        if value is not None:
            data[key] = value
    update = StatusUpdate(
        message_id=sid,
        status=map_status(raw_status),
        timestamp=received_at,
        error_code=error_code,
        error_message=_first(form, "ErrorMessage") or _first(form, "ChannelStatusMessage"),
        data=data,
    )
    # A known ErrorCode brings its retry class and remediation (provider_errors).
    return annotate_status(update)


def decode_status(source: MessageSource, received_at: dt.datetime) -> ConnectorResult[StatusUpdate]:
    """The status update of one callback body, or one coded error."""
    forms = _fields(source, TwilioErrorCodes.RECEIVE_STATUS_FAILED)
    if isinstance(forms, ConnectorError):
        return ConnectorResult.failure(forms)
    if len(forms) != 1:
        return ConnectorResult.failure(_webhook_error("a status callback carries one status"))
    decoded = decode_status_callback(forms[0], received_at)
    if isinstance(decoded, ConnectorError):
        return ConnectorResult.failure(decoded)
    return ConnectorResult.success(decoded)


__all__ = [
    "SINGLE_VALUE_FIELDS",
    "decode_inbound",
    "decode_receive",
    "decode_status",
    "decode_status_callback",
]
