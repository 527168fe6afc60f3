"""The pure Twilio wire codec (connector layer): JSON and forms in, typed values out.

No I/O: adapters move bytes, this module gives them meaning. Every decoder is
total over its input type: malformed data yields a :class:`WireError` (or a
coded ``ConnectorError`` for webhooks), never an unexpected exception.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import functools
import json
import math
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import parse_qs, quote_plus, unquote

from ..domain.content import (
    ButtonReplyContent,
    Content,
    LocationContent,
    MediaContent,
    MediaType,
    MultipartContent,
    TextContent,
)
from ..domain.endpoint import Endpoint
from ..domain.errors import MessagingErrorCodes
from ..domain.message import Message
from ..domain.result import ConnectorError, ConnectorResult, ReceiveResult, StatusUpdate
from ..domain.source import MessageSource, SourceFormat
from ..domain.status import MessageStatus
from ..ports import AccountResource, ApiError, MessagePage, MessageResource, TemplateInfo
from .errors import TwilioErrorCodes

Form = Mapping[str, Sequence[str]]


class WireError(ValueError):
    """A Twilio payload that does not have the shape Twilio documents."""


# --- statuses -------------------------------------------------------------------------

#: Every value of Twilio's ``message_enum_status``, mapped without losing meaning.
TWILIO_STATUS_MAP: Final[dict[str, MessageStatus]] = {
    "accepted": MessageStatus.QUEUED,
    "scheduled": MessageStatus.SCHEDULED,
    "canceled": MessageStatus.CANCELED,
    "queued": MessageStatus.QUEUED,
    "sending": MessageStatus.SENDING,
    "sent": MessageStatus.SENT,
    "failed": MessageStatus.DELIVERY_FAILED,
    "delivered": MessageStatus.DELIVERED,
    "undelivered": MessageStatus.DELIVERY_FAILED,
    "receiving": MessageStatus.RECEIVING,
    "received": MessageStatus.RECEIVED,
    "read": MessageStatus.READ,
    "partially_delivered": MessageStatus.PARTIALLY_DELIVERED,
}


def map_status(twilio_status: str | None) -> MessageStatus:
    return TWILIO_STATUS_MAP.get((twilio_status or "").strip().lower(), MessageStatus.UNKNOWN)


# --- REST JSON -> resources ---------------------------------------------------------


def parse_rfc2822(value: object) -> dt.datetime | None:
    """Twilio's ``"Thu, 24 Aug 2023 05:01:45 +0000"`` as an aware UTC datetime."""
    if not isinstance(value, str) or not value.strip():
        return None
    return _parse_rfc2822_text(value)


