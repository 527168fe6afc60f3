"""Properties of the pure kernel: schema checks are total, messages are values.

Validation takes anything a caller can hand it and answers with
:class:`FieldError` tuples, never an exception; the builder raises only
``TypeError`` for wrong Python types (documented) and ``build`` never raises;
a built :class:`Message` is an immutable, hashable value.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import attrs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ratatosk.domain.content import (
    ContentType,
    MediaContent,
    MediaType,
    TemplateContent,
    TextContent,
)
from ratatosk.domain.endpoint import Endpoint, EndpointType
from ratatosk.domain.message import Message, MessageBuilder
from ratatosk.domain.schema import (
    AuthenticationSpec,
    AuthenticationType,
    Capability,
    ChannelSchema,
    DataType,
    EndpointSpec,
    FieldError,
    ParameterSpec,
    PropertySpec,
    check_content_type,
    check_endpoint,
    validate_properties,
    validate_settings,
)
from ratatosk.domain.settings import ConnectionSettings, Secret
from ratatosk.twilio.schema import VALIDITY_PERIOD_RANGE, TwilioChannelSchemas

WHATSAPP = TwilioChannelSchemas.TWILIO_WHATSAPP
HUGE = 10**5000  # past CPython's 4300-digit limit for int -> str

# --- strategies -------------------------------------------------------------------------

names = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(),
    st.binary(max_size=8),
    st.datetimes(),
    st.builds(Secret, st.text()),
    st.sampled_from(["true", "false", "1", "0", " 42 ", "-7", "https://example.com/x", "ftp://x"]),
)
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=5), inner, max_size=3),
    ),
    max_leaves=8,
)
patterns = st.sampled_from([None, r"AC[0-9a-fA-F]{32}", r"\d+", r".*", r"[a-z]+", r"x|y"])

parameter_specs = st.builds(
    ParameterSpec,
    name=names,
    type=st.sampled_from(DataType),
    required=st.booleans(),
    sensitive=st.booleans(),
    pattern=patterns,
)
property_specs = st.builds(
    PropertySpec,
    name=names,
    type=st.sampled_from(DataType),
    required=st.booleans(),
    minimum=st.none() | st.integers(-100, 100),
    maximum=st.none() | st.integers(-100, 100),
)
endpoint_specs = st.builds(
    EndpointSpec,
    type=st.sampled_from(EndpointType),
    can_send=st.booleans(),
    can_receive=st.booleans(),
)


def _unique_by_name(specs: list[Any]) -> tuple[Any, ...]:
    return tuple({spec.name: spec for spec in specs}.values())


schemas = st.builds(
    ChannelSchema,
    provider=st.just("Test"),
    channel_type=st.just("Channel"),
    version=st.just("1"),
    display_name=st.just("Test channel"),
    capabilities=st.sampled_from(Capability),
    content_types=st.frozensets(st.sampled_from(ContentType)),
    endpoints=st.lists(endpoint_specs, max_size=3).map(tuple),
    parameters=st.lists(parameter_specs, max_size=6).map(_unique_by_name),
    authentication=st.just(AuthenticationSpec(type=AuthenticationType.NONE)),
    message_properties=st.lists(property_specs, max_size=6).map(_unique_by_name),
) | st.just(WHATSAPP)


@st.composite
def settings_for(draw: st.DrawFn, schema: ChannelSchema) -> ConnectionSettings:
    """Settings naming some of the schema's parameters (and others), with any values."""
    known = [p.name for p in schema.parameters]
    keys = draw(st.lists(st.sampled_from(known) | names, max_size=8)) if known else []
    values = {key: draw(junk) for key in keys}
    sensitive = (
        frozenset(draw(st.lists(st.sampled_from(keys), max_size=2))) if keys else frozenset()
    )
    return ConnectionSettings(parameters=values, sensitive=sensitive)


def _assert_field_errors(errors: object, allowed: set[str]) -> None:
    assert isinstance(errors, tuple)
    assert all(isinstance(e, FieldError) for e in errors)
    fields = [e.field for e in errors]
    assert set(fields) <= allowed
    assert len(fields) == len(set(fields)), "one error per field"
    assert all(isinstance(e.message, str) and e.message for e in errors)


# --- totality ------------------------------------------------------------------------------


