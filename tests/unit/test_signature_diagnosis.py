"""Signature diagnosis, pure: each common misconfiguration is recognised and named.

Each case signs a webhook the way Twilio would (for the URL Twilio called),
then asks :func:`diagnose` about the URL a misconfigured server checked, and
checks the URL it finds, the cause and the setting it names. The validator is
the real one, the same the server uses.
"""

from __future__ import annotations

import pytest

from ratatosk.twilio.signature import TwilioSignatureValidator, body_sha256, compute_signature
from ratatosk.twilio.signature_diagnosis import (
    SignatureDiagnosis,
    candidate_urls,
    diagnose,
    summary,
)

TOKEN = "diagnosis-token-0123456789abcdef"
PUBLIC = "https://hooks.example.com/webhooks/twilio/whatsapp"
FORM = {"Body": ["hello"], "From": ["whatsapp:+15551234567"], "MessageSid": ["SM" + "a" * 32]}
VALIDATOR = TwilioSignatureValidator(TOKEN)


def _form(
    checked: str,
    *,
    signed: str = PUBLIC,
    headers: dict[str, list[str]] | None = None,
    trust_forwarded: bool | None = None,
    token: str = TOKEN,
) -> SignatureDiagnosis:
    signature = compute_signature(token, signed, FORM)
    return diagnose(
        checked,
        lambda url: VALIDATOR.validate(url, FORM, signature),
        signature_present=True,
        headers=headers,
        trust_forwarded=trust_forwarded,
    )


def _json(checked: str, body: str, *, signed_body: str | None = None) -> SignatureDiagnosis:
    signed = f"{PUBLIC}?bodySHA256={body_sha256(signed_body or body)}"
    signature = compute_signature(TOKEN, signed, {})
    return diagnose(
        checked,
        lambda url: VALIDATOR.validate(url, body, signature),
        signature_present=True,
        json_body=body,
    )


class TestWhatMatches:
    def test_a_signature_that_holds_is_said_to_hold(self) -> None:
        found = _form(PUBLIC)
        assert found.valid
        assert found.matched_url is None
        assert found.tried == (PUBLIC, "https://hooks.example.com:443/webhooks/twilio/whatsapp")

    def test_tls_ended_at_a_proxy_is_recognised(self) -> None:
        """The server saw http; Twilio called https: set the public URL."""
        found = _form("http://hooks.example.com/webhooks/twilio/whatsapp")
        assert not found.valid
        assert found.matched_url == PUBLIC
        assert found.differences == ("scheme https, not http",)
        assert "TLS ends before the server" in found.cause
        assert found.setting == "--public-url https://hooks.example.com (public_url=)"

    def test_the_inner_port_of_a_tls_terminator_is_dropped(self) -> None:
        found = _form("http://hooks.example.com:8080/webhooks/twilio/whatsapp")
        assert found.matched_url == PUBLIC
        assert found.setting is not None
        assert "--public-url https://hooks.example.com " in found.setting

    def test_untrusted_forwarded_headers_name_both_settings(self) -> None:
        """Behind a proxy that sets X-Forwarded-*: the public URL, or trusting them."""
        headers = {
            "X-Forwarded-Proto": ["https"],
            "X-Forwarded-Host": ["hooks.example.com"],
            "Host": ["127.0.0.1:8080"],
        }
        found = _form(
            "http://127.0.0.1:8080/webhooks/twilio/whatsapp",
            headers=headers,
            trust_forwarded=False,
        )
        assert found.matched_url == PUBLIC
        assert found.forwarded == (
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "hooks.example.com"),
        )
        assert found.setting is not None
        assert "--public-url https://hooks.example.com" in found.setting
        assert "--trust-forwarded" in found.setting

    def test_an_ngrok_host_is_found_in_x_forwarded_host(self) -> None:
        tunnel = "https://ab12cd.ngrok.app/webhooks/twilio/whatsapp"
        found = _form(
            "http://localhost:8080/webhooks/twilio/whatsapp",
            signed=tunnel,
            headers={"X-Forwarded-Host": ["ab12cd.ngrok.app"], "X-Forwarded-Proto": ["https"]},
        )
        assert found.matched_url == tunnel
        assert found.setting is not None
        assert found.setting.startswith("--public-url https://ab12cd.ngrok.app ")

    def test_a_path_prefix_stripped_by_the_proxy_goes_into_the_public_url(self) -> None:
        found = _form(
            "https://hooks.example.com/whatsapp",
            headers={"X-Forwarded-Prefix": ["/webhooks/twilio"]},
        )
        assert found.matched_url == PUBLIC
        assert "path prefix '/webhooks/twilio'" in found.cause
        assert (
            found.setting == "--public-url https://hooks.example.com/webhooks/twilio (public_url=)"
        )

    @pytest.mark.parametrize(
        ("checked", "signed", "public"),
        [
            (PUBLIC + "/webhooks/twilio/whatsapp", PUBLIC, "https://hooks.example.com"),
            (
                PUBLIC + "/webhooks/twilio/whatsapp/status",
                PUBLIC + "/status",
                "https://hooks.example.com",
            ),
            (
                "https://hooks.example.com/tenant-7/wh/x/wh/x",
                "https://hooks.example.com/tenant-7/wh/x",
                "https://hooks.example.com/tenant-7",
            ),
        ],
    )
    def test_a_public_url_given_with_the_route_is_found_and_named(
        self, checked: str, signed: str, public: str
    ) -> None:
        """--public-url with the webhook route in it: the server checks the route twice."""
        found = _form(checked, signed=signed)
        assert found.matched_url == signed
        assert "server checked it twice" in found.cause
        assert found.setting == f"--public-url {public} (public_url=)"

    def test_a_query_added_after_twilio_signed_is_found(self) -> None:
        """A query Twilio did not sign (added by a rewrite) is dropped; the URL is to fix."""
        found = _form(PUBLIC + "?tenant=7&x=1")
        assert found.matched_url == PUBLIC
        assert "path or query" in found.cause
        assert found.setting == "configure at Twilio the exact URL the server receives"

    def test_a_wrong_token_matches_nothing_and_says_so(self) -> None:
        found = _form(PUBLIC, token="another-accounts-token-000000000")
        assert not found.valid
        assert found.matched_url is None
        assert "auth token" in found.cause
        assert found.setting is None

    def test_a_missing_signature_is_named(self) -> None:
        found = diagnose(PUBLIC, lambda _: False, signature_present=False)
        assert "no X-Twilio-Signature" in found.cause


