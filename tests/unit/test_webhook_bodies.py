"""Realistic Twilio webhook bodies, every status, every provider-code mapping.

The bodies follow the fields Twilio documents for WhatsApp (see
reference/twilio-facts.md §4): legacy SmsSid copies, WaId, ProfileName,
media URLs under /Messages/MM.../Media/ME..., and so on.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

import pytest

from ratatosk import (
    ButtonReplyContent,
    LocationContent,
    MediaContent,
    MediaType,
    MessageSource,
    MessageStatus,
    MultipartContent,
    TextContent,
)
from ratatosk.domain.errors import MessagingErrorCodes, catalog
from ratatosk.twilio import wire
from ratatosk.twilio.errors import PROVIDER_CODE_MAP, TwilioErrorCodes, map_provider_code

ACCOUNT = "AC" + "1" * 32
NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
CUSTOMER = "whatsapp:+15551234567"
BUSINESS = "whatsapp:+14155238886"


def _inbound(sid: str = "SM" + "a" * 32, **fields: str) -> dict[str, str]:
    form = {
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ProfileName": "Zoë Example",
        "MessageType": "text",
        "SmsSid": sid,
        "WaId": "15551234567",
        "SmsStatus": "received",
        "Body": "",
        "To": BUSINESS,
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": sid,
        "AccountSid": ACCOUNT,
        "From": CUSTOMER,
        "ApiVersion": "2010-04-01",
    }
    form.update(fields)
    return form


def _media_url(n: str) -> str:
    message = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages/MM{'d' * 32}"
    return f"{message}/Media/ME{n * 32}"


def _receive(form: dict[str, str]):  # type: ignore[no-untyped-def]
    result = wire.decode_receive(MessageSource.url_post(urlencode(form)))
    assert result.error is None, result.error
    [message] = result.unwrap().messages
    return message


def test_text() -> None:
    message = _receive(_inbound(Body="Hola! ¿qué tal? 👋"))
    assert message.id == "SM" + "a" * 32
    assert message.content == TextContent("Hola! ¿qué tal? 👋")
    assert message.sender.address == CUSTOMER
    assert message.receiver.address == BUSINESS
    assert message.properties["ProfileName"] == "Zoë Example"
    assert message.properties["WaId"] == "15551234567"


def test_one_media_without_text() -> None:
    sid = "MM" + "d" * 32
    message = _receive(
        _inbound(sid, NumMedia="1", MessageType="image", MediaContentType0="image/jpeg",
                 MediaUrl0=_media_url("e"))
    )  # fmt: skip
    assert message.content == MediaContent(
        MediaType.IMAGE, None, _media_url("e"), mime_type="image/jpeg"
    )


def test_two_media_with_a_caption_keep_both_and_the_text() -> None:
    form = _inbound(
        "MM" + "d" * 32, NumMedia="2", Body="our receipts",
        MediaContentType0="image/jpeg", MediaUrl0=_media_url("e"),
        MediaContentType1="application/pdf", MediaUrl1=_media_url("f"),
    )  # fmt: skip
    content = _receive(form).content
    assert isinstance(content, MultipartContent)
    assert content.text == "our receipts"
    assert [(p.media_type, p.url) for p in content.parts] == [  # type: ignore[attr-defined]
        (MediaType.IMAGE, _media_url("e")),
        (MediaType.DOCUMENT, _media_url("f")),
    ]


@pytest.mark.parametrize(
    ("mime", "kind"),
    [("audio/ogg", MediaType.AUDIO), ("video/mp4", MediaType.VIDEO),
     ("image/webp", MediaType.STICKER), ("application/pdf", MediaType.DOCUMENT)],
)  # fmt: skip
def test_media_kinds_follow_the_mime_type(mime: str, kind: MediaType) -> None:
    form = _inbound(NumMedia="1", MediaContentType0=mime, MediaUrl0=_media_url("e"))
    content = _receive(form).content
    assert isinstance(content, MediaContent)
    assert content.media_type is kind


def test_location() -> None:
    form = _inbound(
        MessageType="location", Latitude="52.5200", Longitude="13.4050",
        Address="Pariser Platz, Berlin", Label="Brandenburger Tor",
    )  # fmt: skip
    assert _receive(form).content == LocationContent(
        latitude=52.52, longitude=13.405, address="Pariser Platz, Berlin", label="Brandenburger Tor"
    )


def test_button_reply() -> None:
    form = _inbound(
        MessageType="button", Body="Yes, confirm", ButtonText="Yes, confirm",
        ButtonPayload="confirm_order_ORD-123",
    )  # fmt: skip
    assert _receive(form).content == ButtonReplyContent(
        text="Yes, confirm", payload="confirm_order_ORD-123"
    )


def test_reply_to_a_message_keeps_the_quoted_sid() -> None:
    quoted = "SM" + "b" * 32
    form = _inbound(
        Body="this one", OriginalRepliedMessageSid=quoted, OriginalRepliedMessageSender=BUSINESS
    )
    message = _receive(form)
    assert message.content == TextContent("this one")
    assert message.properties["OriginalRepliedMessageSid"] == quoted
    assert message.properties["OriginalRepliedMessageSender"] == BUSINESS


def test_click_to_whatsapp_referral_fields_are_kept() -> None:
    form = _inbound(
        Body="I saw your ad", ReferralBody="Summer sale", ReferralHeadline="50% off",
        ReferralSourceId="120", ReferralSourceType="ad", ReferralSourceUrl="https://fb.me/x",
        ReferralCtwaClid="ARAkLkA",
    )  # fmt: skip
    properties = _receive(form).properties
    assert properties["ReferralSourceType"] == "ad"
    assert properties["ReferralCtwaClid"] == "ARAkLkA"


def _callback(status: str, **extra: str) -> dict[str, str]:
    sid = "SM" + "c" * 32
    form = {
        "AccountSid": ACCOUNT, "ApiVersion": "2010-04-01", "ChannelInstallSid": "XE" + "0" * 32,
        "ChannelPrefix": "whatsapp", "ChannelToAddress": "+1555123XXXX", "From": BUSINESS,
        "MessageSid": sid, "MessageStatus": status, "SmsSid": sid, "SmsStatus": status,
        "To": CUSTOMER,
    }  # fmt: skip
    form.update(extra)
    return form


@pytest.mark.parametrize(("twilio", "status"), sorted(wire.TWILIO_STATUS_MAP.items()))
def test_status_callback_for_every_status(twilio: str, status: MessageStatus) -> None:
    extra = {"EventType": "READ"} if twilio == "read" else {}
    source = MessageSource.url_post(urlencode(_callback(twilio, **extra)))
    update = wire.decode_status(source, NOW).unwrap()
    assert update.status is status
    assert update.message_id == "SM" + "c" * 32
    assert update.timestamp == NOW
    assert update.data["ChannelPrefix"] == "whatsapp"


def test_failed_callback_carries_the_error() -> None:
    form = _callback(
        "failed", ErrorCode="63016",
        ChannelStatusMessage="Failed to send freeform message because you are outside the "
        "allowed window.",
    )  # fmt: skip
    update = wire.decode_status(MessageSource.url_post(urlencode(form)), NOW).unwrap()
    assert update.status is MessageStatus.DELIVERY_FAILED
    assert update.error_code == 63016
    assert update.error_message is not None
    assert "outside the allowed window" in update.error_message


def test_unknown_status_is_unknown_not_an_error() -> None:
    form = _callback("teleported")
    update = wire.decode_status(MessageSource.url_post(urlencode(form)), NOW).unwrap()
    assert update.status is MessageStatus.UNKNOWN


@pytest.mark.parametrize(("twilio_code", "code"), sorted(PROVIDER_CODE_MAP.items()))
def test_every_provider_code_mapping(twilio_code: int, code: str) -> None:
    assert map_provider_code(twilio_code, 400) == code
    assert code in set(catalog(MessagingErrorCodes)) | set(catalog(TwilioErrorCodes))


def test_unmapped_codes_fall_back_by_http_status() -> None:
    assert map_provider_code(30008, 400) == MessagingErrorCodes.SEND_MESSAGE_FAILED
    assert map_provider_code(None, 429) == MessagingErrorCodes.RATE_LIMITED
