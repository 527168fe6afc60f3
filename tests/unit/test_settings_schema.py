"""Connection settings against the Twilio WhatsApp schema, and secrets that stay secret.

``validate_settings`` reports every bad parameter in one go (nothing more,
nothing less), and no output of the settings machinery, whether ``repr``,
``str``, ``masked()``, ``attrs.asdict`` or a validation message, ever shows
an auth token.
"""

from __future__ import annotations

import pickle
import string
from typing import Any

import attrs
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from ratatosk.domain.schema import (
    AuthenticationSpec,
    AuthenticationType,
    Capability,
    ChannelSchema,
    DataType,
    FieldError,
    ParameterSpec,
    validate_settings,
)
from ratatosk.domain.settings import MASK, ConnectionSettings, Secret
from ratatosk.ports import Credentials
from ratatosk.twilio.schema import TwilioChannelSchemas

WHATSAPP = TwilioChannelSchemas.TWILIO_WHATSAPP
ABSENT = object()  # leave the parameter out


def _hex32(prefix: str) -> st.SearchStrategy[str]:
    return st.text("0123456789abcdefABCDEF", min_size=32, max_size=32).map(lambda h: prefix + h)


blank = st.sampled_from(["", " ", "\t\n"])
not_a_string = st.sampled_from([[], {}, ["x"], b"bytes", object(), (1,)])
good_urls = st.sampled_from(
    [
        "https://example.com/hook",
        "http://localhost:8080/twilio/whatsapp?tenant=a",
        "https://Hooks.Example.com:8443/status",
        " https://padded.example.com/x ",
    ]
)
bad_urls = st.sampled_from(
    [
        "ftp://example.com/x",
        "example.com/hook",
        "/relative/hook",
        "http://",
        "https:// example.com/x",
        "https://example.com:99999/x",
        "https://[::1/x",
        "mailto:ops@example.com",
        "not a url",
    ]
)
good_booleans = st.sampled_from(["true", "false", "1", "0", " TRUE ", "False", True, False])
bad_booleans = st.sampled_from(["maybe", "2", "tru", "-1", "yes please"])
good_seconds = st.sampled_from(["5", "0.5", "2.25", "15", "030", " 7 ", 5, 0.25])
bad_seconds = st.sampled_from(["0", "-1", "abc", "1.2345", "1e3", "1234567", "0.0", -2])

#: parameter -> (values that pass, values that must be reported). ABSENT leaves it out.
#: (The Http*Timeout entries apply once the schema declares them.)
CASES: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "AccountSid": (
        _hex32("AC"),
        st.just(ABSENT)
        | blank
        | not_a_string
        | _hex32("MG")
        | st.text("0123456789abcdef", max_size=31).map(lambda h: "AC" + h)
        | st.just(12345),
    ),
    "AuthToken": (
        st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1).filter(
            str.strip
        ),
        st.just(ABSENT) | blank | not_a_string,
    ),
    "WebhookUrl": (st.just(ABSENT) | blank | good_urls, bad_urls | not_a_string),
    "StatusCallback": (st.just(ABSENT) | blank | good_urls, bad_urls | not_a_string),
    "FromNumber": (st.just(ABSENT) | blank | st.text(), not_a_string),
    "MessagingServiceSid": (
        st.just(ABSENT) | blank | _hex32("MG"),
        _hex32("AC") | st.just("MG123") | st.just(" MG" + "0" * 31) | not_a_string,
    ),
    "ApiBaseUrl": (st.just(ABSENT) | good_urls, bad_urls | not_a_string),
    "ContentApiBaseUrl": (st.just(ABSENT) | good_urls, bad_urls | not_a_string),
    "StrictNumbers": (st.just(ABSENT) | blank | good_booleans, bad_booleans | not_a_string),
    **{
        f"Http{phase}Timeout": (
            st.just(ABSENT) | blank | good_seconds,
            bad_seconds | not_a_string | st.booleans(),
        )
        for phase in ("Connect", "Read", "Total")
    },
    "ConversationWindowGuard": (
        st.just(ABSENT) | blank | good_booleans,
        bad_booleans | not_a_string,
    ),
    "RedisUrl": (
        st.just(ABSENT)
        | blank
        | st.sampled_from(
            ["redis://127.0.0.1:6379/0", "rediss://:s3cret@cache.example:6380/2", "redis://[::1]"]
        ),
        st.sampled_from(["http://cache.example", "redis://", "redis://h:port", "localhost:6379"])
        | not_a_string,
    ),
    "SenderRates": (
        st.just(ABSENT)
        | blank
        | st.sampled_from(["whatsapp:+14155238886=40", "a=0.5, MG" + "0" * 32 + "=2"]),
        st.sampled_from(["whatsapp:+14155238886=0", "a=fast", "a=-1", "=3", "a=1,"]) | not_a_string,
    ),
    "SenderTemplateLanguages": (
        st.just(ABSENT) | blank | st.sampled_from(["whatsapp:+14155238886=en", "a=pt_BR, b=es"]),
        st.sampled_from(["en", "a=e", "a=english language", "a=en,"]) | not_a_string,
    ),
    "Templates": (
        st.just(ABSENT)
        | blank
        | _hex32("HX").map(lambda sid: f"order_confirmed={sid}")
        | st.lists(_hex32("HX"), min_size=1, max_size=3).map(
            lambda sids: " , ".join(f"t{i} = {sid}" for i, sid in enumerate(sids))
        ),
        st.sampled_from(["order_confirmed", "a=HX12", "=HX" + "0" * 32, "a=HX" + "0" * 32 + ","])
        | not_a_string,
    ),
}


