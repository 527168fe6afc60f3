"""The rules of a media fetch, pure: where credentials may go, which redirects, what type.

The HTTP adapter and FakeTwilio both follow these functions, so each rule is
pinned here once, with Hypothesis for the one that matters most: no URL off
the API origin is ever accepted for credentials.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ratatosk.ports import TWILIO_MEDIA_HOSTS, MediaFailure, MediaFetchError, MediaPolicy
from ratatosk.twilio.media import (
    check_length,
    check_media_url,
    follow_redirect,
    normalise_content_type,
    origin_of,
)

API = "https://api.twilio.com"
ACCOUNT = "AC" + "0a" * 16
MESSAGE = "MM" + "1b" * 16
MEDIA = "ME" + "2c" * 16
PATH = f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{MESSAGE}/Media/{MEDIA}"


def _refused(failure: MediaFailure, call: object) -> MediaFetchError:
    assert callable(call)
    with pytest.raises(MediaFetchError) as raised:
        call()
    assert raised.value.failure is failure
    return raised.value


class TestCheckMediaUrl:
    """Credentials go to a message's media resource on the configured API origin only."""

    def test_twilios_own_media_url_is_accepted_with_its_sids(self) -> None:
        assert check_media_url(API + PATH, API) == (ACCOUNT, MESSAGE, MEDIA)

    @pytest.mark.parametrize(
        "url",
        [
            "HTTPS://API.Twilio.com" + PATH,  # scheme and host are case-insensitive
            "https://api.twilio.com:443" + PATH,  # the default port, spelled out
            API + PATH.replace("/Messages/MM", "/Messages/SM"),
        ],
    )
    def test_the_same_origin_spelled_otherwise_is_accepted(self, url: str) -> None:
        check_media_url(url, API + "/")

    @pytest.mark.parametrize(
        "url",
        [
            "http://api.twilio.com" + PATH,  # another scheme
            "https://api.twilio.com:8443" + PATH,  # another port
            "https://api.twilio.com.evil.example" + PATH,  # a prefix of the host
            "https://evil.example/api.twilio.com" + PATH,
            "https://api.twilio.com@evil.example" + PATH,  # user info that reads as the host
            "https://evil.example\\@api.twilio.com" + PATH,  # parsers disagree on backslashes
            "https://user:pass@api.twilio.com" + PATH,  # user info on the right host
            "ftp://api.twilio.com" + PATH,
            "https://api.twilio.com:99999" + PATH,
            "https:///" + PATH,
            "",
            API + f"/2010-04-01/Accounts/{ACCOUNT}.json",  # the API, but not a media resource
            API + PATH + "/../../../../Calls.json",
            API + PATH.replace(MEDIA, "ME123"),
        ],
    )
    def test_anything_else_is_refused(self, url: str) -> None:
        _refused(MediaFailure.URL_NOT_ALLOWED, lambda: check_media_url(url, API))

    @given(
        scheme=st.sampled_from(["http", "https"]),
        host=st.from_regex(r"[a-z0-9.-]{1,30}", fullmatch=True),
        port=st.none() | st.integers(1, 65535),
    )
    @example(scheme="https", host="api.twilio.com", port=444)
    @example(scheme="http", host="api.twilio.com", port=None)
    @example(scheme="https", host="api.twilio.co", port=None)
    def test_no_other_origin_ever_passes(self, scheme: str, host: str, port: int | None) -> None:
        """Whatever the scheme, host and port, only the API origin itself is accepted."""
        netloc = host if port is None else f"{host}:{port}"
        url = f"{scheme}://{netloc}{PATH}"
        same = origin_of(url) == ("https", "api.twilio.com", 443)
        if same:
            assert check_media_url(url, API) == (ACCOUNT, MESSAGE, MEDIA)
        else:
            _refused(MediaFailure.URL_NOT_ALLOWED, lambda: check_media_url(url, API))


