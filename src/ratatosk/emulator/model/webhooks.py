"""The form fields of the webhooks Twilio sends (emulator layer, pure).

:func:`inbound_form` builds an inbound WhatsApp message (twilio-facts §4.1)
and :func:`status_callback_params` a status callback (§4.2), field for field
as Twilio names them, one string value per field. Signing is
``ratatosk.twilio.signature.compute_signature`` over the webhook URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import attrs

from .records import API_VERSION

_MIME_TYPES: Final = (
    ("image/", "image"),
    ("video/", "video"),
    ("audio/", "audio"),
    ("text/vcard", "contacts"),
    ("text/x-vcard", "contacts"),
)


@attrs.frozen(kw_only=True)
class Location:
    """A shared location; ``address`` and ``label`` are optional in WhatsApp."""

    latitude: float
    longitude: float
    address: str | None = None
    label: str | None = None


def _message_type(
    media: Sequence[tuple[str, str]], location: Location | None, button: tuple[str, str] | None
) -> str:
    if location is not None:
        return "location"
    if button is not None:
        return "button"
    if media:
        mime = media[0][1].lower()
        return next((kind for prefix, kind in _MIME_TYPES if mime.startswith(prefix)), "document")
    return "text"


def wa_id(address: str) -> str:
    """The sender's WhatsApp ID: the digits of its number, no ``+``."""
    return "".join(ch for ch in address if ch.isdigit())


def inbound_form(
    *,
    sid: str,
    account_sid: str,
    from_: str,
    to: str,
    body: str = "",
    media: Sequence[tuple[str, str]] = (),
    location: Location | None = None,
    button: tuple[str, str] | None = None,
    profile_name: str | None = None,
    reply_to: tuple[str, str] | None = None,
    messaging_service_sid: str | None = None,
) -> dict[str, str]:
    """An inbound-message webhook form.

    ``media`` holds ``(url, content type)`` pairs; ``button`` is ``(text,
    payload)`` (the text is also the Body); ``reply_to`` is ``(original sid,
    original sender)`` for a quoted reply.
    """
    text = button[0] if button is not None and not body else body
    form: dict[str, str] = {
        "SmsMessageSid": sid,
        "NumMedia": str(len(media)),
        "ProfileName": profile_name if profile_name is not None else "WhatsApp User",
        "MessageType": _message_type(media, location, button),
        "SmsSid": sid,
        "WaId": wa_id(from_),
        "SmsStatus": "received",
        "Body": text,
        "To": to,
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": sid,
        "AccountSid": account_sid,
        "From": from_,
        "ApiVersion": API_VERSION,
    }
    if messaging_service_sid is not None:
        form["MessagingServiceSid"] = messaging_service_sid
    for index, (url, mime) in enumerate(media):
        form[f"MediaContentType{index}"] = mime
        form[f"MediaUrl{index}"] = url
    if location is not None:
        form["Latitude"] = repr(float(location.latitude))
        form["Longitude"] = repr(float(location.longitude))
        if location.address is not None:
            form["Address"] = location.address
        if location.label is not None:
            form["Label"] = location.label
    if button is not None:
        form["ButtonText"] = button[0]
        form["ButtonPayload"] = button[1]
    if reply_to is not None:
        form["OriginalRepliedMessageSid"] = reply_to[0]
        form["OriginalRepliedMessageSender"] = reply_to[1]
    return form


def masked(address: str) -> str:
    """``ChannelToAddress`` as Twilio masks it: the number with its last 5 digits hidden."""
    number = address.removeprefix("whatsapp:")
    return number[:-5] + "XXXXX" if len(number) > 6 else number


def status_callback_params(
    *,
    sid: str,
    account_sid: str,
    from_: str,
    to: str,
    status: str,
    channel_install_sid: str,
    error_code: int | None = None,
    error_message: str | None = None,
    messaging_service_sid: str | None = None,
) -> dict[str, str]:
    """A WhatsApp status callback form; ``ErrorCode`` only on failure, ``EventType`` on read."""
    params: dict[str, str] = {
        "ChannelPrefix": "whatsapp",
        "ApiVersion": API_VERSION,
        "MessageStatus": status,
        "SmsSid": sid,
        "SmsStatus": status,
        "ChannelInstallSid": channel_install_sid,
        "To": to,
        "From": from_,
        "MessageSid": sid,
        "AccountSid": account_sid,
        "ChannelToAddress": masked(to),
    }
    if messaging_service_sid is not None:
        params["MessagingServiceSid"] = messaging_service_sid
    if status == "read":
        params["EventType"] = "READ"
    if error_code is not None:
        params["ErrorCode"] = str(error_code)
        if error_message:
            params["ChannelStatusMessage"] = error_message
    return params


__all__ = ["Location", "inbound_form", "masked", "status_callback_params", "wa_id"]
