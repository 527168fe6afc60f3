"""Properties of the pure Twilio codec: total decoders, faithful round trips, coded errors.

Decoders take any bytes, text or JSON and answer values or coded failures
(``WireError`` where the codec documents it); every ``ConnectorError`` code
comes from a catalog, in its catalog's domain. Message resources generated
from the OpenAPI contract decode without losing a field, and the Create
Message form and ContentVariables keep what the request said.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import math
import re
import string
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

import attrs
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from openapi_contracts import MESSAGING, load_contract
from ratatosk.domain.content import (
    ButtonReplyContent,
    ContentType,
    LocationContent,
    MediaContent,
    MediaType,
    MultipartContent,
    TemplateContent,
    TextContent,
)
from ratatosk.domain.endpoint import Endpoint, EndpointType, parse_whatsapp_number
from ratatosk.domain.errors import MessagingErrorCodes, catalog
from ratatosk.domain.message import Message, MessageBuilder
from ratatosk.domain.result import ConnectorError, ConnectorResult, ReceiveResult, StatusUpdate
from ratatosk.domain.schema import Capability, is_absolute_http_url
from ratatosk.domain.source import MessageSource, SourceFormat
from ratatosk.domain.status import MessageStatus
from ratatosk.ports import ApiError, CreateMessageRequest, MessageResource
from ratatosk.testing import inbound_forms, invalid_whatsapp_numbers, whatsapp_numbers
from ratatosk.twilio import wire
from ratatosk.twilio.errors import TwilioErrorCodes
from ratatosk.twilio.outbound import SendConfig, SendPlan, encode_variables, plan_send
from ratatosk.twilio.schema import (
    CONTENT_SID_PATTERN,
    MAX_BODY_LENGTH,
    TwilioChannelSchemas,
)

WHATSAPP = TwilioChannelSchemas.TWILIO_WHATSAPP
CATALOGS = {
    MessagingErrorCodes.DOMAIN: catalog(MessagingErrorCodes),
    TwilioErrorCodes.DOMAIN: catalog(TwilioErrorCodes),
}
ADDRESS = re.compile(r"whatsapp:\+[1-9][0-9]{1,14}")
NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


def assert_coded(error: ConnectorError) -> None:
    """The code is in the catalog of the error's domain, and the message says something."""
    assert error.domain in CATALOGS, error
    assert error.code in CATALOGS[error.domain], error
    assert isinstance(error.message, str)
    assert error.message


def assert_result(result: object) -> None:
    assert isinstance(result, ConnectorResult)
    assert (result.value is None) != (result.error is None)
    if result.error is not None:
        assert_coded(result.error)


# --- strategies ---------------------------------------------------------------------------

text = st.text(st.characters(exclude_categories=["Cs"]))
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
odd_numbers = st.sampled_from(
    ["", " ", "0", "1", "2", "10", "99", "-1", "²", "٣", "1e999", "nan", "inf", "9" * 5000, " 7 "]
)
TWILIO_KEYS = [
    "MessageSid",
    "SmsSid",
    "From",
    "To",
    "Body",
    "NumMedia",
    "MediaUrl0",
    "MediaContentType0",
    "MediaUrl1",
    "Latitude",
    "Longitude",
    "Address",
    "Label",
    "ButtonText",
    "ButtonPayload",
    "ProfileName",
    "MessageStatus",
    "SmsStatus",
    "ErrorCode",
    "ErrorMessage",
    "ChannelStatusMessage",
]
form_values = (
    text | odd_numbers | whatsapp_numbers() | st.sampled_from(sorted(wire.TWILIO_STATUS_MAP))
)
forms = st.dictionaries(
    st.sampled_from(TWILIO_KEYS) | text, st.lists(form_values, min_size=0, max_size=3), max_size=12
)


def form_body(form: Mapping[str, Sequence[str]]) -> str:
    return urlencode([(key, value) for key, values in form.items() for value in values])


