"""Hostile inputs, generated: settings, builder arguments, webhook bodies.

Whatever comes in, the answer is a value: a success, or a failure whose code
is in the catalogs. No unexpected exception, and no HTTP 500 from the real
webhook server even for bodies that are correctly signed (so they pass the
signature gate and reach the decoders).

The only exceptions allowed are the documented programming errors: the
builder and the content classes raise ``TypeError`` on arguments of the wrong
type, which no data from the outside can cause.

The small versions run a few hundred examples each; the slow versions run
over 100,000 in total and report the count.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from resilience_support import ALL_CODES, record_figures, serve_app

from ratatosk import ConnectionSettings, MessageBuilder, MessageSource
from ratatosk.adapters.webhook_server import SIGNATURE_HEADER, create_webhook_app
from ratatosk.bootstrap import build_connector
from ratatosk.domain.content import (
    ButtonReplyContent,
    LocationContent,
    MediaContent,
    MediaType,
    MultipartContent,
    TemplateContent,
    TextContent,
)
from ratatosk.domain.schema import validate_settings
from ratatosk.domain.settings import Secret
from ratatosk.domain.status import ConnectorState
from ratatosk.emulator.app import start_emulator
from ratatosk.emulator.model import inbound_form, status_callback_params
from ratatosk.testing import FakeTwilio, invalid_whatsapp_numbers, whatsapp_numbers
from ratatosk.twilio import TwilioChannelSchemas, TwilioErrorCodes, TwilioWhatsAppConnector
from ratatosk.twilio.signature import body_sha256, compute_signature
from ratatosk.twilio.wire import parse_form

ACCOUNT = "AC" + "9d" * 16
TOKEN = "hostile-token-2718281828459045"
SENDER = "whatsapp:+14155238886"
PUBLIC = "https://hooks.example.com"
PATH = "/webhooks/twilio/whatsapp"
SCHEMA = TwilioChannelSchemas.TWILIO_WHATSAPP
FORM = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"

#: Inputs tried, by family (the figure ``docs/reliability.md`` reports).
TRIED: Counter[str] = Counter()

FAST = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def thorough(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


# --- strategies -------------------------------------------------------------------------------

SPECIAL_TEXT = [
    "",
    " ",
    "\x00",
    "\t\n",
    "null",
    "None",
    "nan",
    "inf",
    "-1",
    "0",
    "1e309",
    "9" * 30,
    "AC" + "0" * 32,
    "AC" + "g" * 32,
    "MG" + "f" * 32,
    "HX" + "a" * 32,
    "http://",
    "https://",
    "https://exa mple.com",
    "https://host:99999/",
    "http://[::1",
    "javascript:alert(1)",
    "whatsapp:",
    "whatsapp:+",
    "whatsapp:+1",
    "whatsapp:+15550001111",
    "WHATSAPP:+15550001111",
    "whatsapp:+1 (555) 000-1111",
    "whatsapp:＋１５５５０００１１１１",
    "whatsapp:+١٥٥٥٠٠٠١١١١",
    "whatsapp:+4900015550001111",
    "+15550001111",
    "sms:+15550001111",
    "%00",
    "%ff%fe",
    "\ud800",
    "a\udfffb",
    "Zoë 🎉 \u202e",
    "true",
    "false",
    "name=HX" + "b" * 32 + ",x",
    "=,=,",
]


def hostile_text(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=max_size),
        st.sampled_from(SPECIAL_TEXT),
        st.binary(max_size=max_size).map(lambda b: b.decode("latin-1")),
        st.tuples(st.sampled_from(["x", "é", "🎉", "%", " "]), st.integers(1, 3000)).map(
            lambda t: t[0] * t[1]
        ),
    )


def anything() -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=10**30, max_value=10**40),
        st.floats(),
        hostile_text(),
        st.binary(max_size=10),
        st.dates(),
        st.datetimes(),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.text(max_size=5), inner, max_size=3),
            st.tuples(inner),
        ),
        max_leaves=6,
    )


PARAMETER_NAMES = [p.name for p in SCHEMA.parameters] + [
    "HttpConnectTimeout",
    "HttpReadTimeout",
    "HttpTotalTimeout",
    "Templates",
]

VALID_SETTINGS = {"AccountSid": ACCOUNT, "AuthToken": TOKEN, "FromNumber": SENDER}


SETTING_NAMES = st.one_of(st.sampled_from(PARAMETER_NAMES), st.text(min_size=1, max_size=12))
SETTING_VALUES = st.one_of(
    hostile_text(),
    st.none(),
    st.integers(),
    st.floats(),
    st.booleans(),
    hostile_text().map(Secret),
    anything(),
)


def settings_inputs() -> st.SearchStrategy[tuple[bool, dict[str, Any]]]:
    """(start from valid settings?, hostile overrides)."""
    return st.tuples(st.booleans(), st.dictionaries(SETTING_NAMES, SETTING_VALUES, max_size=8))


def addresses() -> st.SearchStrategy[str]:
    return st.one_of(
        whatsapp_numbers(),
        invalid_whatsapp_numbers(),
        hostile_text(),
        st.sampled_from(SPECIAL_TEXT),
    )


def urls() -> st.SearchStrategy[str]:
    return st.one_of(
        st.just("https://example.com/cat.jpg"),
        hostile_text().map(lambda t: "https://example.com/" + t),
        hostile_text(),
    )


def contents() -> st.SearchStrategy[Any]:
    parameters = st.dictionaries(
        st.one_of(st.sampled_from(["order_id", "delivery_date", "1"]), st.text(max_size=20)),
        anything(),
        max_size=4,
    )
    return st.one_of(
        hostile_text(2000).map(TextContent),
        st.builds(
            MediaContent,
            st.sampled_from(MediaType),
            st.none() | hostile_text(10),
            urls(),
            mime_type=st.none() | hostile_text(10),
        ),
        st.builds(
            TemplateContent,
            st.one_of(
                st.sampled_from(["order_confirmed", "pending_promo", "HX" + "a" * 32]),
                hostile_text(),
            ),
            parameters,
            language=st.none() | st.sampled_from(["en", "pt_BR"]) | hostile_text(5),
        ),
        st.builds(
            LocationContent,
            latitude=st.floats(),
            longitude=st.floats(),
            address=st.none() | hostile_text(),
        ),
        st.builds(ButtonReplyContent, text=hostile_text(), payload=st.none() | hostile_text()),
        st.builds(MultipartContent, parts=st.just(()), text=st.none() | hostile_text()),
    )


ADDRESSES = addresses()
CONTENTS = contents()
IDS = st.none() | hostile_text()
PROPERTIES = st.dictionaries(
    st.one_of(st.sampled_from(["caption", "ValidityPeriod"]), hostile_text(10)),
    st.one_of(anything(), st.integers(-(10**20), 10**20), hostile_text()),
    max_size=3,
)


@st.composite
def messages(draw: st.DrawFn) -> Any:
    """A message built from hostile (but well-typed) builder arguments."""
    builder = MessageBuilder()
    if draw(st.booleans()):
        builder.with_id(draw(IDS))
    if draw(st.integers(0, 9)):
        builder.to_phone(draw(ADDRESSES))
    if draw(st.booleans()):
        builder.from_phone(draw(ADDRESSES))
    if draw(st.integers(0, 9)):
        builder.with_content(draw(CONTENTS))
    for name, value in draw(PROPERTIES).items():
        builder.with_property(name, value)
    return builder.build()


FORM_KEYS = [
    "MessageSid",
    "SmsSid",
    "SmsMessageSid",
    "AccountSid",
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
    "ButtonText",
    "ButtonPayload",
    "MessageStatus",
    "SmsStatus",
    "ErrorCode",
    "ErrorMessage",
    "ProfileName",
    "WaId",
    "OriginalRepliedMessageSid",
    "Messages",
]


def form_fields() -> st.SearchStrategy[dict[str, str]]:
    keys = st.one_of(st.sampled_from(FORM_KEYS), hostile_text(12))
    return st.dictionaries(keys, hostile_text(), max_size=12)


def valid_form(kind: int) -> dict[str, str]:
    if kind:
        return inbound_form(
            sid="SM" + "1" * 32,
            account_sid=ACCOUNT,
            from_="whatsapp:+15550001111",
            to=SENDER,
            body="hi",
            media=[("https://example.com/a.jpg", "image/jpeg")],
        )
    return status_callback_params(
        sid="SM" + "2" * 32,
        account_sid=ACCOUNT,
        from_=SENDER,
        to="whatsapp:+15550001111",
        status="read",
        channel_install_sid="XE" + "0" * 32,
        error_code=63016,
        error_message="outside the window",
    )


FORM_OVERRIDES = st.dictionaries(
    st.sampled_from(sorted(set(valid_form(0)) | set(valid_form(1)))), hostile_text(), max_size=3
)


@st.composite
def missing_fields(draw: st.DrawFn) -> bytes:
    form = valid_form(draw(st.integers(0, 1)))
    keep = draw(st.sets(st.sampled_from(sorted(form))))
    changed = {k: v for k, v in form.items() if k in keep}
    overrides = draw(FORM_OVERRIDES)
    return urlencode({**changed, **overrides}, errors="surrogatepass").encode()


def json_documents() -> st.SearchStrategy[bytes]:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), hostile_text()
    )
    values = st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(FORM_KEYS) | st.text(max_size=6), inner, max_size=6)
        ),
        max_leaves=12,
    )
    depth = st.integers(1, 4000)
    return st.one_of(
        values.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(st.sampled_from(FORM_KEYS), values, max_size=10).map(
            lambda d: json.dumps(d).encode()
        ),
        st.lists(st.dictionaries(st.sampled_from(FORM_KEYS), scalars, max_size=6), max_size=4).map(
            lambda items: json.dumps({"Messages": items}).encode()
        ),
        depth.map(lambda d: ("[" * d + "]" * d).encode()),
        depth.map(lambda d: ('{"a":' * d + "1" + "}" * d).encode()),
        depth.map(lambda d: ('{"Messages":[' * d + "]}" * d).encode()),
        st.sampled_from(
            [
                b'{"MessageSid": "\\ud800", "From": "x", "To": "y"}',
                b'{"MessageSid": "\xff\xfe", "From": "x", "To": "y"}',
                b'{"MessageSid": 1e400, "MessageStatus": -0.0}',
                b'{"MessageSid": ' + b"1" * 5000 + b"}",
                b"\xef\xbb\xbf{}",
                b"\x00",
                b"",
            ]
        ),
    )


def huge_fields() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.integers(1, 80_000).map(lambda n: urlencode(valid_form(1) | {"Body": "x" * n}).encode()),
        st.integers(1, 400).map(
            lambda n: urlencode(valid_form(0) | {f"F{i}": "" for i in range(n)}).encode()
        ),
    )


def webhook_bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=3000),
        form_fields().map(lambda f: urlencode(f, errors="surrogatepass").encode()),
        form_fields().map(
            lambda f: urlencode(f, encoding="latin-1", errors="replace").encode("ascii")
        ),
        form_fields().map(
            lambda f: "&".join(f"{k}={v}" for k, v in f.items()).encode("latin-1", "replace")
        ),
        st.text(alphabet="%&=+;0123456789abcdefABCDEFxzu\x00é", max_size=300).map(str.encode),
        missing_fields(),
        json_documents(),
        huge_fields(),
    )


CONTENT_TYPES = [
    FORM,
    FORM + "; charset=utf-8",
    FORM + "; charset=latin-1",
    FORM + "; charset=utf-16",
    "APPLICATION/X-WWW-FORM-URLENCODED",
    JSON_TYPE,
    JSON_TYPE + "; charset=iso-8859-1",
    "application/vnd.twilio+json",
    "text/plain",
    "text/xml",
    "multipart/form-data; boundary=x",
    "",
]


BODIES = webhook_bodies()
PATHS = st.sampled_from([PATH, PATH + "/status"])


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """(path, content type, body): the content type mostly matches the body."""
    body = draw(BODIES)
    looks_json = body[:1] in {b"{", b"[", b'"'} or body.strip()[:1].isdigit()
    likely = JSON_TYPE if looks_json else FORM
    content_type = draw(st.one_of(st.just(likely), st.sampled_from(CONTENT_TYPES)))
    return draw(PATHS), content_type, body


# --- checks -----------------------------------------------------------------------------------


def assert_coded(result: Any) -> None:
    """A success, or a failure whose code is in the catalogs."""
    if result.error is not None:
        assert result.value is None
        assert result.error.code in ALL_CODES, result.error


class Rig:
    """One event loop, one connector on FakeTwilio, one webhook server, one HTTP client."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.answers: Counter[int] = Counter()
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        self.fake = FakeTwilio(ACCOUNT, TOKEN)
        self.connector = TwilioWhatsAppConnector(
            SCHEMA,
            ConnectionSettings(parameters=VALID_SETTINGS),
            transport=self.fake,
            template_catalog=self.fake.template_catalog(),
        )
        (await self.connector.initialize()).unwrap()
        self.handled = 0
        app = create_webhook_app(
            self.connector,
            validator=self.connector.signature_validator,
            public_url=PUBLIC,
            on_message=self._on_event,
            on_status=self._on_event,
        )
        self.runner, self.url = await serve_app(app)
        self.session = aiohttp.ClientSession()

    async def _on_event(self, _: object) -> None:
        self.handled += 1

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        async def stop() -> None:
            await self.session.close()
            await self.runner.cleanup()
            await self.connector.shutdown()

        self.run(stop())
        self.loop.close()


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    shared = Rig()
    yield shared
    shared.close()