@st.composite
def broken_settings(draw: st.DrawFn) -> tuple[ConnectionSettings, set[str]]:
    """Settings with a random set of parameters broken, and that set."""
    declared = sorted(p.name for p in WHATSAPP.parameters)
    broken = set(draw(st.sets(st.sampled_from(declared))))
    settings = ConnectionSettings()
    for name in draw(st.permutations(declared)):
        good, bad = CASES[name]
        value = draw(bad if name in broken else good)
        if value is not ABSENT:
            settings = settings.set_parameter(name, value)
    return settings, broken


class TestEveryBadFieldAtOnce:
    """validate_settings names exactly the broken parameters, each once."""

    def test_cases_cover_the_schema(self) -> None:
        """Every parameter the schema declares has good and bad values here."""
        assert {p.name for p in WHATSAPP.parameters} <= set(CASES)

    @given(broken_settings())
    @example((ConnectionSettings(), {"AccountSid", "AuthToken"}))
    def test_every_broken_parameter_is_named(
        self, case: tuple[ConnectionSettings, set[str]]
    ) -> None:
        """No broken parameter is missed, no good one is blamed, none is named twice."""
        settings, broken = case
        errors = validate_settings(WHATSAPP, settings)
        assert all(isinstance(e, FieldError) and e.message for e in errors)
        fields = [e.field for e in errors]
        assert sorted(fields) == sorted(broken), errors

    def test_documented_settings_pass(self) -> None:
        """The documentation's settings (and the optional extras) are valid."""
        settings = ConnectionSettings().with_parameters(
            {
                "AccountSid": "AC" + "0123456789abcdef" * 2,
                "AuthToken": "your_auth_token",
                "WebhookUrl": "https://your-domain.com/webhooks/whatsapp",
                "StatusCallback": "https://your-domain.com/webhooks/status",
                "FromNumber": "whatsapp:+14155238886",
                "StrictNumbers": True,
                "ConversationWindowGuard": "false",
            }
        )
        assert validate_settings(WHATSAPP, settings) == ()


# --- secrets --------------------------------------------------------------------------------

printable = st.text(
    st.sampled_from(string.ascii_letters + string.digits + string.punctuation), min_size=8
)
tokens = printable | st.text(st.characters(exclude_categories=["C", "Z"]), min_size=8)
PLACEHOLDER = "PLACEHOLDER-7d1f"


def _secret_schema(kind: DataType, pattern: str | None, sensitive: bool) -> ChannelSchema:
    """A schema whose secret parameters a token is likely to fail (so messages get written)."""
    names = ("AuthToken", "ApiSecret", "Custom")
    return ChannelSchema(
        provider="Test",
        channel_type="Secrets",
        version="1",
        display_name="Secrets",
        capabilities=Capability.NONE,
        content_types=frozenset(),
        endpoints=(),
        parameters=tuple(
            ParameterSpec(name=n, type=kind, required=True, sensitive=sensitive, pattern=pattern)
            for n in names
        ),
        authentication=AuthenticationSpec(type=AuthenticationType.BASIC),
    )


def _token_settings(token: str) -> list[ConnectionSettings]:
    """The token put into settings every way a caller can."""
    return [
        ConnectionSettings().set_parameter("AuthToken", token),
        ConnectionSettings(parameters={"AuthToken": token}),
        ConnectionSettings().with_parameters({"AuthToken": token, "ApiSecret": token}),
        ConnectionSettings().set_parameter("Custom", token, sensitive=True),
        ConnectionSettings(parameters={"Custom": token}, sensitive=frozenset({"Custom"})),
        ConnectionSettings().set_parameter("AuthToken", Secret(token)),
    ]


def _shown(settings: ConnectionSettings) -> list[str]:
    """Everything settings print about themselves."""
    return [
        repr(settings),
        str(settings),
        f"{settings}",
        "%s" % (settings,),  # noqa: UP031 - the old formatting path too
        repr(settings.masked()),
        str(list(settings.masked().values())),
        repr(attrs.asdict(settings)),
        repr(dict(settings)),
        repr(list(settings.values())),
    ]


