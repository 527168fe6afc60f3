"""Create Message validation, in Twilio's order and with Twilio's codes (emulator layer, pure).

A create form either becomes :class:`CreateParams` or a 400 :class:`Reply`
carrying the first problem Twilio would report. Codes (twilio-facts §1.2, §5):

* 21604 no ``To``; 21211 ``To`` not ``whatsapp:`` + a possible E.164 number;
* 21705 ``MessagingServiceSid`` not ``MG`` + 32 hex (Twilio's "invalid
  Messaging Service" code; the closest documented one);
* 21603 neither ``From`` nor ``MessagingServiceSid``; 63007 ``From`` not a
  WhatsApp sender of the account;
* 21602 none of ``Body``, ``MediaUrl``, ``ContentSid``; 21617 ``Body`` over
  1600 characters; 21623 more than 10 ``MediaUrl``; 21620 a ``MediaUrl`` not
  absolute http(s);
* 21655 ``ContentSid`` not ``HX`` + 32 hex; 21654 ``ContentVariables``
  without ``ContentSid``; 21656 ``ContentVariables`` not a JSON object of
  non-empty string or number values (at most 100, each at most 1600 chars);
* 21658 ``ValidityPeriod`` not an integer in 1..36000 (Twilio's "parameter
  over its limit"; Twilio documents no dedicated code);
* 21609 ``StatusCallback`` not an absolute http(s) URL, or a host with ``_``;
* 20001 a ``PersistentAction`` that is not a location ``geo:LAT,LONG`` or
  ``geo:LAT,LONG|LABEL`` with LAT in -90..90 and LONG in -180..180 (Twilio's
  "invalid parameter"; it documents no dedicated code). A location still
  needs a ``Body`` (21602), as Twilio sends it with one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit

import attrs

from ...domain.endpoint import parse_whatsapp_number
from ...domain.schema import is_absolute_http_url
from .records import Reply, error_reply

MAX_BODY: Final = 1600
MAX_MEDIA: Final = 10
MAX_VARIABLES: Final = 100
MAX_VALIDITY: Final = 36000

_WHATSAPP_SHAPE = re.compile(r"whatsapp:\+[1-9][0-9]{1,14}")
_CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
_GEO = re.compile(r"geo:([+-]?\d{1,3}(?:\.\d+)?),([+-]?\d{1,3}(?:\.\d+)?)(?:\|(.+))?", re.DOTALL)


@attrs.frozen(kw_only=True)
class CreateParams:
    """A create request that passed validation; ``form`` is every pair as sent."""

    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str | None
    media_urls: tuple[str, ...]
    persistent_action: tuple[str, ...]
    content_sid: str | None
    content_variables: Mapping[str, str]
    status_callback: str | None
    validity_period: int | None
    form: tuple[tuple[str, str], ...]

    @property
    def is_template(self) -> bool:
        return self.content_sid is not None


def is_whatsapp_address(text: str) -> bool:
    """``whatsapp:+E164`` exactly, and a number ``phonenumbers`` calls possible."""
    return bool(_WHATSAPP_SHAPE.fullmatch(text)) and parse_whatsapp_number(text).ok


def _first(form: Sequence[tuple[str, str]], key: str) -> str | None:
    """The first non-empty value of ``key`` (Twilio treats ``Key=`` as absent)."""
    for name, value in form:
        if name == key and value != "":
            return value
    return None


def validate_create(
    form: Sequence[tuple[str, str]], *, senders: Collection[str] | None = None
) -> CreateParams | Reply:
    """Check a Create Message form like Twilio does; the first failure wins.

    ``senders`` restricts ``From`` to the account's own WhatsApp senders;
    None accepts any valid ``whatsapp:+E164`` sender.
    """
    to = _first(form, "To")
    if to is None:
        return error_reply(21604, "A 'To' phone number is required.")
    if not is_whatsapp_address(to):
        return error_reply(21211, f"Invalid 'To' Phone Number: {to}")
    service = _first(form, "MessagingServiceSid")
    if service is not None and not _SERVICE_SID.fullmatch(service):
        return error_reply(21705, f"The Messaging Service Sid {service} is invalid.")
    sender = _first(form, "From")
    if sender is None and service is None:
        return error_reply(21603, "A 'From' phone number is required.")
    if sender is not None and (
        not is_whatsapp_address(sender) or (senders is not None and sender not in senders)
    ):
        return error_reply(
            63007, f"Twilio could not find a Channel with the specified From address: {sender}"
        )
    body = _first(form, "Body")
    media = tuple(value for name, value in form if name == "MediaUrl" and value != "")
    content_sid = _first(form, "ContentSid")
    problem = _content_problem(body, media, content_sid)
    if problem is not None:
        return problem
    raw_variables = _first(form, "ContentVariables")
    variables: Mapping[str, str] = MappingProxyType({})
    if raw_variables is not None:
        if content_sid is None:
            return error_reply(
                21654,
                "ContentVariables parameter is only valid when ContentSid is also provided.",
            )
        parsed = parse_content_variables(raw_variables)
        if parsed is None:
            return error_reply(21656, "The ContentVariables Parameter is invalid.")
        variables = parsed
    actions = tuple(value for name, value in form if name == "PersistentAction" and value != "")
    bad_action = next((a for a in actions if not is_geo_action(a)), None)
    if bad_action is not None:
        return error_reply(20001, f"Invalid parameter PersistentAction: {bad_action[:80]}")
    validity = _validity(_first(form, "ValidityPeriod"))
    if isinstance(validity, Reply):
        return validity
    callback = _first(form, "StatusCallback")
    if callback is not None and not _callback_ok(callback):
        return error_reply(21609, f"The StatusCallback URL {callback} is not a valid URL.")
    return CreateParams(
        to=to,
        from_=sender,
        messaging_service_sid=service,
        body=body,
        media_urls=media,
        persistent_action=actions,
        content_sid=content_sid,
        content_variables=variables,
        status_callback=callback,
        validity_period=validity,
        form=tuple((str(k), str(v)) for k, v in form),
    )


def _content_problem(
    body: str | None, media: tuple[str, ...], content_sid: str | None
) -> Reply | None:
    if body is None and not media and content_sid is None:
        return error_reply(21602, "A text message body or media urls must be specified.")
    if body is not None and len(body) > MAX_BODY:
        return error_reply(
            21617, f"The concatenated message body exceeds the {MAX_BODY} character limit."
        )
    if len(media) > MAX_MEDIA:
        return error_reply(21623, f"Too many media urls: at most {MAX_MEDIA} are allowed.")
    bad = [url for url in media if not is_absolute_http_url(url)]
    if bad:
        return error_reply(
            21620,
            f"Media urls: {', '.join(bad)} are invalid. Please use only valid http and https urls",
        )
    if content_sid is not None and not _CONTENT_SID.fullmatch(content_sid):
        return error_reply(21655, "The ContentSid is Invalid.")
    return None


def is_geo_action(action: str) -> bool:
    """``geo:LAT,LONG`` or ``geo:LAT,LONG|LABEL``, the coordinates within range."""
    match = _GEO.fullmatch(action)
    if match is None:
        return False
    latitude, longitude, label = float(match[1]), float(match[2]), match[3]
    in_range = -90 <= latitude <= 90 and -180 <= longitude <= 180
    return in_range and (label is None or bool(label.strip()))


def parse_content_variables(raw: str) -> Mapping[str, str] | None:
    """A ContentVariables JSON object as str -> str, or None when Twilio would refuse it."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or len(data) > MAX_VARIABLES:
        return None
    result: dict[str, str] = {}
    for key, value in data.items():
        if not key or isinstance(value, bool) or not isinstance(value, str | int | float):
            return None
        text = value if isinstance(value, str) else json.dumps(value)
        if not text.strip() or len(text) > MAX_BODY:
            return None
        result[key] = text
    return MappingProxyType(result)


def _validity(raw: str | None) -> int | Reply | None:
    if raw is None:
        return None
    text = raw.strip()
    if text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_VALIDITY:
        return int(text)
    return error_reply(
        21658, f"ValidityPeriod must be an integer between 1 and {MAX_VALIDITY} seconds."
    )


def _callback_ok(url: str) -> bool:
    if not is_absolute_http_url(url):
        return False
    return "_" not in (urlsplit(url).hostname or "")


__all__ = [
    "MAX_BODY",
    "MAX_MEDIA",
    "MAX_VALIDITY",
    "MAX_VARIABLES",
    "CreateParams",
    "is_geo_action",
    "is_whatsapp_address",
    "parse_content_variables",
    "validate_create",
]