def signature_for(path: str, content_type: str, body: bytes) -> tuple[str, str]:
    """(request path with query, X-Twilio-Signature) exactly as Twilio would sign it."""
    source = MessageSource.from_content_type(content_type, body)
    if source.format.name == "JSON":
        target = f"{path}?bodySHA256={body_sha256(body)}"
        return target, compute_signature(TOKEN, PUBLIC + target, {})
    try:
        params = parse_form(source.body)
    except ValueError:
        params = {}
    return path, compute_signature(TOKEN, PUBLIC + path, params)


async def post_and_decode(rig: Rig, path: str, content_type: str, body: bytes) -> None:
    target, signature = signature_for(path, content_type, body)
    headers = {SIGNATURE_HEADER: signature}
    if content_type:
        headers["Content-Type"] = content_type
    async with rig.session.post(rig.url + target, data=body, headers=headers) as response:
        status, text = response.status, await response.text()
    rig.answers[status] += 1
    assert status < 500, text[:200]
    assert status in {200, 400, 413, 415}, (status, text[:200])
    if status != 200:
        assert json.loads(text)["code"] in ALL_CODES
    # The same body handed to the connector directly.
    for source in (
        MessageSource.from_content_type(content_type, body),
        MessageSource.url_post(body),
        MessageSource.json(body),
    ):
        assert_coded(await rig.connector.receive_messages(source))
        assert_coded(await rig.connector.receive_message_status(source))


