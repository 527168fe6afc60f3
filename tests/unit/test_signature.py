"""``X-Twilio-Signature``: ours against the official ``twilio`` package's RequestValidator.

The oracle is ``twilio.request_validator.RequestValidator`` (a test-only
dependency). For generated URLs (with and without ports, with queries, mixed
case hosts) and generated forms (Unicode, blanks, repeated keys) both compute
the same signature and both accept or refuse the same requests: correct,
tampered form, tampered URL, wrong token, mangled signature. JSON webhooks
(``bodySHA256``) too. The documented test vectors pin exact values.

The differential tests run ``max(500, profile)`` examples, so
``HYPOTHESIS_PROFILE=thorough`` runs 10,000 of each.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from ratatosk.domain.settings import Secret
from ratatosk.twilio.signature import (
    TwilioSignatureValidator,
    body_sha256,
    compute_signature,
    url_variants,
)

EXAMPLES = max(500, settings().max_examples)
differential = settings(max_examples=EXAMPLES)


class MultiValueForm(dict[str, list[str]]):
    """A decoded form, key -> values; ``getlist`` is how RequestValidator reads repeats."""

    def getlist(self, key: str) -> list[str]:
        return self[key]


# --- strategies ---------------------------------------------------------------------------

unicode_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
tokens = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)
label = st.text("abcXYZ019-", min_size=1, max_size=8).map(lambda s: f"h{s}0")
hosts = st.one_of(
    st.lists(label, min_size=1, max_size=3).map(".".join),
    st.sampled_from(["localhost", "127.0.0.1", "example.com", "Hooks.Example.COM"]),
)
segment = st.text("abcXYZ019-._~%20é", min_size=1, max_size=8)
query_part = st.text("abcXYZ019-._~%+é", max_size=6)


@st.composite
def urls(draw: st.DrawFn, *, extra_query: str = "") -> str:
    """An absolute URL as a webhook server would rebuild it, in urlsplit's normal form."""
    scheme = draw(st.sampled_from(["https", "https", "http"]))
    host = draw(hosts)
    port = draw(st.none() | st.sampled_from([443, 80, 8443]) | st.integers(1, 65535))
    path = "".join("/" + s for s in draw(st.lists(segment, max_size=3)))
    pairs = [f"{k}={v}" for k, v in draw(st.lists(st.tuples(query_part, query_part), max_size=3))]
    if extra_query:
        pairs.append(extra_query)
    netloc = host if port is None else f"{host}:{port}"
    url = urlunsplit((scheme, netloc, path, "&".join(pairs), ""))
    assume(urlunsplit(urlsplit(url)) == url)
    return url


forms = st.dictionaries(
    unicode_text,
    st.lists(unicode_text | st.just(""), min_size=0, max_size=3),
    max_size=6,
).map(MultiValueForm)
flat_forms = st.dictionaries(unicode_text, unicode_text | st.just(""), max_size=6)


def port_variants(url: str) -> list[str]:
    """The URL as given, without its port, and with its (default) port: what Twilio may sign."""
    parts = urlsplit(url)
    host = parts.netloc.split(":")[0]
    default = {"https": 443, "http": 80}[parts.scheme]
    port = parts.port or default
    return [
        url,
        urlunsplit(parts._replace(netloc=host)),
        urlunsplit(parts._replace(netloc=f"{host}:{port}")),
    ]


@st.composite
def tampered_forms(draw: st.DrawFn, form: MultiValueForm) -> MultiValueForm:
    """The form with one change: a value altered, a key added, dropped or renamed."""
    changed = MultiValueForm({k: list(v) for k, v in form.items()})
    action = draw(st.sampled_from(["value", "add", "drop", "rename", "repeat"]))
    keys = sorted(changed)
    if action == "add" or not keys:
        changed[draw(unicode_text)] = [draw(unicode_text)]
    elif action == "drop":
        del changed[draw(st.sampled_from(keys))]
    elif action == "rename":
        key = draw(st.sampled_from(keys))
        changed[key + draw(st.text(min_size=1, max_size=2))] = changed.pop(key)
    elif action == "repeat":
        key = draw(st.sampled_from(keys))
        changed[key] = [*changed[key], draw(unicode_text)]
    else:
        key = draw(st.sampled_from(keys))
        changed[key] = [*changed[key][:-1], draw(unicode_text)] if changed[key] else ["x"]
    return changed


