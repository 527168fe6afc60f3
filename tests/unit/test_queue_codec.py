"""A message and a send result survive the outbound queue's JSON exactly (``wire.queued``).

The queue keeps a message as text until a worker elsewhere rebuilds it, and
the send ledger knows a message by its id and content: a worker must get the
very message that was submitted, or a redelivery would be another message.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratatosk.domain.content import (
    ButtonReplyContent,
    LocationContent,
    MediaContent,
    MediaType,
    MultipartContent,
    TemplateContent,
    TextContent,
)
from ratatosk.domain.endpoint import Endpoint, EndpointType
from ratatosk.domain.errors import MessagingErrorCodes
from ratatosk.domain.message import Message
from ratatosk.domain.result import ConnectorError, ConnectorResult, SendResult
from ratatosk.domain.status import MessageStatus
from ratatosk.twilio.wire.queued import (
    message_from_data,
    message_to_data,
    result_from_data,
    result_to_data,
)

texts = st.text(max_size=30)
#: Naive, or with a fixed UTC offset: what the JSON form keeps exactly (a named zone is
#: tested on its own below: it comes back as its offset at that moment).
offsets = st.timedeltas(min_value=dt.timedelta(hours=-23), max_value=dt.timedelta(hours=23))
times = st.datetimes(timezones=st.one_of(st.none(), st.builds(dt.timezone, offsets)))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    texts,
)
values = st.recursive(
    st.one_of(scalars, times, st.dates()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(texts, inner, max_size=3),
    ),
    max_leaves=8,
)
endpoints = st.builds(Endpoint, st.sampled_from(EndpointType), texts)
simple_contents = st.one_of(
    st.builds(TextContent, texts),
    st.builds(
        MediaContent,
        st.sampled_from(MediaType),
        st.none() | texts,
        texts,
        mime_type=st.none() | texts,
    ),
    st.builds(
        TemplateContent,
        texts,
        st.dictionaries(texts, values, max_size=3),
        language=st.none() | texts,
    ),
    st.builds(
        LocationContent,
        latitude=st.floats(allow_nan=False),
        longitude=st.floats(allow_nan=False),
        address=st.none() | texts,
        label=st.none() | texts,
    ),
)
contents = st.one_of(
    simple_contents,
    st.builds(ButtonReplyContent, text=texts, payload=st.none() | texts),
    st.builds(
        MultipartContent,
        parts=st.lists(simple_contents, max_size=3).map(tuple),
        text=st.none() | texts,
    ),
)
properties = st.dictionaries(
    texts, st.one_of(values, st.builds(TemplateContent, texts, st.just({}))), max_size=4
)
messages = st.builds(
    Message,
    id=texts,
    sender=st.none() | endpoints,
    receiver=st.none() | endpoints,
    content=st.none() | contents,
    properties=properties,
    timestamp=st.none() | times,
)


@given(st.datetimes(timezones=st.timezones()))
def test_a_time_in_a_named_zone_comes_back_as_the_same_wall_time_and_offset(
    at: dt.datetime,
) -> None:
    """The zone's name is not kept; the wall time and its UTC offset at that moment are, so
    the instant is the same even in a DST gap or fold (where zone-aware equality is False)."""
    data = message_to_data(Message(id="m", timestamp=at, properties={"at": at}))
    assert not isinstance(data, ConnectorError)
    back = message_from_data(through_text(data))
    for time in (back.timestamp, back.properties["at"]):
        assert isinstance(time, dt.datetime)
        assert time.replace(tzinfo=None) == at.replace(tzinfo=None)
        assert time.utcoffset() == at.utcoffset()


def through_text(data: Any) -> Any:
    """What a store gives back: the JSON text a shared store keeps, read again."""
    return json.loads(json.dumps(data))


@given(messages)
def test_a_message_comes_back_equal_and_with_the_same_types(message: Message) -> None:
    """decode(json(encode(m))) == m, and a property's type survives (a tuple stays a tuple)."""
    data = message_to_data(message)
    assert not isinstance(data, ConnectorError)
    back = message_from_data(through_text(data))
    assert back == message
    assert isinstance(back, Message)
    for name, value in message.properties.items():
        assert type(back.properties[name]) is type(value)
    assert message_to_data(back) == data