class TestValidationIsTotal:
    """Any schema and any values give FieldError tuples, never an exception."""

    @given(st.data())
    def test_validate_settings(self, data: st.DataObject) -> None:
        """Every error names a declared parameter, once; missing required ones are named."""
        schema = data.draw(schemas)
        settings = data.draw(settings_for(schema))
        errors = validate_settings(schema, settings)
        _assert_field_errors(errors, {p.name for p in schema.parameters})
        named = {e.field for e in errors}
        for spec in schema.parameters:
            value = settings.get(spec.name)
            blank = value is None or (isinstance(value, str | Secret) and not str_of(value).strip())
            if spec.required and blank:
                assert spec.name in named

    @pytest.mark.parametrize(
        "value", [HUGE, -HUGE, float("nan"), float("inf")], ids=["huge", "-huge", "nan", "inf"]
    )
    @pytest.mark.parametrize("name", ["AccountSid", "StrictNumbers", "WebhookUrl", "FromNumber"])
    def test_validate_settings_odd_numbers(self, name: str, value: object) -> None:
        """Huge and non-finite numbers are reported, not raised (validation is total)."""
        settings = ConnectionSettings(parameters={name: value})
        _assert_field_errors(
            validate_settings(WHATSAPP, settings), {"AccountSid", "AuthToken", name}
        )

    @pytest.mark.parametrize("settings", [None, [], "AccountSid=AC1", 42])
    def test_validate_settings_on_non_mappings(self, settings: object) -> None:
        """Something that is not a mapping counts as empty settings: required ones are missing."""
        errors = validate_settings(WHATSAPP, settings)  # type: ignore[arg-type]
        assert {e.field for e in errors} == {"AccountSid", "AuthToken"}

    @given(schemas, st.dictionaries(names | st.sampled_from(["ValidityPeriod", "caption"]), junk))
    @example(WHATSAPP, {"ValidityPeriod": HUGE})
    @example(WHATSAPP, {"ValidityPeriod": -HUGE})
    @example(WHATSAPP, {"ValidityPeriod": [HUGE]})
    @example(WHATSAPP, {"ValidityPeriod": "9" * 19})
    def test_validate_properties(self, schema: ChannelSchema, properties: dict[str, Any]) -> None:
        """Every error names a declared property, once; required ones that are absent are named."""
        errors = validate_properties(schema, properties)
        _assert_field_errors(errors, {p.name for p in schema.message_properties})
        named = {e.field for e in errors}
        for spec in schema.message_properties:
            if spec.required and properties.get(spec.name) is None:
                assert spec.name in named

    @given(schemas, st.sampled_from(ContentType))
    def test_check_content_type(self, schema: ChannelSchema, content_type: ContentType) -> None:
        """None exactly when the schema lists the content type, else an error on ``content``."""
        problem = check_content_type(schema, content_type)
        if content_type in schema.content_types:
            assert problem is None
        else:
            assert isinstance(problem, FieldError)
            assert problem.field == "content"
            assert content_type.value in problem.message

    @given(schemas, st.sampled_from(EndpointType), st.booleans())
    def test_check_endpoint(self, schema: ChannelSchema, kind: EndpointType, sending: bool) -> None:
        """None exactly when a matching (or ANY) endpoint spec allows the role."""
        problem = check_endpoint(schema, kind, sending=sending)
        allowed = any(
            spec.type in {kind, EndpointType.ANY}
            and (spec.can_send if sending else spec.can_receive)
            for spec in schema.endpoints
        )
        if allowed:
            assert problem is None
        else:
            assert isinstance(problem, FieldError)
            assert problem.field == ("sender" if sending else "receiver")


def str_of(value: str | Secret) -> str:
    return value.reveal() if isinstance(value, Secret) else value


class TestWhatsAppProperties:
    """The two message properties the Twilio schema declares, checked precisely."""

    low, high = VALIDITY_PERIOD_RANGE

    @given(st.integers(low, high) | st.integers(low, high).map(lambda n: f" {n} "))
    def test_validity_in_range_passes(self, value: int | str) -> None:
        """An int (or decimal string) within 1..36000 seconds is fine."""
        assert validate_properties(WHATSAPP, {"ValidityPeriod": value}) == ()

    @given(st.integers().filter(lambda n: not 1 <= n <= 36000) | st.booleans() | st.floats())
    @example(HUGE)
    def test_validity_outside_range_or_not_an_int_fails(self, value: object) -> None:
        """Out of range, booleans and floats are refused on ValidityPeriod."""
        errors = validate_properties(WHATSAPP, {"ValidityPeriod": value})
        assert [e.field for e in errors] == ["ValidityPeriod"]

    @given(junk)
    def test_caption_must_be_a_string(self, value: object) -> None:
        """``caption`` is fine when a str (or absent), refused otherwise."""
        errors = validate_properties(WHATSAPP, {"caption": value})
        assert bool(errors) == (value is not None and not isinstance(value, str))


# --- the builder -----------------------------------------------------------------------------

contents = st.one_of(
    st.builds(TextContent, st.text()),
    st.builds(MediaContent, st.sampled_from(MediaType), st.none() | st.text(), st.text()),
    st.builds(
        TemplateContent,
        st.text(),
        st.dictionaries(st.text(max_size=5), st.text() | st.integers(), max_size=3),
        language=st.none() | st.sampled_from(["en", "pt_BR"]),
    ),
)
property_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(),
    st.floats(),
    st.lists(st.integers(), max_size=2),
)
timestamps = st.datetimes(timezones=st.just(dt.UTC))