class TestFollowRedirect:
    """A redirect leads to an allowed host, never down to http, a bounded number of times."""

    policy = MediaPolicy()

    def test_twilios_cdn_is_followed_by_default(self) -> None:
        target = "https://mms.twiliocdn.com/AC/abc?Expires=1&Signature=x"
        assert follow_redirect(API + PATH, target, self.policy, 0) == target

    def test_a_relative_location_is_resolved_against_the_current_url(self) -> None:
        cdn = "https://mms.twiliocdn.com/AC/abc"
        assert follow_redirect(cdn, "/AC/other", self.policy, 1) == (
            "https://mms.twiliocdn.com/AC/other"
        )

    @pytest.mark.parametrize(
        "location",
        [
            "https://evil.example/x",
            "//evil.example/x",  # scheme-relative
            "https://mms.twiliocdn.com.evil.example/x",
            "https://mms.twiliocdn.com@evil.example/x",
            "https://api.twilio.com/x",  # not a media host: the API is not on the list
            "javascript:alert(1)",
        ],
    )
    def test_a_host_off_the_list_is_refused(self, location: str) -> None:
        _refused(
            MediaFailure.REDIRECT_NOT_ALLOWED,
            lambda: follow_redirect(API + PATH, location, self.policy, 0),
        )

    def test_https_never_leads_down_to_http(self) -> None:
        refused = _refused(
            MediaFailure.REDIRECT_NOT_ALLOWED,
            lambda: follow_redirect(API + PATH, "http://mms.twiliocdn.com/x", self.policy, 0),
        )
        assert "http" in str(refused)

    def test_a_host_port_entry_allows_that_port_only(self) -> None:
        policy = MediaPolicy(allowed_hosts=("127.0.0.1:4011",))
        here = "http://127.0.0.1:4010" + PATH
        assert follow_redirect(here, "http://127.0.0.1:4011/a", policy, 0)
        _refused(
            MediaFailure.REDIRECT_NOT_ALLOWED,
            lambda: follow_redirect(here, "http://127.0.0.1:4012/a", policy, 0),
        )

    def test_redirects_beyond_max_redirects_are_refused(self) -> None:
        policy = MediaPolicy(max_redirects=2)
        target = "https://mms.twiliocdn.com/x"
        assert follow_redirect(target, target, policy, 1) == target
        refused = _refused(
            MediaFailure.REDIRECT_NOT_ALLOWED, lambda: follow_redirect(target, target, policy, 2)
        )
        assert refused.details["redirects"] == 3

    def test_a_redirect_without_location_fails(self) -> None:
        _refused(MediaFailure.FAILED, lambda: follow_redirect(API + PATH, None, self.policy, 0))


class TestPolicyAndBody:
    def test_the_default_hosts_are_twilios_media_hosts(self) -> None:
        assert (
            MediaPolicy().allowed_hosts
            == TWILIO_MEDIA_HOSTS
            == (
                "mms.twiliocdn.com",
                "s3-external-1.amazonaws.com",
            )
        )

    def test_hosts_are_lower_cased_and_a_string_is_a_comma_list(self) -> None:
        assert MediaPolicy(allowed_hosts=" CDN.example , 127.0.0.1:4011,").allowed_hosts == (
            "cdn.example",
            "127.0.0.1:4011",
        )

    @pytest.mark.parametrize("entry", ["https://cdn.example", "cdn.example/x", "u@cdn.example"])
    def test_an_entry_that_is_not_a_host_is_refused(self, entry: str) -> None:
        """A URL in the list would match nothing and fail every fetch: said at once."""
        with pytest.raises(ValueError, match="host or host:port"):
            MediaPolicy(allowed_hosts=(entry,))

    @pytest.mark.parametrize(
        "options",
        [{"max_bytes": 0}, {"timeout": 0}, {"timeout": float("nan")}, {"max_redirects": -1}],
    )
    def test_nonsense_limits_are_refused(self, options: dict[str, float]) -> None:
        with pytest.raises(ValueError, match="must be"):
            MediaPolicy(**options)  # type: ignore[arg-type]

    def test_a_declared_length_over_the_limit_is_too_large(self) -> None:
        policy = MediaPolicy(max_bytes=10)
        check_length(10, policy)
        check_length(None, policy)
        refused = _refused(MediaFailure.TOO_LARGE, lambda: check_length(11, policy))
        assert refused.details == {"max_bytes": 10, "declared": 11}

    @pytest.mark.parametrize(
        ("raw", "normalised"),
        [
            ("image/jpeg", "image/jpeg"),
            ("Image/JPEG; charset=binary", "image/jpeg"),
            ("  audio/ogg ; codecs=opus", "audio/ogg"),
            ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
             "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
            (None, "application/octet-stream"),
            ("", "application/octet-stream"),
            ("jpeg", "application/octet-stream"),
            ("image/", "application/octet-stream"),
            ("image/jp eg", "application/octet-stream"),
            ("text/html\r\nX-Evil: 1", "application/octet-stream"),
        ],
    )  # fmt: skip
    def test_the_content_type_is_normalised(self, raw: str | None, normalised: str) -> None:
        assert normalise_content_type(raw) == normalised