def check_settings(loop: asyncio.AbstractEventLoop, start_valid: bool, values: Any) -> None:
    TRIED["settings"] += 1
    parameters = dict(VALID_SETTINGS) if start_valid else {}
    built = ConnectionSettings(parameters=parameters)
    for name, value in values.items():
        built = built.set_parameter(name, value)
    repr(built)
    for candidate in (built, ConnectionSettings(parameters={**parameters, **values})):
        problems = validate_settings(SCHEMA, candidate)
        assert all(isinstance(p.field, str) for p in problems)

        async def initialize(settings: ConnectionSettings = candidate) -> None:
            connector = build_connector(settings, environ={})
            try:
                result = await connector.initialize()
                assert_coded(result)
                assert (result.error is None) == (connector.state is ConnectorState.READY)
            finally:
                await connector.shutdown()

        loop.run_until_complete(initialize())


def check_message(rig: Rig, message: Any) -> None:
    TRIED["builder"] += 1
    result = rig.run(rig.connector.send_message(message))
    assert_coded(result)
    if result.value is not None:
        assert rig.fake.model.message(result.value.provider_message_id) is not None


# --- the tests ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    own = asyncio.new_event_loop()
    yield own
    own.close()


def test_hostile_settings_small(loop: asyncio.AbstractEventLoop) -> None:
    @FAST
    @given(settings_inputs())
    def run(case: tuple[bool, dict[str, Any]]) -> None:
        check_settings(loop, *case)

    run()