class TestTokensNeverShow:
    """An auth token never appears in settings output or validation messages."""

    @given(tokens)
    @example("AC" + "1" * 32)
    @example("https://example.com/x")
    @example("12345678")
    @example("true" * 2)
    def test_settings_output_is_token_free(self, token: str) -> None:
        """repr, str, masked() and friends are the same whatever the token, and never show it."""
        assume(token.strip())
        for settings, placeholder in zip(
            _token_settings(token), _token_settings(PLACEHOLDER), strict=True
        ):
            shown = _shown(settings)
            assert shown == _shown(placeholder)
            assume(not any(token in text for text in _shown(placeholder)))
            assert not any(token in text for text in shown)
            assert MASK in repr(settings)

    @given(
        tokens,
        st.sampled_from(DataType),
        st.sampled_from([None, r"[0-9a-f]{32}", r"AC.*", r"\d+", r".{4}"]),
        st.booleans(),
    )
    @example("12345678", DataType.URL, None, False)
    @example("https://example.com/x", DataType.INTEGER, None, False)
    @example("not-hex-not-hex", DataType.STRING, r"[0-9a-f]{32}", True)
    def test_validation_messages_are_token_free(
        self, token: str, kind: DataType, pattern: str | None, sensitive: bool
    ) -> None:
        """Whatever rule a secret breaks, its message says "the value", not the value."""
        assume(token.strip())
        schema = _secret_schema(kind, pattern, sensitive)
        for settings in _token_settings(token):
            placeholder_messages = " ".join(
                e.field + " " + e.message for e in validate_settings(schema, ConnectionSettings())
            )
            assume(token not in placeholder_messages + str(pattern))
            for error in validate_settings(schema, settings):
                assert token not in error.message
                assert token not in error.field

    @given(tokens)
    def test_whatsapp_schema_never_echoes_the_token(self, token: str) -> None:
        """The real schema's AuthToken, broken or not, never echoes the token."""
        assume(token.strip() and token not in "AuthToken is required")
        for settings in _token_settings(token):
            for error in validate_settings(WHATSAPP, settings):
                assert token not in error.message


def _secret_shown(secret: Secret) -> list[str]:
    """Every way a secret, or an attrs value holding one, can be printed."""
    credentials = Credentials("AC1", secret)
    shown = [
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        f"{secret:>40}",
        "%s %r" % (secret, secret),  # noqa: UP031 - the old formatting path too
        "{}".format(secret),  # noqa: UP032 - and str.format
        repr([secret]),
        repr({"token": secret}),
        repr(credentials),
        repr(attrs.asdict(credentials)),
        repr(attrs.astuple(credentials)),
    ]
    if attrs.has(Secret):
        shown += [repr(attrs.asdict(secret)), repr(attrs.astuple(secret))]
    return shown


class TestSecret:
    """Secret: masked everywhere, compared by value, impossible to pickle."""

    @given(st.text())
    @example("")
    @example(MASK)
    @example("tok-12345678")
    def test_secret_never_shows_its_value(self, value: str) -> None:
        """repr, str, format, %-format, containers and attrs.asdict of a holder show the mask."""
        shown = _secret_shown(Secret(value))
        assert shown == _secret_shown(Secret(PLACEHOLDER))
        assume(not any(value in text for text in _secret_shown(Secret(PLACEHOLDER))))
        assert not any(value in text for text in shown)

    @given(st.text(), st.text())
    def test_equality_is_by_value(self, a: str, b: str) -> None:
        """Equal values are equal secrets with equal hashes; different values differ."""
        assert (Secret(a) == Secret(b)) == (a == b)
        assert Secret(a) == Secret(a)
        assert hash(Secret(a)) == hash(Secret(a))
        assert Secret(a) != a

    @given(st.text())
    def test_truthiness_and_reveal(self, value: str) -> None:
        """A blank secret is falsy; ``reveal`` is the one way out."""
        secret = Secret(value)
        assert bool(secret) == bool(value.strip())
        assert secret.reveal() == value

    def test_pickling_is_refused(self) -> None:
        """Pickle would be a way out of the mask; it raises."""
        with pytest.raises(TypeError):
            pickle.dumps(Secret("tok-12345678"))
        with pytest.raises(TypeError):
            pickle.dumps(ConnectionSettings().set_parameter("AuthToken", "tok-12345678"))


class TestSettingsAreValues:
    """set_parameter returns a new object; nothing changes under anyone's feet."""

    @given(
        st.lists(
            st.tuples(st.sampled_from([*sorted(CASES), "Other"]), st.none() | st.text()),
            max_size=8,
        )
    )
    def test_set_parameter_never_mutates(self, changes: list[tuple[str, str | None]]) -> None:
        """Every intermediate settings object keeps exactly the parameters it had."""
        history: list[tuple[ConnectionSettings, dict[str, Any]]] = []
        settings = ConnectionSettings()
        for name, value in changes:
            history.append((settings, dict(settings)))
            settings = settings.set_parameter(name, value)
            if value is None:
                assert name not in settings
            elif settings.is_sensitive(name):
                assert isinstance(settings[name], Secret)
                assert settings[name].reveal() == value
            else:
                assert settings[name] == value
        for old, snapshot in history:
            assert dict(old) == snapshot
        with pytest.raises(TypeError):
            settings._parameters["AuthToken"] = "x"  # type: ignore[index]
