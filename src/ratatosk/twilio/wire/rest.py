"""The REST codec (connector layer, pure): Twilio's JSON answers -> typed resources.

Messages, message pages, accounts, errors (with ``Retry-After``), Content
API templates, and the status and date vocabularies they share with the
webhooks. Every decoder is total over its input type: malformed data gives a
:class:`WireError`, never an unexpected exception.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ...domain.status import MessageStatus
from ...ports import AccountResource, ApiError, MessagePage, MessageResource, TemplateInfo


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
    if value is None or type(value) is str:  # what JSON gives: answered without more checks
        return value
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
    if type(value) is str and value.isdigit() and value.isascii() and len(value) <= 18:
        return int(value)  # Twilio's counts ("1"): what the pattern below accepts, sooner
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


# --- Content API templates --------------------------------------------------------------


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
    "WireError",
    "choose_template",
    "decode_account",
    "decode_api_error",
    "decode_json",
    "decode_message",
    "decode_message_page",
    "decode_template",
    "format_rfc2822",
    "map_status",
    "parse_retry_after",
    "parse_rfc2822",
]