@st.composite
def tampered_urls(draw: st.DrawFn, url: str) -> str:
    """The URL with one change to its scheme, host, port, path or query."""
    parts = urlsplit(url)
    action = draw(st.sampled_from(["scheme", "host", "port", "path", "query"]))
    if action == "scheme":
        parts = parts._replace(scheme="http" if parts.scheme == "https" else "https")
    elif action == "host":
        parts = parts._replace(netloc="x" + parts.netloc)
    elif action == "port":
        host = parts.netloc.split(":")[0]
        parts = parts._replace(netloc=f"{host}:{draw(st.integers(1, 65535))}")
    elif action == "path":
        parts = parts._replace(path=parts.path + "/" + draw(segment))
    else:
        parts = parts._replace(query=parts.query + ("&" if parts.query else "") + "x=1")
    changed = urlunsplit(parts)
    assume(urlunsplit(urlsplit(changed)) == changed)
    return changed


def mangled(signature: str) -> st.SearchStrategy[str]:
    """Signatures that are not ``signature``: truncated, extended, one character changed, junk."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
    index = st.integers(0, len(signature) - 1)
    return st.one_of(
        index.map(lambda i: signature[:i]),
        st.text(alphabet, min_size=1, max_size=4).map(lambda s: signature + s),
        st.tuples(index, st.sampled_from(alphabet)).map(
            lambda p: signature[: p[0]] + p[1] + signature[p[0] + 1 :]
        ),
        st.text(st.characters(exclude_categories=["Cs", "Zs", "Cc"]), min_size=1, max_size=40),
    )


def both_validate(token: str, url: str, params: Any, signature: str) -> bool:
    """Our verdict, after checking that the official validator gives the same one."""
    ours = TwilioSignatureValidator(token).validate(url, params, signature)
    theirs = RequestValidator(token).validate(url, params, signature)
    assert ours == theirs, (url, dict(params) if isinstance(params, dict) else params, signature)
    return ours


# --- differential tests -------------------------------------------------------------------------


class TestComputeSignature:
    """``compute_signature`` equals RequestValidator.compute_signature."""

    @differential
    @given(tokens, urls(), forms)
    def test_same_signature_for_multi_value_forms(
        self, token: str, url: str, form: MultiValueForm
    ) -> None:
        """Repeated keys, blank values, Unicode keys and values: the same base64 HMAC-SHA1."""
        assert compute_signature(token, url, form) == RequestValidator(token).compute_signature(
            url, form
        )

    @differential
    @given(tokens, urls(), flat_forms)
    def test_same_signature_for_plain_dicts(
        self, token: str, url: str, form: dict[str, str]
    ) -> None:
        """A plain ``key -> value`` dict (what RequestValidator takes without getlist)."""
        expected = RequestValidator(token).compute_signature(url, form)
        assert compute_signature(token, url, form) == expected
        assert compute_signature(Secret(token), url, form) == expected
        assert compute_signature(token, url, {k: [v] for k, v in form.items()}) == expected


class TestValidateAgainstRequestValidator:
    """``TwilioSignatureValidator.validate`` agrees with RequestValidator.validate."""

    @differential
    @given(tokens, urls(), forms, st.data())
    def test_correct_signatures_pass_with_and_without_port(
        self, token: str, url: str, form: MultiValueForm, data: st.DataObject
    ) -> None:
        """Signed over the URL as given, without its port or with its default port: both accept."""
        signed_at = data.draw(st.sampled_from(port_variants(url)))
        signature = RequestValidator(token).compute_signature(signed_at, form)
        assert both_validate(token, url, form, signature)

    @differential
    @given(tokens, urls(), forms, st.data())
    def test_tampered_forms(
        self, token: str, url: str, form: MultiValueForm, data: st.DataObject
    ) -> None:
        """A changed, added, dropped or renamed field: both agree, and real changes fail."""
        signature = RequestValidator(token).compute_signature(url, form)
        changed = data.draw(tampered_forms(form))
        accepted = both_validate(token, url, changed, signature)
        if compute_signature(token, url, changed) != signature:
            assert not accepted

    @differential
    @given(tokens, urls(), forms, st.data())
    def test_tampered_urls(
        self, token: str, url: str, form: MultiValueForm, data: st.DataObject
    ) -> None:
        """Another scheme, host, port, path or query: both verdicts agree."""
        signature = RequestValidator(token).compute_signature(url, form)
        both_validate(token, data.draw(tampered_urls(url)), form, signature)

    @differential
    @given(tokens, tokens, urls(), forms)
    def test_wrong_token(self, token: str, other: str, url: str, form: MultiValueForm) -> None:
        """Signed with another account's token: both refuse."""
        assume(token != other)
        signature = RequestValidator(other).compute_signature(url, form)
        assert not both_validate(token, url, form, signature)

    @differential
    @given(tokens, urls(), forms, st.data())
    def test_mangled_signatures(
        self, token: str, url: str, form: MultiValueForm, data: st.DataObject
    ) -> None:
        """Truncated, extended, altered or junk signatures: both refuse alike, nothing raises."""
        signature = RequestValidator(token).compute_signature(url, form)
        candidate = data.draw(mangled(signature))
        assume(candidate != signature)
        both_validate(token, url, form, candidate)