@given(st.sampled_from([math.inf, -math.inf, math.nan]))
def test_non_finite_floats_travel_as_tagged_text(number: float) -> None:
    """JSON has no NaN or infinity: they are tagged, and come back as floats."""
    message = Message(id="m", properties={"x": number})
    data = message_to_data(message)
    assert not isinstance(data, ConnectorError)
    text = json.dumps(data, allow_nan=False)  # strict JSON: no bare NaN
    back = message_from_data(json.loads(text))
    assert isinstance(back, Message)
    kept = back.properties["x"]
    assert isinstance(kept, float)
    assert repr(kept) == repr(number)


def test_a_value_with_no_json_form_is_refused_when_encoded() -> None:
    message = Message(id="m-1", properties={"handle": object()})
    refused = message_to_data(message)
    assert isinstance(refused, ConnectorError)
    assert refused.code == MessagingErrorCodes.MESSAGE_SERIALIZATION_FAILED
    assert refused.details["message_id"] == "m-1"
    assert "object" in refused.message


@given(
    st.one_of(
        st.none(),
        st.integers(),
        texts,
        st.lists(texts),
        st.dictionaries(texts, texts),
        st.just({"v": 2, "id": "x"}),
        st.just({"v": 1, "id": "x", "content": {"kind": "hologram"}}),
        st.just({"v": 1, "id": "x", "properties": {"a": [1, 2]}}),
        st.just({"v": 1, "id": "x", "properties": {"a": {"$": "list"}}}),
        st.just({"v": 1, "id": 7}),
    )
)
def test_damaged_data_is_a_coded_error_never_an_exception(data: Any) -> None:
    back = message_from_data(data)
    assert isinstance(back, ConnectorError)
    assert back.code == MessagingErrorCodes.MESSAGE_DESERIALIZATION_FAILED


@given(
    st.builds(
        SendResult,
        message_id=texts,
        provider_message_id=texts,
        status=st.sampled_from(MessageStatus),
        timestamp=times,
        data=st.dictionaries(texts, st.one_of(st.none(), st.booleans(), st.integers(), texts)),
    )
)
def test_a_send_result_comes_back_equal(sent: SendResult) -> None:
    result: ConnectorResult[SendResult] = ConnectorResult.success(sent)
    data = through_text(result_to_data(sent.message_id, result))
    assert result_from_data(data) == result


@pytest.mark.parametrize("micros", [1, -1, 999_999, -999_999])
def test_an_offset_under_a_second_comes_back_exact(micros: int) -> None:
    """CPython's C ``fromisoformat`` reads ``+00:00:00.000001`` as UTC (gh-152079):
    the codec keeps the offset, so the instant a worker sees is the one submitted."""
    at = dt.datetime(2000, 1, 1, tzinfo=dt.timezone(dt.timedelta(microseconds=micros)))
    sent = SendResult(
        message_id="m", provider_message_id="SM1", status=MessageStatus.QUEUED, timestamp=at
    )
    result: ConnectorResult[SendResult] = ConnectorResult.success(sent)
    back = result_from_data(through_text(result_to_data("m", result)))
    assert back.value is not None
    assert back.value.timestamp.utcoffset() == dt.timedelta(microseconds=micros)
    message = message_from_data(through_text(message_to_data(Message(id="m", timestamp=at))))
    assert message.timestamp is not None
    assert message.timestamp.utcoffset() == dt.timedelta(microseconds=micros)


@given(st.builds(ConnectorError, code=texts, message=texts, domain=texts, provider_code=st.none()))
def test_a_coded_error_comes_back_equal(failure: ConnectorError) -> None:
    failure = failure.with_details(attempts=2, reconciled=False, when="2026-01-01")
    result: ConnectorResult[SendResult] = ConnectorResult.failure(failure)
    assert result_from_data(through_text(result_to_data("m", result))) == result


def test_a_damaged_result_is_a_coded_error() -> None:
    back = result_from_data({"message_id": "m", "sid": "SM1", "status": "nonsense"})
    assert back.error is not None
    assert back.error.code == MessagingErrorCodes.MESSAGE_DESERIALIZATION_FAILED
    sent = result_from_data(
        {
            "message_id": "m",
            "sid": "SM1",
            "status": "Sent",
            "timestamp": "2026-05-01T10:00:00+00:00",
        }
    )
    assert sent.value is not None
    assert sent.value.timestamp == dt.datetime(2026, 5, 1, 10, tzinfo=dt.UTC)
