"""Planning a WhatsApp location send, and the model's check of Twilio's ``PersistentAction``.

Pure: ``plan_send`` and the model, no connector and no I/O. The contract
suite (``tests/contract/test_location.py``) sends the same through both faces.
"""

from __future__ import annotations

import math

import pytest

from ratatosk import ConnectorError, ContentType, LocationContent, Message, MessageBuilder
from ratatosk.emulator.model import TwilioModel, is_geo_action
from ratatosk.ports import CreateMessageRequest
from ratatosk.twilio import TwilioChannelSchemas, TwilioErrorCodes
from ratatosk.twilio.outbound import SendConfig, SendPlan, plan_send

SCHEMA = TwilioChannelSchemas.TWILIO_WHATSAPP
SENDER = "whatsapp:+14155238886"
RECIPIENT = "whatsapp:+15550002222"


def message(location: object, **properties: object) -> Message:
    builder = MessageBuilder().from_phone(SENDER).to_phone(RECIPIENT)
    builder = builder.with_content(location)  # type: ignore[arg-type]
    for name, value in properties.items():
        builder = builder.with_property(name, value)
    return builder.build()


def planned(location: LocationContent) -> CreateMessageRequest:
    plan = plan_send(SCHEMA, SendConfig(), message(location))
    assert isinstance(plan, SendPlan), plan
    return plan.request


def refused(location: object, **properties: object) -> ConnectorError:
    plan = plan_send(SCHEMA, SendConfig(), message(location, **properties))
    assert isinstance(plan, ConnectorError), plan
    assert plan.code == TwilioErrorCodes.INVALID_MESSAGE
    return plan


class TestPlan:
    def test_pin_label_and_address(self) -> None:
        """The label goes in the pin, the address in the Body, as Twilio's form wants them."""
        request = planned(
            LocationContent(
                latitude=37.78789, longitude=-122.391664, address="375 Beale St", label="HQ"
            )
        )
        assert request.persistent_action == ("geo:37.78789,-122.391664|HQ",)
        assert request.body == "375 Beale St"
        assert ("PersistentAction", "geo:37.78789,-122.391664|HQ") in request.to_form()

    def test_the_label_is_the_body_when_there_is_no_address(self) -> None:
        request = planned(LocationContent(latitude=1.5, longitude=2, label="Meet here"))
        assert (request.persistent_action, request.body) == (("geo:1.5,2|Meet here",), "Meet here")

    def test_an_address_alone_gives_a_pin_without_label(self) -> None:
        request = planned(LocationContent(latitude=-33.8568, longitude=151.2153, address="Sydney"))
        assert request.persistent_action == ("geo:-33.8568,151.2153",)

    @pytest.mark.parametrize(
        ("latitude", "longitude", "pin"),
        [(1e-05, -0.0, "geo:0.00001,0"), (90, -180, "geo:90,-180"), (-90.0, 180.0, "geo:-90,180")],
    )
    def test_coordinates_are_plain_decimals(
        self, latitude: float, longitude: float, pin: str
    ) -> None:
        """No exponent and no negative zero: a geo URI is decimal degrees."""
        request = planned(LocationContent(latitude=latitude, longitude=longitude, label="x"))
        assert request.persistent_action == (f"{pin}|x",)
        assert is_geo_action(request.persistent_action[0])

    @pytest.mark.parametrize(
        ("latitude", "longitude", "fields"),
        [
            (90.5, 0.0, ["latitude"]),
            (0.0, -180.01, ["longitude"]),
            (math.nan, math.inf, ["latitude", "longitude"]),
            (True, "12", ["latitude", "longitude"]),
        ],
    )
    def test_coordinates_out_of_range_name_their_field(
        self, latitude: object, longitude: object, fields: list[str]
    ) -> None:
        error = refused(LocationContent(latitude=latitude, longitude=longitude, label="x"))  # type: ignore[arg-type]
        assert error.details["fields"] == fields

    @pytest.mark.parametrize(
        ("location", "fields"),
        [
            (LocationContent(latitude=0, longitude=0, label="  "), ["label"]),
            (LocationContent(latitude=0, longitude=0, label="x" * 1601), ["label"]),
            (LocationContent(latitude=0, longitude=0, address="", label="x"), ["address"]),
            (LocationContent(latitude=0, longitude=0, address=7), ["address"]),  # type: ignore[arg-type]
            (LocationContent(latitude=0, longitude=0), ["address", "label"]),
        ],
    )
    def test_label_and_address_are_checked(
        self, location: LocationContent, fields: list[str]
    ) -> None:
        """Blank, over-long or missing text is refused: Twilio sends a location with a Body."""
        assert refused(location).details["fields"] == fields

    def test_a_caption_is_refused_on_a_location(self) -> None:
        error = refused(LocationContent(latitude=0, longitude=0, label="x"), caption="lost")
        assert error.details["fields"] == ["caption"]

    def test_a_schema_without_locations_refuses_them(self) -> None:
        schema = SCHEMA.without_content_types(ContentType.LOCATION)
        plan = plan_send(schema, SendConfig(), message(LocationContent(latitude=0, longitude=0)))
        assert isinstance(plan, ConnectorError)
        assert plan.code == "UNSUPPORTED_CONTENT_TYPE"


class TestWire:
    def test_persistent_action_is_a_repeated_key(self) -> None:
        request = CreateMessageRequest(
            to=RECIPIENT, from_=SENDER, body="b", persistent_action=("geo:1,2", "geo:3,4|x")
        )
        actions = [value for key, value in request.to_form() if key == "PersistentAction"]
        assert actions == ["geo:1,2", "geo:3,4|x"]

    def test_no_persistent_action_no_key(self) -> None:
        request = CreateMessageRequest(to=RECIPIENT, from_=SENDER, body="b")
        assert "PersistentAction" not in dict(request.to_form())


class TestModel:
    @pytest.mark.parametrize(
        ("action", "ok"),
        [
            ("geo:37.787890,-122.391664", True),
            ("geo:+1,-2|Label | with bar", True),
            ("geo:90,180", True),
            ("geo:90.0001,0", False),
            ("geo:0,180.5", False),
            ("geo:1,2|", False),
            ("geo:1e3,2", False),
            ("geo: 1,2", False),
            ("location:1,2", False),
        ],
    )
    def test_geo_actions(self, action: str, ok: bool) -> None:
        assert is_geo_action(action) is ok

    def test_the_pin_is_kept_beside_twilios_json(self) -> None:
        """Twilio's Message JSON has no PersistentAction; the model's record and dump keep it."""
        model = TwilioModel()
        form = [("To", RECIPIENT), ("From", SENDER), ("Body", "b"), ("PersistentAction", "geo:1,2")]
        reply = model.create_message(model.main_account.sid, form)
        assert reply.status == 201
        assert reply.body is not None
        assert "persistent_action" not in reply.body
        (dumped,) = model.dump()
        assert dumped["persistent_action"] == ["geo:1,2"]