json_bodies = st.one_of(
    st.recursive(
        st.none() | st.booleans() | st.integers() | unicode_text,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(unicode_text, inner, max_size=3)
        ),
        max_leaves=8,
    ).map(lambda v: json.dumps(v, ensure_ascii=False)),
    st.text(st.characters(exclude_categories=["Cs"])),
)


@st.composite
def json_webhooks(draw: st.DrawFn) -> tuple[str, str]:
    """(url with ``bodySHA256`` of the body, body)."""
    body = draw(json_bodies)
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
    return draw(urls(extra_query=f"bodySHA256={digest}")), body


class TestJsonBodies:
    """JSON webhooks: the body must hash to ``bodySHA256``; the URL alone is signed."""

    @differential
    @given(tokens, json_webhooks(), st.data())
    def test_signed_json_bodies(
        self, token: str, webhook: tuple[str, str], data: st.DataObject
    ) -> None:
        """The right body passes (as str or bytes, port or no port); both agree."""
        url, body = webhook
        signed_at = data.draw(st.sampled_from(port_variants(url)))
        signature = RequestValidator(token).compute_signature(signed_at, {})
        assert both_validate(token, url, body, signature)
        assert TwilioSignatureValidator(token).validate(url, body.encode("utf-8"), signature)

    @differential
    @given(tokens, json_webhooks(), json_bodies)
    def test_altered_json_bodies(self, token: str, webhook: tuple[str, str], other: str) -> None:
        """Another body under the same signed URL: both refuse."""
        url, body = webhook
        assume(other != body)
        signature = RequestValidator(token).compute_signature(url, {})
        assert not both_validate(token, url, other, signature)

    @given(tokens, urls(), json_bodies)
    def test_json_body_without_hash_is_refused(self, token: str, url: str, body: str) -> None:
        """A raw body but no ``bodySHA256`` in the URL: refused (RequestValidator would crash)."""
        signature = RequestValidator(token).compute_signature(url, {})
        assert not TwilioSignatureValidator(token).validate(url, body, signature)

    def test_body_sha256_is_hex_sha256(self) -> None:
        """The hash is the lowercase hex SHA-256 of the UTF-8 body, str or bytes."""
        body = '{"event":"test","n":1}'
        expected = "829ae2d3a157f2d3a9e99f221392c416a31026fb2bc17ad755b69170e942c916"
        assert body_sha256(body) == body_sha256(body.encode()) == expected


# --- documented vectors and port rules ------------------------------------------------------------