@functools.lru_cache(maxsize=256)
def _parse_rfc2822_text(value: str) -> dt.datetime | None:
    # Cached: one answer carries the same date up to three times, and answers sent in
    # the same second share it; datetimes are immutable, so sharing one is safe.
    try:
        parsed = email.utils.parsedate_to_datetime(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.astimezone(dt.UTC)
    except (TypeError, ValueError, IndexError, OverflowError):  # Overflow: past year 9999 in UTC
        return None


def format_rfc2822(value: dt.datetime) -> str:
    """The inverse of :func:`parse_rfc2822`, as Twilio writes it."""
    return email.utils.format_datetime(value.astimezone(dt.UTC)).replace("-0000", "+0000")


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise WireError(f"{key} is not a string")


_INTEGER: Final = re.compile(r"-?\d{1,18}")


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise WireError(f"{key} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    raise WireError(f"{key} is not an integer")


def _req_str(data: Mapping[str, Any], key: str) -> str:
    value = _opt_str(data, key)
    if not value:
        raise WireError(f"{key} is missing")
    return value


def decode_message(data: object) -> MessageResource:
    """A Message resource from Twilio's JSON (create, fetch or a list item)."""
    if not isinstance(data, Mapping):
        raise WireError("a message resource must be a JSON object")
    return MessageResource(
        sid=_req_str(data, "sid"),
        account_sid=_req_str(data, "account_sid"),
        status=_req_str(data, "status"),
        to=_opt_str(data, "to") or "",
        from_=_opt_str(data, "from"),
        body=_opt_str(data, "body"),
        direction=_opt_str(data, "direction"),
        messaging_service_sid=_opt_str(data, "messaging_service_sid"),
        num_segments=_opt_int(data, "num_segments"),
        num_media=_opt_int(data, "num_media"),
        price=_opt_str(data, "price"),
        price_unit=_opt_str(data, "price_unit"),
        error_code=_opt_int(data, "error_code"),
        error_message=_opt_str(data, "error_message"),
        date_created=parse_rfc2822(data.get("date_created")),
        date_sent=parse_rfc2822(data.get("date_sent")),
        date_updated=parse_rfc2822(data.get("date_updated")),
        uri=_opt_str(data, "uri"),
    )


def decode_message_page(data: object) -> MessagePage:
    if not isinstance(data, Mapping) or not isinstance(data.get("messages"), list):
        raise WireError("a message page must be an object with a messages list")
    return MessagePage(
        messages=tuple(decode_message(item) for item in data["messages"]),
        next_page_uri=_opt_str(data, "next_page_uri"),
    )


def decode_account(data: object) -> AccountResource:
    if not isinstance(data, Mapping):
        raise WireError("an account resource must be a JSON object")
    return AccountResource(
        sid=_req_str(data, "sid"),
        friendly_name=_opt_str(data, "friendly_name"),
        status=_opt_str(data, "status"),
        type=_opt_str(data, "type"),
    )


def decode_api_error(status: int, data: object, retry_after: str | None = None) -> ApiError:
    """Twilio's legacy error JSON (``code``, ``message``, ``more_info``), or what we can get."""
    code: int | None = None
    message = f"HTTP {status}"
    more_info: str | None = None
    if isinstance(data, Mapping):
        try:
            code = _opt_int(data, "code")
        except WireError:
            code = None
        raw_message = data.get("message") or data.get("detail") or data.get("title")
        if isinstance(raw_message, str) and raw_message:
            message = raw_message
        info = data.get("more_info")
        more_info = info if isinstance(info, str) else None
    return ApiError(
        status=status,
        code=code,
        message=message,
        more_info=more_info,
        retry_after=parse_retry_after(retry_after),
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    when = parse_rfc2822(text)
    if when is None:
        return None
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def decode_json(raw: bytes | str) -> Any:
    """JSON text -> Python, with a WireError instead of a decoder exception."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise WireError(f"not JSON: {exc}") from None


# --- webhooks -> domain ---------------------------------------------------------------


MAX_FORM_FIELDS: Final = 10_000
#: Bodies up to this size are remembered (a handful of them): the webhook server parses
#: a body once to check its signature and the connector again to decode it.
_FORM_CACHE_LIMIT: Final = 64 * 1024


def parse_form(body: str) -> dict[str, list[str]]:
    """A form body as key -> values, keeping blank values (Twilio signs them too).

    Exactly ``urllib.parse.parse_qs(body, keep_blank_values=True,
    max_num_fields=10_000)`` (a ValueError past that many fields), in a
    fraction of the time; every call returns fresh lists.
    """
    if not isinstance(body, str):
        return parse_qs(body, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    cached = len(body) <= _FORM_CACHE_LIMIT
    pairs = _parse_pairs_cached(body) if cached else _parse_pairs(body)
    form: dict[str, list[str]] = {}
    for name, value in pairs:
        values = form.get(name)
        if values is None:
            form[name] = [value]
        else:
            values.append(value)
    return form


_ESCAPED_SEPARATOR: Final = re.compile(r"%(?:26|3[dD])")


def _parse_pairs(body: str) -> tuple[tuple[str, str], ...]:
    """``parse_qsl(body, keep_blank_values=True, max_num_fields=...)`` for a str."""
    if body and body.count("&") + 1 > MAX_FORM_FIELDS:
        raise ValueError("Max number of fields exceeded")
    if "%" in body and body.isascii() and not _ESCAPED_SEPARATOR.search(body):
        # No escaped "&" or "=": unescaping the whole body first splits it the same way,
        # and one unquote() over it equals one per name and value (a separator ends any
        # UTF-8 sequence, so no character forms across fields). Twilio's bodies are this.
        text = unquote(body.replace("+", " "))
        return tuple(
            (name, value)
            for name, _, value in (field.partition("=") for field in text.split("&") if field)
        )
    pairs: list[tuple[str, str]] = []
    for field in body.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        name = name.replace("+", " ")
        value = value.replace("+", " ")
        # unquote() returns a string without "%" unchanged; skipping the call is the same.
        pairs.append(
            (
                unquote(name) if "%" in name else name,
                unquote(value) if "%" in value else value,
            )
        )
    return tuple(pairs)


_parse_pairs_cached = functools.lru_cache(maxsize=8)(_parse_pairs)

_FORM_SAFE: Final = frozenset(string.ascii_letters + string.digits + "_.-~")
#: quote_plus(c, safe="") for every ASCII character, as a str.translate table.
_FORM_QUOTE: Final = {
    code: chr(code) if chr(code) in _FORM_SAFE else "+" if code == 32 else f"%{code:02X}"
    for code in range(128)
}


def _quote_form(text: str) -> str:
    if text.isascii():
        return text.translate(_FORM_QUOTE)
    return quote_plus(text, safe="")


def encode_form(pairs: Iterable[tuple[str, str]]) -> str:
    """``urllib.parse.urlencode(pairs)`` for str pairs, several times faster.

    A value with no UTF-8 form (a lone surrogate) raises UnicodeEncodeError, as
    urlencode does.
    """
    return "&".join([_quote_form(name) + "=" + _quote_form(value) for name, value in pairs])


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

    A body that cannot be read at all gets the ``unreadable`` code (the
    RECEIVE_*_FAILED of the operation); one that reads but lacks what Twilio
    always sends gets INVALID_WEBHOOK_DATA.
    """
    if source.format is SourceFormat.URL_POST:
        try:
            return [parse_form(source.body)]
        except ValueError as exc:
            return _unreadable(unreadable, f"unreadable form body: {exc}")
    if source.format is SourceFormat.JSON:
        try:
            data = json.loads(source.body)
            items = data.get("Messages") if isinstance(data, dict) and "Messages" in data else data
            if isinstance(items, dict):
                items = [items]
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                return _webhook_error("JSON body must be an object or a Messages list of objects")
            return [{str(k): _json_values(v) for k, v in item.items()} for item in items]
        except (ValueError, RecursionError) as exc:  # nesting too deep to load or to re-encode
            return _unreadable(unreadable, f"unreadable JSON body: {exc}")
    return ConnectorError(
        code=MessagingErrorCodes.UNSUPPORTED_CONTENT_TYPE,
        message=f"webhook content type {source.content_type!r} is not form or JSON",
        domain=MessagingErrorCodes.DOMAIN,
    )


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


def _unreadable(code: str, message: str) -> ConnectorError:
    return ConnectorError(code=code, message=message, domain=TwilioErrorCodes.DOMAIN)


def _webhook_error(message: str, **details: Any) -> ConnectorError:
    return ConnectorError(
        code=MessagingErrorCodes.INVALID_WEBHOOK_DATA,
        message=message,
        domain=MessagingErrorCodes.DOMAIN,
        details=details,
    )


_INBOUND_CONTENT_KEYS = frozenset({"Body", "NumMedia", "Latitude", "Longitude", "Address", "Label"})
_MEDIA_KEY = re.compile(r"Media(Url|ContentType)\d+")


def decode_inbound(form: Form) -> Message | ConnectorError:
    """One inbound WhatsApp message from its webhook fields."""
    sid, sender, receiver = _first(form, "MessageSid"), _first(form, "From"), _first(form, "To")
    missing = [k for k, v in (("MessageSid", sid), ("From", sender), ("To", receiver)) if not v]
    if missing:
        return _webhook_error(f"inbound message lacks {', '.join(missing)}", missing=missing)
    assert sid is not None
    assert sender is not None
    assert receiver is not None
    properties: dict[str, Any] = {}
    for key, values in form.items():
        if (
            key in _INBOUND_CONTENT_KEYS
            or (key.startswith("Media") and _MEDIA_KEY.fullmatch(key))
            or not values
        ):
            continue
        properties[key] = values[0] if len(values) == 1 else tuple(values)
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


_STATUS_EXTRAS = (
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
    return StatusUpdate(
        message_id=sid,
        status=map_status(raw_status),
        timestamp=received_at,
        error_code=error_code,
        error_message=_first(form, "ErrorMessage") or _first(form, "ChannelStatusMessage"),
        data=data,
    )


def decode_status(source: MessageSource, received_at: dt.datetime) -> ConnectorResult[StatusUpdate]:
    forms = _fields(source, TwilioErrorCodes.RECEIVE_STATUS_FAILED)
    if isinstance(forms, ConnectorError):
        return ConnectorResult.failure(forms)
    if len(forms) != 1:
        return ConnectorResult.failure(_webhook_error("a status callback carries one status"))
    decoded = decode_status_callback(forms[0], received_at)
    if isinstance(decoded, ConnectorError):
        return ConnectorResult.failure(decoded)
    return ConnectorResult.success(decoded)


def decode_template(item: object) -> TemplateInfo | None:
    """One Content API item (with or without approvals) as a TemplateInfo; None if unusable."""
    if not isinstance(item, Mapping):
        return None
    sid, name = item.get("sid"), item.get("friendly_name")
    if not isinstance(sid, str) or not isinstance(name, str):
        return None
    approvals = item.get("approval_requests")
    status: str | None = None
    if isinstance(approvals, Mapping):
        whatsapp = approvals.get("whatsapp", approvals)
        if isinstance(whatsapp, Mapping) and isinstance(whatsapp.get("status"), str):
            status = whatsapp["status"]
    variables = item.get("variables")
    declared = (
        {str(k): str(v) for k, v in variables.items()} if isinstance(variables, Mapping) else {}
    )
    language = item.get("language")
    return TemplateInfo(
        sid=sid,
        friendly_name=name,
        language=language if isinstance(language, str) else None,
        whatsapp_status=status or "unsubmitted",
        variables=declared,
    )


def choose_template(
    templates: Sequence[TemplateInfo], name: str, language: str | None
) -> TemplateInfo | None:
    """The template called ``name`` (in ``language`` if given), an approved one first."""
    candidates = [t for t in templates if t.friendly_name == name]
    if language:
        candidates = [t for t in candidates if t.language == language]
    approved = [t for t in candidates if t.whatsapp_status == "approved"]
    chosen = approved or candidates
    return chosen[0] if chosen else None


__all__ = [
    "TWILIO_STATUS_MAP",
    "TwilioErrorCodes",
    "WireError",
    "choose_template",
    "decode_account",
    "decode_api_error",
    "decode_inbound",
    "decode_json",
    "decode_message",
    "decode_message_page",
    "decode_receive",
    "decode_status",
    "decode_status_callback",
    "decode_template",
    "format_rfc2822",
    "map_status",
    "parse_form",
    "parse_retry_after",
    "parse_rfc2822",
]
