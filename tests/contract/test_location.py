"""Sending a WhatsApp location: the same behaviour on FakeTwilio and over HTTP to the emulator.

Twilio sends a location as ``PersistentAction=geo:LAT,LONG|LABEL`` beside a
``Body``; the connector plans it from a ``LocationContent``, and both faces
of the model validate and store it.
"""

from __future__ import annotations

from urllib.parse import urlencode

from ratatosk import LocationContent, MessageBuilder, MessageSource
from ratatosk.ports import ApiError, CreateMessageRequest, MessageResource
from ratatosk.twilio import TwilioErrorCodes

from .conftest import RECIPIENT, SENDER, Backend

PIN = "geo:37.78789,-122.391664|375 Beale St"


def _location(**fields: object) -> CreateMessageRequest:
    values: dict[str, object] = {
        "to": RECIPIENT,
        "from_": SENDER,
        "body": "Our office",
        "persistent_action": (PIN,),
    }
    return CreateMessageRequest(**(values | fields))  # type: ignore[arg-type]


def _send(location: LocationContent) -> MessageBuilder:
    return MessageBuilder().from_phone(SENDER).to_phone(RECIPIENT).with_content(location)


async def test_a_location_is_created_with_its_body_and_stored_with_its_pin(
    backend: Backend,
) -> None:
    created = await backend.api.create_message(_location())
    assert isinstance(created, MessageResource), created
    assert (created.body, created.num_media) == ("Our office", 0)
    stored = backend.model.message(created.sid)
    assert stored is not None
    assert stored.persistent_action == (PIN,)
    assert ("PersistentAction", PIN) in stored.form


async def test_a_malformed_pin_is_refused_with_twilios_invalid_parameter(
    backend: Backend,
) -> None:
    for action in ("geo:91,0", "geo:0,-180.5", "geo:1;2", "https://maps.example.com", "geo:1,2| "):
        refused = await backend.api.create_message(_location(persistent_action=(action,)))
        assert isinstance(refused, ApiError), action
        assert (refused.status, refused.code) == (400, 20001)
    assert backend.model.stored_count == 0


async def test_a_pin_without_a_body_is_refused_like_any_empty_message(backend: Backend) -> None:
    refused = await backend.api.create_message(_location(body=None))
    assert isinstance(refused, ApiError)
    assert refused.code == 21602


async def test_the_connector_sends_location_content(backend: Backend) -> None:
    location = LocationContent(
        latitude=37.78789, longitude=-122.391664, address="375 Beale St, SF", label="Twilio"
    )
    async with backend.connector() as connector:
        sent = await connector.send_message(_send(location).build())
    assert sent.successful, sent.error
    stored = backend.model.message(sent.unwrap().provider_message_id)
    assert stored is not None
    assert stored.body == "375 Beale St, SF"
    assert stored.persistent_action == ("geo:37.78789,-122.391664|Twilio",)


async def test_a_bad_location_is_refused_before_twilio_hears_of_it(backend: Backend) -> None:
    location = LocationContent(latitude=-90.5, longitude=181, label="nowhere")
    async with backend.connector() as connector:
        refused = await connector.send_message(_send(location).build())
    assert refused.error is not None
    assert refused.error.code == TwilioErrorCodes.INVALID_MESSAGE
    assert refused.error.details["fields"] == ["latitude", "longitude"]
    assert backend.model.attempts == []


async def test_a_location_is_free_form_for_the_24_hour_window(backend: Backend) -> None:
    location = LocationContent(latitude=59.33, longitude=18.07, label="Stockholm")
    async with backend.connector(ConversationWindowGuard="true") as connector:
        outside = await connector.send_message(_send(location).build())
        form = backend.model.inbound_message(RECIPIENT, SENDER, body="where are you?")
        await connector.receive_messages(MessageSource.url_post(urlencode(form)))
        inside = await connector.send_message(_send(location).build())
    assert outside.error is not None
    assert outside.error.code == TwilioErrorCodes.OUTSIDE_CONVERSATION_WINDOW
    assert inside.successful
