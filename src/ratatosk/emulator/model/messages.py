"""Stored messages, their JSON, and List Messages paging (emulator layer, pure).

A :class:`StoredMessage` is the model's mutable record of one Message
resource; :meth:`StoredMessage.to_json` renders Twilio's JSON (twilio-facts
§1.3: ``num_*`` as strings, RFC 2822 dates, relative ``uri``).
:func:`list_page` filters and pages like Twilio (§1.5): newest first,
``PageSize`` 1..1000 (default 50), ``PageToken=PA<sid>`` continues after
that message, so pages stay stable while new messages arrive.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Final
from urllib.parse import urlencode

import attrs

from ...twilio.wire import format_rfc2822
from .records import API_VERSION, Json, Reply, error_reply

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 1000


@attrs.define(kw_only=True)
class StoredMessage:
    """One Message resource as the model holds it (outbound or inbound)."""

    sid: str
    account_sid: str
    to: str
    from_: str | None
    body: str
    direction: str
    status: str
    num_media: int
    num_segments: int
    messaging_service_sid: str | None
    date_created: dt.datetime
    date_updated: dt.datetime
    date_sent: dt.datetime | None
    form: tuple[tuple[str, str], ...] = ()
    status_callback: str | None = None
    content_sid: str | None = None
    media_urls: tuple[str, ...] = ()
    #: WhatsApp rich actions (a location pin); Twilio's JSON does not show them.
    persistent_action: tuple[str, ...] = ()
    price: str | None = None
    error_code: int | None = None
    error_message: str | None = None
    #: Statuses still to come, with the error code of a failing final step.
    plan: list[tuple[str, int | None]] = attrs.field(factory=list)
    next_at: dt.datetime | None = None
    seq: int = 0

    @property
    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"

    def to_json(self) -> Json:
        base = self.uri.removesuffix(".json")
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": format_rfc2822(self.date_created),
            "date_sent": format_rfc2822(self.date_sent) if self.date_sent else None,
            "date_updated": format_rfc2822(self.date_updated),
            "direction": self.direction,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": str(self.num_media),
            "num_segments": str(self.num_segments),
            "price": self.price,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": f"{base}/Media.json"},
            "to": self.to,
            "uri": self.uri,
        }


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _parse_when(text: str) -> dt.date | dt.datetime | None:
    """``YYYY-MM-DD`` (a day) or an ISO datetime such as the SDK's ``...T...Z``."""
    value = text.strip()
    if _DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _matches(message: StoredMessage, op: str, when: dt.date | dt.datetime) -> bool:
    """``DateSent`` is that day, ``DateSent>`` on or after, ``DateSent<`` on or before."""
    sent = (message.date_sent or message.date_created).astimezone(dt.UTC)
    if isinstance(when, dt.datetime):
        if op == "=":
            return sent.date() == when.date()
        return sent >= when if op == ">" else sent <= when
    day = sent.date()
    if op == "=":
        return day == when
    return day >= when if op == ">" else day <= when


_DATE_FILTERS: Final = (("DateSent", "="), ("DateSent>", ">"), ("DateSent<", "<"))


def list_page(
    account_sid: str, messages: Sequence[StoredMessage], query: Mapping[str, str]
) -> Reply:
    """One page of the account's messages as Twilio's list JSON, or a 400."""
    size_text = query.get("PageSize", str(DEFAULT_PAGE_SIZE))
    page_text = query.get("Page", "0")
    if not size_text.isdigit() or not 1 <= int(size_text) <= MAX_PAGE_SIZE:
        return error_reply(20001, f"PageSize must be an integer within 1..{MAX_PAGE_SIZE}")
    if not page_text.isdigit():
        return error_reply(20001, "Page must be a non-negative integer")
    size, page = int(size_text), int(page_text)
    selected = [m for m in messages if m.account_sid == account_sid]
    filters: list[tuple[str, str]] = []
    for key in ("To", "From"):
        if query.get(key):
            filters.append((key, query[key]))
            wanted = query[key]
            selected = [m for m in selected if (m.to if key == "To" else m.from_) == wanted]
    for key, op in _DATE_FILTERS:
        if query.get(key):
            when = _parse_when(query[key])
            if when is None:
                return error_reply(20001, f"{key} must be a date (YYYY-MM-DD)")
            filters.append((key, query[key]))
            selected = [m for m in selected if _matches(m, op, when)]
    selected.sort(key=lambda m: (m.date_created, m.seq), reverse=True)
    start = _start_index(selected, query.get("PageToken"), page * size, size)
    items = selected[start : start + size]
    path = f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"

    def uri(page_no: int, token: str | None = None) -> str:
        pairs = [*filters, ("PageSize", str(size)), ("Page", str(page_no))]
        if token:
            pairs.append(("PageToken", token))
        return f"{path}?{urlencode(pairs)}"

    has_next = start + size < len(selected)
    return Reply(
        status=200,
        body={
            "end": page * size + max(len(items) - 1, 0),
            "first_page_uri": uri(0),
            "messages": [m.to_json() for m in items],
            "next_page_uri": uri(page + 1, "PA" + items[-1].sid) if has_next and items else None,
            "page": page,
            "page_size": size,
            "previous_page_uri": (
                uri(page - 1, "PB" + items[0].sid) if page > 0 and items and start > 0 else None
            ),
            "start": page * size,
            "uri": uri(page, query.get("PageToken")),
        },
    )


def _start_index(
    ordered: Sequence[StoredMessage], token: str | None, fallback: int, size: int
) -> int:
    """Where a page starts: after ``PA<sid>``, a page before ``PB<sid>``, else by index."""
    if token and len(token) > 2:
        sids = [m.sid for m in ordered]
        sid = token[2:]
        if sid in sids:
            index = sids.index(sid)
            if token.startswith("PA"):
                return index + 1
            if token.startswith("PB"):
                return max(index - size, 0)
    return fallback


__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "StoredMessage", "list_page"]