@st.composite
def webhook_sources(draw: st.DrawFn) -> MessageSource:
    """Webhook bodies of every format: forms, JSON (objects, lists, junk) and raw noise."""
    kind = draw(st.sampled_from(["form", "json-form", "json", "text", "bytes"]))
    if kind == "form":
        body: str | bytes = form_body(draw(forms))
    elif kind == "json-form":
        items = draw(st.lists(forms.map(_jsonish), min_size=1, max_size=3))
        shape = draw(st.sampled_from(["object", "list", "Messages"]))
        doc: Any = items[0] if shape == "object" else items
        body = json.dumps({"Messages": doc} if shape == "Messages" else doc)
    elif kind == "json":
        body = json.dumps(draw(json_values))
    elif kind == "text":
        body = draw(st.text())
    else:
        body = draw(st.binary())
    fmt = draw(st.sampled_from(SourceFormat))
    return MessageSource(
        fmt, body, draw(st.none() | st.sampled_from([f.value for f in SourceFormat]))
    )


def _jsonish(form: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    return {k: (v[0] if len(v) == 1 else v) for k, v in form.items()}


# --- totality -----------------------------------------------------------------------------


class TestWebhookDecodersAreTotal:
    """Any webhook body decodes to messages or one coded error."""

    @given(webhook_sources())
    @example(MessageSource.url_post("MessageSid=SM1&From=a&To=b&NumMedia=%C2%B2"))
    @example(MessageSource.url_post("MessageSid=SM1&From=a&To=b&NumMedia=" + "9" * 5000))
    @example(MessageSource.url_post("MessageSid=SM1&From=a&To=b&Latitude=1e999&Longitude=0"))
    @example(MessageSource.json("[" * 100_000))
    @example(MessageSource.json('{"Messages": ' + "[" * 100_000))
    @example(MessageSource.url_post(b"\xff\xfe=%FF"))
    def test_decode_receive(self, source: MessageSource) -> None:
        """A result with a value or a catalogued code; decoded messages are well formed."""
        result = wire.decode_receive(source)
        assert_result(result)
        if result.value is None:
            return
        assert isinstance(result.value, ReceiveResult)
        for message in result.value.messages:
            assert isinstance(message, Message)
            assert message.id
            for endpoint in (message.sender, message.receiver):
                assert isinstance(endpoint, Endpoint)
                assert endpoint.type is EndpointType.PHONE_NUMBER
                assert endpoint.address
            assert message.content is not None
            for value in message.properties.values():
                assert isinstance(value, str | tuple)

    @given(webhook_sources())
    @example(MessageSource.url_post("MessageSid=SM1&MessageStatus=sent&ErrorCode=%C2%B2"))
    @example(MessageSource.url_post("MessageSid=SM1&MessageStatus=sent&ErrorCode=" + "9" * 5000))
    @example(MessageSource.json("[" * 100_000))
    def test_decode_status(self, source: MessageSource) -> None:
        """A status update or a catalogued code; the status is the mapped Twilio status."""
        result = wire.decode_status(source, NOW)
        assert_result(result)
        if result.value is not None:
            update = result.value
            assert isinstance(update, StatusUpdate)
            assert update.message_id
            assert update.timestamp == NOW
            assert update.status is wire.map_status(update.data["twilio_status"])
            assert update.error_code is None or update.error_code >= 0

    @pytest.mark.parametrize("decode", ["receive", "status"])
    def test_deeply_nested_json_at_every_depth(self, decode: str) -> None:
        """Nesting up to and past the recursion limit gives coded errors, never RecursionError.

        The sweep covers the depths where ``json.loads`` still succeeds but
        re-encoding a nested value would not, wherever the stack happens to be.
        """
        for depth in range(1, 1200):
            nested = "[" * depth + "]" * depth
            body = f'{{"MessageSid":"SM1","MessageStatus":"sent","From":"a","To":"b","x":{nested}}}'
            source = MessageSource.json(body)
            if decode == "receive":
                assert_result(wire.decode_receive(source))
            else:
                assert_result(wire.decode_status(source, NOW))

    def test_media_count_does_not_drive_the_work(self) -> None:
        """A huge NumMedia cannot make the decoder look up more fields than the form has."""

        class CountingForm(dict[str, list[str]]):
            lookups = 0

            def get(self, key: str, default: Any = None) -> Any:
                type(self).lookups += 1
                assert type(self).lookups < 1000, "decoder is looping on NumMedia"
                return super().get(key, default)

        for declared in ["99", "10" * 8, "9" * 30, "9" * 5000]:
            CountingForm.lookups = 0
            form = CountingForm(
                MessageSid=["SM1"], From=["a"], To=["b"], NumMedia=[declared], MediaUrl0=["u"]
            )
            message = wire.decode_inbound(form)
            assert isinstance(message, Message)
            assert isinstance(message.content, MediaContent)


class TestRestDecodersAreTotal:
    """REST answers: a resource, or WireError (the codec's documented refusal)."""

    @given(json_values)
    def test_decode_message(self, data: object) -> None:
        """Any JSON value gives a MessageResource or a WireError."""
        try:
            resource = wire.decode_message(data)
        except wire.WireError:
            return
        assert isinstance(resource, MessageResource)
        assert resource.sid
        assert resource.account_sid

    @given(json_values)
    def test_decode_page_and_account(self, data: object) -> None:
        """Pages and accounts: a value or a WireError."""
        for decode in (wire.decode_message_page, wire.decode_account):
            with contextlib.suppress(wire.WireError):
                decode(data)

    @given(st.binary() | st.text())
    @example(b"[" * 100_000)
    @example("{" * 100_000)
    @example(b'{"a": 1' + b"0" * 5000 + b"}")
    def test_decode_json(self, raw: bytes | str) -> None:
        """Bytes or text decode to a value or raise WireError, never a decoder exception."""
        with contextlib.suppress(wire.WireError):
            wire.decode_json(raw)

    @given(st.integers(100, 599), json_values, st.none() | text | odd_numbers)
    @example(429, {"code": 20429, "message": "Too Many Requests"}, "3")
    @example(400, {"code": True, "message": ""}, None)
    @example(400, {"code": "21211", "message": 5}, "Fri, 31 Dec 9999 23:30:00 -0100")
    def test_decode_api_error(self, status: int, data: object, retry_after: str | None) -> None:
        """Always an ApiError with the HTTP status, a message, and a usable code."""
        error = wire.decode_api_error(status, data, retry_after)
        assert isinstance(error, ApiError)
        assert error.status == status
        assert isinstance(error.message, str)
        assert error.message
        assert error.code is None or (
            isinstance(error.code, int) and not isinstance(error.code, bool)
        )
        if isinstance(data, Mapping) and type(data.get("code")) is int:
            assert error.code == data["code"]
        assert error.retry_after is None or error.retry_after >= 0

    @given(st.one_of(text, json_values, st.datetimes()))
    @example("Fri, 31 Dec 9999 23:30:00 -0100")
    @example("Mon, 01 Jan 0001 00:00:00 +0100")
    @example("Thu, 24 Aug 2023 05:01:45 +0000")
    @example("Thu, 24 Aug 2023 05:01:45")
    @example("Thu, 99 Aug 2023 05:01:45 +0000")
    def test_parse_rfc2822(self, value: object) -> None:
        """None or an aware UTC datetime, for anything at all."""
        parsed = wire.parse_rfc2822(value)
        assert parsed is None or parsed.utcoffset() == dt.timedelta(0)

    @given(
        st.none()
        | text
        | odd_numbers
        | st.datetimes(timezones=st.just(dt.UTC)).map(wire.format_rfc2822)
    )
    @example("Fri, 31 Dec 9999 23:30:00 -0100")
    @example("9" * 400)
    @example("1.5")
    @example("-3")
    def test_parse_retry_after(self, value: str | None) -> None:
        """None or a non-negative number of seconds, never NaN."""
        seconds = wire.parse_retry_after(value)
        if seconds is not None:
            assert isinstance(seconds, float)
            assert not math.isnan(seconds)
            assert seconds >= 0

    @given(st.integers(0, 10**9))
    def test_retry_after_delta_seconds(self, seconds: int) -> None:
        """A delta-seconds header is read exactly."""
        assert wire.parse_retry_after(f" {seconds} ") == float(seconds)


# --- contract round trips ----------------------------------------------------------------


@functools.cache
def _message_validator() -> Any:
    from openapi_schema_validator import OAS30Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    registry = Registry().with_resource(
        "urn:twilio-api",
        Resource.from_contents(load_contract(MESSAGING), default_specification=DRAFT4),
    )
    ref = {"$ref": "urn:twilio-api#/components/schemas/api.v2010.account.message"}
    return OAS30Validator(ref, registry=registry)


def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = load_contract(MESSAGING)["components"]["schemas"][name]
    return schema


def _enum(name: str) -> list[str]:
    values: list[str] = _schema(name)["enum"]
    return values


def _hex(prefix: str) -> st.SearchStrategy[str]:
    return st.integers(0, 2**128 - 1).map(lambda n: f"{prefix}{n:032x}")


def _nullable(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


instants = st.datetimes(
    min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(dt.UTC)
)


@st.composite
def message_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A Message resource JSON as the contract describes it (create, fetch or list item)."""
    sid = draw(_hex("SM") | _hex("MM"))
    account = draw(_hex("AC"))
    numbers = whatsapp_numbers()
    return {
        "sid": sid,
        "account_sid": account,
        "status": draw(st.sampled_from(_enum("message_enum_status"))),
        "direction": draw(st.sampled_from(_enum("message_enum_direction"))),
        "to": draw(_nullable(numbers)),
        "from": draw(_nullable(numbers)),
        "body": draw(_nullable(text)),
        "messaging_service_sid": draw(_nullable(_hex("MG"))),
        "num_segments": draw(_nullable(st.integers(0, 10).map(str))),
        "num_media": draw(_nullable(st.integers(0, 10).map(str))),
        "price": draw(_nullable(st.decimals(-1, 0, places=5).map(str))),
        "price_unit": draw(_nullable(st.sampled_from(["USD", "EUR", "usd"]))),
        "error_code": draw(_nullable(st.integers(0, 99999))),
        "error_message": draw(_nullable(text)),
        "date_created": draw(_nullable(instants.map(wire.format_rfc2822))),
        "date_sent": draw(_nullable(instants.map(wire.format_rfc2822))),
        "date_updated": draw(_nullable(instants.map(wire.format_rfc2822))),
        "api_version": "2010-04-01",
        "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
        "subresource_uris": {"media": f"/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json"},
    }


def _opt_int(text_value: str | None) -> int | None:
    return None if text_value is None else int(text_value)


class TestMessageResourceRoundTrip:
    """Contract-shaped JSON decodes with every field kept."""

    @settings(max_examples=5)
    @given(message_documents())
    def test_generator_covers_the_contract(self, doc: dict[str, Any]) -> None:
        """The generated documents name every property the contract's Message has."""
        assert set(_schema("api.v2010.account.message")["properties"]) == set(doc)

    @given(message_documents())
    def test_decode_message_keeps_every_field(self, doc: dict[str, Any]) -> None:
        """sid, numbers, counts, prices, error, dates and uri survive decoding."""
        _message_validator().validate(doc)
        resource = wire.decode_message(json.loads(json.dumps(doc)))
        assert resource.sid == doc["sid"]
        assert resource.account_sid == doc["account_sid"]
        assert resource.status == doc["status"]
        assert wire.map_status(resource.status) is not MessageStatus.UNKNOWN
        assert resource.direction == doc["direction"]
        assert resource.to == (doc["to"] or "")
        assert resource.from_ == doc["from"]
        assert resource.body == doc["body"]
        assert resource.messaging_service_sid == doc["messaging_service_sid"]
        assert resource.num_segments == _opt_int(doc["num_segments"])
        assert resource.num_media == _opt_int(doc["num_media"])
        assert (resource.price, resource.price_unit) == (doc["price"], doc["price_unit"])
        assert (resource.error_code, resource.error_message) == (
            doc["error_code"],
            doc["error_message"],
        )
        for field in ("date_created", "date_sent", "date_updated"):
            expected = None if doc[field] is None else email_date(doc[field])
            assert getattr(resource, field) == expected
        assert resource.uri == doc["uri"]

    @settings(max_examples=max(50, settings().max_examples // 4))
    @given(
        st.lists(message_documents(), max_size=3), _nullable(st.just("/2010-04-01/x?PageToken=PA1"))
    )
    def test_decode_page_keeps_order(
        self, docs: list[dict[str, Any]], next_uri: str | None
    ) -> None:
        """A list page decodes every message, in order, and its next page link."""
        page = wire.decode_message_page({"messages": docs, "next_page_uri": next_uri})
        assert [m.sid for m in page.messages] == [d["sid"] for d in docs]
        assert page.next_page_uri == next_uri


def email_date(value: str) -> dt.datetime:
    parsed = wire.parse_rfc2822(value)
    assert parsed is not None
    return parsed


class TestStatuses:
    """Every Twilio status maps to a kernel status; nothing else does."""

    def test_contract_statuses_are_all_mapped(self) -> None:
        """The contract's status enum is exactly the map's keys (a new status fails here)."""
        assert set(_enum("message_enum_status")) == set(wire.TWILIO_STATUS_MAP)

    @pytest.mark.parametrize("status", sorted(wire.TWILIO_STATUS_MAP))
    def test_each_status_maps_without_losing_meaning(self, status: str) -> None:
        """Known statuses never map to UNKNOWN, whatever their case or padding."""
        mapped = wire.map_status(status)
        assert mapped is not MessageStatus.UNKNOWN
        assert wire.map_status(f" {status.upper()} ") is mapped
        form = form_body({"MessageSid": ["SM1"], "MessageStatus": [status]})
        decoded = wire.decode_status(MessageSource.url_post(form), NOW).unwrap()
        assert decoded.status is mapped

    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            ("read", MessageStatus.READ),
            ("delivered", MessageStatus.DELIVERED),
            ("sending", MessageStatus.SENDING),
            ("sent", MessageStatus.SENT),
            ("failed", MessageStatus.DELIVERY_FAILED),
            ("undelivered", MessageStatus.DELIVERY_FAILED),
            ("canceled", MessageStatus.CANCELED),
            ("scheduled", MessageStatus.SCHEDULED),
            ("partially_delivered", MessageStatus.PARTIALLY_DELIVERED),
            ("received", MessageStatus.RECEIVED),
        ],
    )
    def test_statuses_the_sibling_got_wrong(self, status: str, expected: MessageStatus) -> None:
        """read is Read (not Delivered), sending is Sending, and the rest keep their meaning."""
        assert wire.map_status(status) is expected

    @given(st.none() | text)
    def test_unknown_statuses_are_unknown(self, status: str | None) -> None:
        """Anything that is not a Twilio status maps to UNKNOWN."""
        assume(status is None or status.strip().lower() not in wire.TWILIO_STATUS_MAP)
        assert wire.map_status(status) is MessageStatus.UNKNOWN


class TestDates:
    """RFC 2822 dates as Twilio writes them."""

    offsets = st.builds(
        dt.timezone,
        st.timedeltas(
            min_value=dt.timedelta(hours=-23, minutes=-59),
            max_value=dt.timedelta(hours=23, minutes=59),
        ),
    )

    @given(
        st.datetimes(
            min_value=dt.datetime(1000, 1, 2),
            max_value=dt.datetime(9999, 12, 30),
            timezones=offsets,
        )
    )
    @example(dt.datetime(2023, 8, 24, 5, 1, 45, tzinfo=dt.UTC))
    def test_format_then_parse_is_identity_to_the_second(self, value: dt.datetime) -> None:
        """parse(format(d)) is d in UTC without its microseconds, and looks like Twilio's."""
        formatted = wire.format_rfc2822(value)
        assert re.fullmatch(
            r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d \+0000",
            formatted,
        )
        expected = value.astimezone(dt.UTC).replace(microsecond=0)
        assert wire.parse_rfc2822(formatted) == expected

    def test_twilio_example(self) -> None:
        """The contract's own example date."""
        assert wire.parse_rfc2822("Thu, 24 Aug 2023 05:01:45 +0000") == dt.datetime(
            2023, 8, 24, 5, 1, 45, tzinfo=dt.UTC
        )


# --- the Create Message form ----------------------------------------------------------------

form_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
requests = st.builds(
    CreateMessageRequest,
    to=form_text,
    from_=_nullable(form_text),
    messaging_service_sid=_nullable(_hex("MG")),
    body=_nullable(form_text),
    media_urls=st.lists(form_text, max_size=4).map(tuple),
    content_sid=_nullable(_hex("HX")),
    content_variables=_nullable(form_text),
    status_callback=_nullable(form_text),
    validity_period=_nullable(st.integers(1, 36000)),
)
FORM_ORDER = [
    "To",
    "From",
    "MessagingServiceSid",
    "Body",
    "MediaUrl",
    "ContentSid",
    "ContentVariables",
    "StatusCallback",
    "ValidityPeriod",
]


class TestCreateMessageForm:
    """``to_form`` is exactly the request's fields, MediaUrl repeated in order."""

    @given(requests)
    def test_to_form_keeps_every_field(self, request: CreateMessageRequest) -> None:
        """Each set field appears once (MediaUrl once per URL, in order); unset ones never."""
        form = request.to_form()
        keys = [key for key, _ in form]
        assert keys == sorted(keys, key=FORM_ORDER.index)
        values = dict(form)
        assert [v for k, v in form if k == "MediaUrl"] == list(request.media_urls)
        expected = {
            "To": request.to,
            "From": request.from_,
            "MessagingServiceSid": request.messaging_service_sid,
            "Body": request.body,
            "ContentSid": request.content_sid,
            "ContentVariables": request.content_variables,
            "StatusCallback": request.status_callback,
            "ValidityPeriod": None
            if request.validity_period is None
            else str(request.validity_period),
        }
        for key, value in expected.items():
            assert keys.count(key) == (value is not None)
            assert values.get(key) == value

    @given(requests)
    def test_form_survives_url_encoding(self, request: CreateMessageRequest) -> None:
        """Encoded as Twilio receives it and parsed back, the pairs are the same, in order."""
        form = request.to_form()
        assert parse_qsl(urlencode(form), keep_blank_values=True) == form
        assert wire.parse_form(urlencode(form)).get("MediaUrl", []) == list(request.media_urls)


# --- ContentVariables ---------------------------------------------------------------------------

variable_names = st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=16)
good_values = st.one_of(
    st.text(min_size=1, max_size=50).filter(str.strip),
    st.integers(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.dates(),
    st.datetimes(),
)
bad_values = st.one_of(
    st.none(),
    st.just(""),
    st.just("   "),
    st.just(float("nan")),
    st.just(float("inf")),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just("x" * (MAX_BODY_LENGTH + 1)),
)
bad_names = st.text(max_size=20).filter(lambda s: not re.fullmatch(r"[A-Za-z0-9_]{1,16}", s))


def _expected_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return str(value.isoformat())  # type: ignore[attr-defined]


class TestContentVariables:
    """Template parameters become a JSON object of strings, or a precise refusal."""

    @given(st.dictionaries(variable_names, good_values, min_size=1, max_size=20))
    def test_good_parameters_encode_as_a_json_object_of_strings(
        self, params: dict[str, object]
    ) -> None:
        """Every key kept, every value a string equal to its documented rendering."""
        encoded = encode_variables(params)
        assert isinstance(encoded, str)
        decoded = json.loads(encoded)
        assert isinstance(decoded, dict)
        assert all(isinstance(v, str) for v in decoded.values())
        assert decoded == {k: _expected_text(v) for k, v in params.items()}

    @given(
        st.dictionaries(variable_names, good_values, max_size=5),
        st.dictionaries(variable_names, bad_values, min_size=1, max_size=3)
        | st.dictionaries(bad_names, good_values, min_size=1, max_size=3),
    )
    def test_bad_parameters_are_all_named(
        self, good: dict[str, object], bad: dict[str, object]
    ) -> None:
        """A refusal is INVALID_MESSAGE and lists exactly the bad names."""
        params = {k: v for k, v in good.items() if k not in bad} | bad
        refused = encode_variables(params)
        assert isinstance(refused, ConnectorError)
        assert_coded(refused)
        assert refused.code == TwilioErrorCodes.INVALID_MESSAGE
        assert refused.details["fields"] == sorted(bad)

    def test_empty_and_too_many(self) -> None:
        """No parameters means no ContentVariables; more than 100 is refused."""
        assert encode_variables({}) is None
        too_many = encode_variables({str(i): "x" for i in range(101)})
        assert isinstance(too_many, ConnectorError)
        assert too_many.code == TwilioErrorCodes.INVALID_MESSAGE
        assert isinstance(encode_variables({str(i): "x" for i in range(100)}), str)

    @given(_hex("HX"), st.dictionaries(variable_names, good_values, max_size=5))
    def test_template_send_carries_the_variables(self, sid: str, params: dict[str, object]) -> None:
        """A template plans a ContentSid request whose ContentVariables encode its parameters."""
        message = (
            MessageBuilder()
            .from_phone("whatsapp:+14155238886")
            .to_phone("whatsapp:+15550002222")
            .with_template(TemplateContent(sid, params))
            .build()
        )
        plan = plan_send(WHATSAPP, SendConfig(), message)
        assert isinstance(plan, SendPlan)
        assert plan.request.content_sid == sid
        assert plan.request.content_variables == encode_variables(params)
        assert plan.request.body is None
        assert plan.request.media_urls == ()


# --- send planning ----------------------------------------------------------------------------

addresses = (
    whatsapp_numbers()
    | invalid_whatsapp_numbers()
    | text
    | st.sampled_from(
        [
            "whatsapp:+1 (555) 000-2222",
            "+15550002222",
            " whatsapp:+15550002222 ",
            "whatsapp:+15550002222",
        ]
    )
)
contents = st.one_of(
    st.none(),
    st.builds(TextContent, text | st.text(min_size=1600, max_size=1601)),
    st.builds(
        MediaContent,
        st.sampled_from(MediaType),
        st.none(),
        st.sampled_from(
            ["https://example.com/a.jpg", "http://x/y.png", "ftp://x/y", "", "/rel.png"]
        )
        | text,
    ),
    st.builds(
        TemplateContent,
        _hex("HX") | st.sampled_from(["order_confirmed", "", "  "]) | text,
        st.dictionaries(variable_names | bad_names, good_values | bad_values, max_size=3),
    ),
    st.builds(LocationContent, latitude=st.floats(), longitude=st.floats()),
    st.builds(ButtonReplyContent, text=text),
    st.just(MultipartContent(parts=(TextContent("a"),))),
)
properties = st.dictionaries(
    st.sampled_from(["caption", "ValidityPeriod", "other"]),
    st.none()
    | text
    | st.integers()
    | st.booleans()
    | st.sampled_from(["600", "0", "36001", " 5 "]),
    max_size=3,
)
schemas = st.sampled_from(
    [
        WHATSAPP,
        WHATSAPP.without_capabilities(Capability.MEDIA_ATTACHMENTS),
        WHATSAPP.without_capabilities(Capability.TEMPLATES),
        WHATSAPP.without_content_types(ContentType.PLAIN_TEXT),
    ]
)
configs = st.builds(
    SendConfig,
    default_from=_nullable(addresses),
    messaging_service_sid=_nullable(_hex("MG")),
    status_callback=_nullable(st.just("https://example.com/status")),
    strict_numbers=st.booleans(),
)


@st.composite
def outbound_messages(draw: st.DrawFn) -> Message:
    kind = st.sampled_from(EndpointType)
    sender = draw(st.none() | addresses.map(Endpoint.phone) | st.builds(Endpoint, kind, addresses))
    receiver = draw(
        st.none() | addresses.map(Endpoint.phone) | st.builds(Endpoint, kind, addresses)
    )
    return Message(
        id="m1",
        sender=sender,
        receiver=receiver,
        content=draw(contents),
        properties=draw(properties),
    )


class TestPlanSend:
    """Any message gives a valid request or a catalogued refusal, decided before any I/O."""

    @given(schemas, configs, outbound_messages())
    @example(
        WHATSAPP,
        SendConfig(),
        Message(
            receiver=Endpoint.phone("whatsapp:+15550002222"),
            sender=Endpoint.phone("whatsapp:+14155238886"),
            content=TextContent("x" * MAX_BODY_LENGTH),
            properties={"ValidityPeriod": " 600 "},
        ),
    )
    def test_plan_or_coded_refusal(self, schema: Any, config: SendConfig, message: Message) -> None:
        """A plan obeys Twilio's and WhatsApp's rules; a refusal has a catalogued code."""
        plan = plan_send(schema, config, message)
        if isinstance(plan, ConnectorError):
            assert_coded(plan)
            return
        assert isinstance(plan, SendPlan)
        request = plan.request
        assert message.receiver is not None
        assert (
            request.to
            == parse_whatsapp_number(message.receiver.address, strict=config.strict_numbers).address
        )
        assert ADDRESS.fullmatch(request.to)
        assert (request.from_ is None) != (request.messaging_service_sid is None)
        if request.from_ is not None:
            assert ADDRESS.fullmatch(request.from_)
        if request.body is not None:
            assert request.body.strip()
            assert len(request.body) <= MAX_BODY_LENGTH
        assert len(request.media_urls) <= 1
        assert all(is_absolute_http_url(url) for url in request.media_urls)
        if request.content_sid is not None:
            assert re.fullmatch(CONTENT_SID_PATTERN, request.content_sid)
        if plan.template is not None:
            assert request.content_sid is None
        assert (request.body, request.media_urls, request.content_sid, plan.template) != (
            None,
            (),
            None,
            None,
        )
        assert request.validity_period is None or 1 <= request.validity_period <= 36000
        assert request.status_callback == config.status_callback

    @pytest.mark.parametrize("value", [None, "message", {"to": "whatsapp:+15550002222"}])
    def test_non_messages_are_a_programming_error(self, value: object) -> None:
        """plan_send refuses anything but a Message with TypeError (documented)."""
        with pytest.raises(TypeError):
            plan_send(WHATSAPP, SendConfig(), value)  # type: ignore[arg-type]


# --- inbound webhooks round trip ------------------------------------------------------------------


class TestInboundRoundTrip:
    """Twilio-shaped inbound forms decode to the message Twilio described."""

    @given(inbound_forms(), st.sampled_from(["form", "json"]))
    def test_inbound_form_decodes_faithfully(self, form: dict[str, str], encoding: str) -> None:
        """Sid, numbers, text, media (in order), button and profile all come through."""
        if encoding == "form":
            source = MessageSource.url_post(urlencode(form))
        else:
            source = MessageSource.json(json.dumps(form))
        (message,) = wire.decode_receive(source).unwrap().messages
        assert message.id == form["MessageSid"]
        assert message.sender == Endpoint.phone(form["From"])
        assert message.receiver == Endpoint.phone(form["To"])
        assert message.properties["ProfileName"] == form["ProfileName"]
        urls = [form[f"MediaUrl{i}"] for i in range(int(form["NumMedia"]))]
        content = message.content
        if len(urls) == 1 and not form["Body"]:
            assert isinstance(content, MediaContent)
            assert content.url == urls[0]
            assert content.mime_type == form["MediaContentType0"]
        elif urls:
            assert isinstance(content, MultipartContent)
            assert [p.url for p in content.parts if isinstance(p, MediaContent)] == urls
            assert content.text == (form["Body"] or None)
        elif "ButtonPayload" in form:
            assert content == ButtonReplyContent(
                text=form["ButtonText"], payload=form["ButtonPayload"]
            )
        else:
            assert content == TextContent(form["Body"])

    @given(inbound_forms())
    def test_several_messages_in_one_json_body(self, form: dict[str, str]) -> None:
        """A ``Messages`` list decodes every message, in order."""
        second = dict(form, MessageSid="SM" + "f" * 32)
        body = json.dumps({"Messages": [form, second]})
        messages = wire.decode_receive(MessageSource.json(body)).unwrap().messages
        assert [m.id for m in messages] == [form["MessageSid"], "SM" + "f" * 32]


def _iter_errors(result: ConnectorResult[Any]) -> Iterator[ConnectorError]:
    if result.error is not None:
        yield result.error


class TestRefusalsAreCoded:
    """The specific codes the webhook decoders promise."""

    @pytest.mark.parametrize(
        ("source", "code"),
        [
            (MessageSource.json("{not json"), TwilioErrorCodes.RECEIVE_MESSAGE_FAILED),
            (MessageSource.json("[1, 2]"), MessagingErrorCodes.INVALID_WEBHOOK_DATA),
            (MessageSource.url_post("Body=hi"), MessagingErrorCodes.INVALID_WEBHOOK_DATA),
            (
                MessageSource(SourceFormat.OTHER, "x", "text/plain"),
                MessagingErrorCodes.UNSUPPORTED_CONTENT_TYPE,
            ),
        ],
    )
    def test_receive_codes(self, source: MessageSource, code: str) -> None:
        """Unreadable, misshapen, incomplete and unsupported bodies each get their code."""
        errors = list(_iter_errors(wire.decode_receive(source)))
        assert [e.code for e in errors] == [code]
        assert_coded(errors[0])

    @pytest.mark.parametrize(
        ("body", "code"),
        [
            ("{not json", TwilioErrorCodes.RECEIVE_STATUS_FAILED),
            ('{"MessageSid": "SM1"}', MessagingErrorCodes.INVALID_WEBHOOK_DATA),
            (
                '{"Messages": [{"MessageSid": "SM1", "MessageStatus": "sent"}, {}]}',
                MessagingErrorCodes.INVALID_WEBHOOK_DATA,
            ),
        ],
    )
    def test_status_codes(self, body: str, code: str) -> None:
        """A status callback without its sid or status, or with two statuses, is refused."""
        errors = list(_iter_errors(wire.decode_status(MessageSource.json(body), NOW)))
        assert [e.code for e in errors] == [code]


def test_attrs_results_are_frozen() -> None:
    """Decoded values cannot be changed after the fact."""
    resource = wire.decode_message({"sid": "SM1", "account_sid": "AC1", "status": "sent"})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        resource.status = "delivered"  # type: ignore[misc]
