"""Webhook decoding after the codec split: the handed-over form, and fields Twilio sends once."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import attrs
import pytest

from ratatosk import MessageSource, TextContent
from ratatosk.twilio import wire

SID = "SM" + "0d" * 16
FORM = {"MessageSid": SID, "From": "whatsapp:+15551234567", "To": "whatsapp:+14155238886"}


def test_the_handed_over_form_is_what_gets_decoded() -> None:
    """A source carrying its parsed form is decoded from that form, not parsed again."""
    body = urlencode(FORM | {"Body": "signed text"})
    source = attrs.evolve(MessageSource.url_post(body), form=wire.parse_form(body))
    [message] = wire.decode_receive(source).unwrap().messages
    assert message.content == TextContent("signed text")
    # The form alone decides: a source whose body was never parsed decodes the same.
    by_form = MessageSource(source.format, "", source.content_type, form=source.form)
    assert wire.decode_receive(by_form).unwrap().messages == (message,)


def test_the_form_is_frozen_and_not_part_of_equality() -> None:
    """The fields cannot be changed after the check, and two sources of one body are equal."""
    body = urlencode(FORM)
    parsed = wire.parse_form(body)
    source = attrs.evolve(MessageSource.url_post(body), form=parsed)
    parsed["From"].append("whatsapp:+10000000000")
    assert source.form is not None
    assert source.form["From"] == ("whatsapp:+15551234567",)
    with pytest.raises(TypeError):
        source.form["From"] = ("x",)  # type: ignore[index]
    assert source == MessageSource.url_post(body)


@pytest.mark.parametrize("field", ["From", "MessageSid", "Body", "MediaUrl0"])
def test_a_repeated_single_value_field_is_refused_in_json_too(field: str) -> None:
    """A JSON list for a field Twilio sends once is the same repeat: INVALID_WEBHOOK_DATA."""
    body = json.dumps(FORM | {field: ["one", "two"]})
    result = wire.decode_receive(MessageSource.json(body))
    assert result.error is not None
    assert result.error.code == "INVALID_WEBHOOK_DATA"
    assert result.error.details["repeated"] == [field]


def test_the_split_codec_keeps_every_name() -> None:
    """``wire.X`` still reaches every function the connector, the fake and the tests use."""
    for name in wire.__all__:
        assert getattr(wire, name) is not None
    assert wire.decode_message.__module__ == "ratatosk.twilio.wire.rest"
    assert wire.parse_form.__module__ == "ratatosk.twilio.wire.form"
    assert wire.decode_receive.__module__ == "ratatosk.twilio.wire.webhooks"