class TestJsonBodies:
    body = '{"MessageSid": "SM1", "Body": "hi"}'

    def test_the_body_hash_is_reported_and_the_scheme_found(self) -> None:
        hashed = (
            f"http://hooks.example.com/webhooks/twilio/whatsapp?bodySHA256={body_sha256(self.body)}"
        )
        found = _json(hashed, self.body)
        assert found.body_hash == "matched"
        assert found.matched_url == hashed.replace("http:", "https:")

    def test_a_changed_body_is_named_as_the_cause(self) -> None:
        changed = self.body.replace("hi", "hi ")
        hashed = f"{PUBLIC}?bodySHA256={body_sha256(self.body)}"
        found = _json(hashed, changed, signed_body=self.body)
        assert found.body_hash == "mismatched"
        assert found.matched_url is None
        assert "re-encoded" in found.cause

    def test_a_url_that_lost_its_query_is_found(self) -> None:
        found = _json(PUBLIC, self.body)
        assert found.body_hash == "missing"
        assert found.matched_url == f"{PUBLIC}?bodySHA256={body_sha256(self.body)}"
        assert "lost its query" in found.cause


class TestCandidatesAndSummary:
    def test_the_checked_url_comes_first_and_fewest_changes_next(self) -> None:
        found = candidate_urls("http://a.example/p", {"X-Forwarded-Host": ["b.example"]})
        assert found[0] == "http://a.example/p"
        assert found.index("https://a.example/p") < found.index("https://b.example/p/")

    def test_hostile_header_values_are_bounded_and_unusable_hosts_skipped(self) -> None:
        headers = {
            "X-Forwarded-Host": ["evil@x", "a/b", "\x1b[2J", *[f"h{i}.example" for i in range(50)]]
        }
        found = candidate_urls("https://a.example/p", headers)
        assert len(found) <= 400
        assert not any("@" in u or "\x1b" in u for u in found)

    def test_the_summary_is_one_escaped_line_with_what_was_checked(self) -> None:
        headers = {"X-Forwarded-Host": ["hooks.example.com\x1b[2J"], "X-Forwarded-Proto": ["https"]}
        found = _form("http://hooks.example.com/webhooks/twilio/whatsapp", headers=headers)
        line = summary(found)
        assert "\n" not in line
        assert "\x1b" not in line
        assert "checked 'http://hooks.example.com/webhooks/twilio/whatsapp'" in line
        assert "X-Forwarded-Proto='https'" in line
        assert f"it holds for {PUBLIC!r}" in line
        assert TOKEN not in line


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_every_diagnosis_serialises(scheme: str) -> None:
    found = _form(f"{scheme}://hooks.example.com/webhooks/twilio/whatsapp")
    as_dict = found.to_dict()
    assert as_dict["valid"] is (scheme == "https")
    assert isinstance(as_dict["tried"], list)