def test_hostile_builder_arguments_small(rig: Rig) -> None:
    @FAST
    @given(messages())
    def run(message: Any) -> None:
        check_message(rig, message)

    run()


def test_hostile_webhook_bodies_small(rig: Rig) -> None:
    @settings(FAST, max_examples=300)
    @given(deliveries())
    def run(case: tuple[str, str, bytes]) -> None:
        TRIED["webhook"] += 1
        rig.run(post_and_decode(rig, *case))

    run()


@pytest.mark.parametrize(
    "value",
    [1, None, b"whatsapp:+15550001111", 1.5, ["whatsapp:+15550001111"]],
)
def test_wrong_types_are_programming_errors(value: Any) -> None:
    """The builder refuses wrong types at once, with TypeError (documented), never later."""
    for call in (
        lambda: MessageBuilder().to_phone(value),
        lambda: MessageBuilder().from_phone(value),
        lambda: MessageBuilder().with_text(value),
        lambda: MessageBuilder().with_content(value),
        lambda: TemplateContent(value),
        lambda: TextContent(value),
    ):
        with pytest.raises(TypeError):
            call()


async def test_unencodable_text_is_refused_before_the_wire() -> None:
    """A lone surrogate cannot be sent as UTF-8: a coded refusal, on the fake and over HTTP."""
    running = await start_emulator()
    settings_ = (
        ConnectionSettings(parameters=VALID_SETTINGS)
        .set_parameter("AccountSid", running.account_sid)
        .set_parameter("AuthToken", running.auth_token)
        .set_parameter("ApiBaseUrl", running.url)
    )
    fake = FakeTwilio(running.account_sid, running.auth_token)
    try:
        for transport in (None, fake):
            connector = build_connector(settings_, environ={}, transport=transport)
            async with connector:
                for message in (
                    MessageBuilder().to_phone("whatsapp:+15550001111").with_text("a\ud800b"),
                    MessageBuilder()
                    .to_phone("whatsapp:+15550001111")
                    .with_content(TemplateContent("HX" + "a" * 32, {"order_id": "\udfff"})),
                    MessageBuilder()
                    .to_phone("whatsapp:+15550001111")
                    .with_content(MediaContent(MediaType.IMAGE, None, "https://x.test/\ud800")),
                ):
                    result = await connector.send_message(message.build())
                    assert result.error is not None
                    assert result.error.code == TwilioErrorCodes.INVALID_MESSAGE
    finally:
        await running.close()
    assert running.model.attempts == []
    assert fake.outbox == []