T = "0123456789abcdef0123456789abcdef"
SM_A, SM_B = "SM" + "a" * 32, "SM" + "b" * 32
AC = "AC" + "1" * 32
V1_URL = "https://example.com/twilio/whatsapp/inbound"
V1 = {
    "MessageSid": SM_A,
    "SmsSid": SM_A,
    "SmsMessageSid": SM_A,
    "AccountSid": AC,
    "From": "whatsapp:+15551234567",
    "To": "whatsapp:+14155238886",
    "Body": "Hola! ¿qué tal? 👋",
    "ProfileName": "Zoë Example",
    "WaId": "15551234567",
    "MessageType": "text",
    "NumMedia": "0",
    "NumSegments": "1",
    "ReferralNumMedia": "0",
    "SmsStatus": "received",
    "ApiVersion": "2010-04-01",
}
V2_URL = "https://hooks.example.com:8443/twilio/status?tenant=acme&x=1"
V2 = {
    "MessageSid": SM_B,
    "SmsSid": SM_B,
    "AccountSid": AC,
    "MessageStatus": "read",
    "SmsStatus": "read",
    "EventType": "READ",
    "ChannelPrefix": "whatsapp",
    "ChannelInstallSid": "XE" + "c" * 32,
    "ChannelToAddress": "+155512XXXXX",
    "From": "whatsapp:+14155238886",
    "To": "whatsapp:+15551234567",
    "ApiVersion": "2010-04-01",
}
V3_MEDIA = (
    f"https://api.twilio.com/2010-04-01/Accounts/{AC}/Messages/MM{'d' * 32}/Media/ME{'e' * 32}"
)
V3 = MultiValueForm(
    Body=[""],
    From=["whatsapp:+15551234567"],
    NumMedia=["1"],
    MediaContentType0=["image/jpeg"],
    MediaUrl0=[V3_MEDIA],
    Tag=["b", "a", "b"],
)
V4_URL = "https://example.com/hook?bodySHA256=829ae2d3a157f2d3a9e99f221392c416a31026fb2bc17ad755b69170e942c916"
V4_BODY = '{"event":"test","n":1}'
V0_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}


class TestDocumentedVectors:
    """The vectors in twilio-facts.md, each confirmed with twilio 9.13.0."""

    @pytest.mark.parametrize(
        ("token", "url", "params", "signature"),
        [
            (
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                V0_PARAMS,
                "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
            ),
            (T, V1_URL, V1, "ToNMi343v2TlpzTJfxy2T2HlCQ8="),
            (T, V2_URL, V2, "zhyV0eHoSATlw6kG3xpdYuMzMv8="),
            (T, "http://localhost/wa", V3, "xI00hSCch7iCYZpGSYcZ0ZJs7lA="),
        ],
        ids=["V0", "V1-utf8", "V2-port-query", "V3-blank-and-repeats"],
    )
    def test_vectors(self, token: str, url: str, params: Any, signature: str) -> None:
        """Exact signature, accepted as is, refused with one field altered."""
        assert compute_signature(token, url, params) == signature
        assert both_validate(token, url, params, signature)
        other = "whatsapp:+15550000000"
        altered = (
            MultiValueForm(params | {"From": [other]})
            if isinstance(params, MultiValueForm)
            else params | {"From": other}
        )
        assert not both_validate(token, url, altered, signature)

    def test_v3_signing_string(self) -> None:
        """Keys sorted, each key's values sorted and deduplicated, blank values kept."""
        from ratatosk.twilio.signature import signing_string

        assert signing_string("http://localhost/wa", V3) == (
            "http://localhost/waBodyFromwhatsapp:+15551234567MediaContentType0image/jpeg"
            f"MediaUrl0{V3_MEDIA}NumMedia1TagaTagb"
        )

    def test_v4_json_body(self) -> None:
        """The JSON vector passes, and fails once the body changes."""
        assert compute_signature(T, V4_URL) == "Eu3UTooAOt0PRDyz+Sp7S3EE+TI="
        assert both_validate(T, V4_URL, V4_BODY, "Eu3UTooAOt0PRDyz+Sp7S3EE+TI=")
        assert not both_validate(
            T, V4_URL, V4_BODY.replace("1", "2"), "Eu3UTooAOt0PRDyz+Sp7S3EE+TI="
        )

    def test_port_rules(self) -> None:
        """:443 signatures pass port-less; port-less ones pass at :8443; :443 fails at :8443."""
        over_443 = "3oF4qVad6ELUnwDnkyBQw3pOOvY="
        assert (
            compute_signature(T, V1_URL.replace("example.com", "example.com:443"), V1) == over_443
        )
        assert both_validate(T, V1_URL, V1, over_443)
        without_port = "7lg9KaZjyfbFMze2NKx97+54NrM="
        assert compute_signature(T, V2_URL.replace(":8443", ""), V2) == without_port
        assert both_validate(T, V2_URL, V2, without_port)
        at_443 = compute_signature(T, V2_URL.replace(":8443", ":443"), V2)
        assert not both_validate(T, V2_URL, V2, at_443)

    @pytest.mark.parametrize(
        "signed_at", ["https://Hooks.Example.com/x", "https://Hooks.Example.com:8443/x"]
    )
    def test_mixed_case_host_with_port(self, signed_at: str) -> None:
        """Twilio signs the URL as configured; a mixed-case host must not be lower-cased."""
        signature = compute_signature("12345", signed_at, {})
        assert both_validate("12345", "https://Hooks.Example.com:8443/x", {}, signature)

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("https://Example.COM/x", ("https://Example.COM/x", "https://Example.COM:443/x")),
            (
                "https://Example.COM:8443/x?a=1",
                ("https://Example.COM:8443/x?a=1", "https://Example.COM/x?a=1"),
            ),
            ("http://h/x", ("http://h/x", "http://h:80/x")),
        ],
    )
    def test_url_variants_keep_the_host_as_given(self, url: str, expected: tuple[str, ...]) -> None:
        """Port variants change only the port, never the host's case."""
        assert set(url_variants(url)) == set(expected)