@st.composite
def builder_calls(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """A sequence of builder setter calls with well-typed arguments, ending with an id."""
    call = st.one_of(
        st.tuples(st.just("from_phone"), st.text()),
        st.tuples(st.just("to_phone"), st.text()),
        st.tuples(
            st.just("from_endpoint"), st.builds(Endpoint, st.sampled_from(EndpointType), st.text())
        ),
        st.tuples(st.just("with_text"), st.text()),
        st.tuples(st.just("with_content"), contents),
        st.tuples(st.just("with_property"), st.tuples(st.text(max_size=8), property_values)),
        st.tuples(st.just("with_timestamp"), timestamps),
    )
    calls = draw(st.lists(call, max_size=8))
    return [*calls, ("with_id", draw(st.text(min_size=1, max_size=20)))]


def _apply(calls: list[tuple[str, Any]]) -> MessageBuilder:
    builder = MessageBuilder()
    for name, argument in calls:
        if name == "with_property":
            builder.with_property(*argument)
        else:
            getattr(builder, name)(argument)
    return builder


class TestBuilder:
    """Same calls, same message; a built message never changes."""

    @given(builder_calls())
    def test_same_inputs_give_equal_messages(self, calls: list[tuple[str, Any]]) -> None:
        """Two builders fed the same calls (and one builder built twice) give equal values.

        Equal hashes too, even when a property value (a list) is itself unhashable.
        """
        first = _apply(calls).build()
        second = _apply(calls).build()
        assert first == second
        assert hash(first) == hash(second)
        builder = _apply(calls)
        assert builder.build() == builder.build()

    @given(builder_calls())
    def test_message_is_frozen(self, calls: list[tuple[str, Any]]) -> None:
        """Assigning any field raises FrozenInstanceError; properties are read-only."""
        message = _apply(calls).build()
        for field in attrs.fields(Message):
            with pytest.raises(attrs.exceptions.FrozenInstanceError):
                setattr(message, field.name, getattr(message, field.name))
        assert isinstance(message.properties, Mapping)
        with pytest.raises(TypeError):
            message.properties["new"] = 1  # type: ignore[index]
        with pytest.raises((TypeError, AttributeError)):
            message.properties.clear()  # type: ignore[attr-defined]

    @given(builder_calls(), st.text(max_size=8), property_values)
    def test_builder_reuse_does_not_touch_built_messages(
        self, calls: list[tuple[str, Any]], name: str, value: object
    ) -> None:
        """Setting more on the builder afterwards leaves the first message as it was."""
        builder = _apply(calls)
        message = builder.build()
        before = attrs.evolve(message)  # an independent copy of every field
        snapshot = dict(message.properties)
        builder.with_property(name, value).with_text("later").with_id("other-id")
        builder.to_phone("whatsapp:+15550009999").build()
        assert message == before
        assert dict(message.properties) == snapshot

    @given(builder_calls())
    def test_build_reflects_the_last_calls(self, calls: list[tuple[str, Any]]) -> None:
        """Each field holds what its last setter said (later calls win)."""
        message = _apply(calls).build()
        expected_properties: dict[str, object] = {}
        receiver = sender = content = timestamp = None
        for name, argument in calls:
            if name == "to_phone":
                receiver = Endpoint.phone(argument)
            elif name == "from_phone":
                sender = Endpoint.phone(argument)
            elif name == "from_endpoint":
                sender = argument
            elif name == "with_text":
                content = TextContent(argument)
            elif name == "with_content":
                content = argument
            elif name == "with_property":
                expected_properties[argument[0]] = argument[1]
            elif name == "with_timestamp":
                timestamp = argument
        assert message.id == calls[-1][1]
        assert (message.sender, message.receiver) == (sender, receiver)
        assert message.content == content
        assert message.timestamp == timestamp
        assert dict(message.properties) == expected_properties

    def test_omitted_id_is_random(self) -> None:
        """Without ``with_id`` (or with an empty one) each build gets a fresh id."""
        builder = MessageBuilder().with_text("hi")
        ids = {builder.build().id for _ in range(20)} | {MessageBuilder().with_id("").build().id}
        assert len(ids) == 21
        assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)

    @given(junk)
    def test_setters_raise_only_type_errors(self, value: object) -> None:
        """Arbitrary arguments are accepted or refused with TypeError; build still works."""
        builder = MessageBuilder()
        setters = [
            builder.with_id,
            builder.from_phone,
            builder.to_phone,
            builder.from_endpoint,
            builder.to_endpoint,
            builder.with_text,
            builder.with_content,
            builder.with_media,
            builder.with_template,
            builder.with_timestamp,
            lambda v: builder.with_property(v, v),
        ]
        for setter in setters:
            with contextlib.suppress(TypeError):
                setter(value)
        assert isinstance(builder.build(), Message)