@pytest.mark.slow
def test_hostile_inputs_soak(rig: Rig, loop: asyncio.AbstractEventLoop) -> None:
    """Over 100,000 generated inputs across the three families."""
    started = dt.datetime.now(dt.UTC)
    before = Counter(TRIED)

    @thorough(35_000)
    @given(settings_inputs())
    def hostile_settings(case: tuple[bool, dict[str, Any]]) -> None:
        check_settings(loop, *case)

    @thorough(35_000)
    @given(messages())
    def hostile_messages(message: Any) -> None:
        check_message(rig, message)

    @thorough(35_000)
    @given(deliveries())
    def hostile_webhooks(case: tuple[str, str, bytes]) -> None:
        TRIED["webhook"] += 1
        rig.run(post_and_decode(rig, *case))

    hostile_settings()
    hostile_messages()
    hostile_webhooks()
    tried = {name: TRIED[name] - before[name] for name in ("settings", "builder", "webhook")}
    total = sum(tried.values())
    assert total >= 100_000
    record_figures(
        "hostile_inputs",
        total=total,
        by_family=tried,
        webhook_answers={str(k): v for k, v in sorted(rig.answers.items())},
        unexpected_exceptions=0,
        http_500=rig.answers.get(500, 0),
        elapsed_seconds=round((dt.datetime.now(dt.UTC) - started).total_seconds()),
    )