# --- behaviour of the comparison ---------------------------------------------------------------


class TestComparison:
    """Signatures of any shape are compared safely: a bool, never an exception."""

    @given(
        st.none()
        | st.text()
        | st.sampled_from(["", " ", "é" * 28, "👋", "ToNMi343v2TlpzTJfxy2T2HlCQ8"])
    )
    def test_any_signature_text_gives_a_bool(self, signature: str | None) -> None:
        """Different lengths, non-ASCII, surrogates or nothing at all: refused, no error."""
        assume(signature != "ToNMi343v2TlpzTJfxy2T2HlCQ8=")
        assert TwilioSignatureValidator(T).validate(V1_URL, V1, signature) is False

    @pytest.mark.parametrize("url", [None, 42, b"https://example.com/"])
    def test_non_string_urls_are_refused(self, url: object) -> None:
        """A URL that is not a str is simply not valid."""
        assert (
            TwilioSignatureValidator(T).validate(url, V1, "ToNMi343v2TlpzTJfxy2T2HlCQ8=") is False
        )  # type: ignore[arg-type]

    def test_every_prefix_and_one_character_change_fails(self) -> None:
        """No prefix of the right signature, and no single-character change, is accepted."""
        validator = TwilioSignatureValidator(T)
        good = "ToNMi343v2TlpzTJfxy2T2HlCQ8="
        assert validator.validate(V1_URL, V1, good)
        for i in range(len(good)):
            assert not validator.validate(V1_URL, V1, good[:i])
            flipped = good[:i] + ("A" if good[i] != "A" else "B") + good[i + 1 :]
            assert not validator.validate(V1_URL, V1, flipped)

    @given(tokens)
    def test_validator_never_shows_its_token(self, token: str) -> None:
        """repr and str of the validator carry no token, whether given as str or Secret."""
        assume(
            len(token.strip()) >= 4
            and token not in "TwilioSignatureValidator(auth_token=Secret('********'))"
        )
        for validator in (TwilioSignatureValidator(token), TwilioSignatureValidator(Secret(token))):
            assert token not in repr(validator)
            assert token not in str(validator)
