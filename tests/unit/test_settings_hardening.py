"""Settings that carry a secret where none belongs, or a token no key can be made from.

Issue 16 found an API base URL with ``sid:token@`` in it echoed verbatim in
the settings error, and a token that was not UTF-8 accepted by
``initialize()`` and then failing every webhook with 500. Both are refused
at ``initialize`` now, with messages that never repeat the secret part.
"""

from __future__ import annotations

import pytest

from ratatosk import ConnectionSettings
from ratatosk.domain.schema import validate_settings
from ratatosk.testing import FakeTwilio
from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector
from ratatosk.twilio.signature import TwilioSignatureValidator, compute_signature

SCHEMA = TwilioChannelSchemas.TWILIO_WHATSAPP
ACCOUNT = "AC" + "5e" * 16
SECRET = "url-secret-4f3e2d1c0b"
URL_PARAMETERS = ("ApiBaseUrl", "ContentApiBaseUrl", "WebhookUrl", "StatusCallback")
WITH_CREDENTIALS = (
    f"http://{ACCOUNT}:{SECRET}@127.0.0.1:4010",
    f"https://{SECRET}@api.twilio.com",
    f"https://{ACCOUNT}:{SECRET}@hooks.example.com:99999/x",  # a bad port as well
    f"{ACCOUNT}:{SECRET}@hooks.example.com/x",  # no scheme at all
    f"http://{SECRET}@[::1/x",  # not even parseable
)


def settings(**parameters: str) -> ConnectionSettings:
    base = {"AccountSid": ACCOUNT, "AuthToken": "token-0123456789"}
    return ConnectionSettings(parameters=base | parameters)


@pytest.mark.parametrize("parameter", URL_PARAMETERS)
@pytest.mark.parametrize("url", WITH_CREDENTIALS)
def test_urls_with_credentials_are_refused_without_showing_them(parameter: str, url: str) -> None:
    """Every URL setting refuses user-info; the message names the field, not the value."""
    [problem] = validate_settings(SCHEMA, settings(**{parameter: url}))
    assert problem.field == parameter
    assert "credentials" in problem.message
    assert SECRET not in problem.message


@pytest.mark.parametrize("parameter", URL_PARAMETERS)
async def test_initialize_refuses_them_with_a_coded_error(parameter: str) -> None:
    """INVALID_CONNECTION_SETTINGS, and the secret is in no part of the error."""
    url = f"http://{ACCOUNT}:{SECRET}@127.0.0.1:4010"
    connector = TwilioWhatsAppConnector(
        SCHEMA, settings(**{parameter: url}), transport=FakeTwilio(ACCOUNT)
    )
    result = await connector.initialize()
    assert result.error is not None
    assert result.error.code == "INVALID_CONNECTION_SETTINGS"
    assert SECRET not in repr(result.error.to_dict()) + str(result.error)
    await connector.shutdown()


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/a@b", "https://hooks.example.com/x?to=ops@example.com"]
)
def test_an_at_sign_after_the_host_is_fine(url: str) -> None:
    """Only user-info is refused: an ``@`` in the path or query is part of a normal URL."""
    assert validate_settings(SCHEMA, settings(WebhookUrl=url)) == ()


def test_other_url_errors_still_show_the_value() -> None:
    """Without an ``@`` nothing can be secret: the bad value is quoted as before."""
    [problem] = validate_settings(SCHEMA, settings(StatusCallback="ftp://example.com/x"))
    assert "'ftp://example.com/x'" in problem.message


@pytest.mark.parametrize("token", ["\udcff\udcfe-not-utf8", "token-\ud83d-half-an-emoji"])
async def test_a_token_that_is_not_utf8_is_refused_at_initialize(token: str) -> None:
    """What a non-UTF-8 environment variable decodes to: refused, not a 500 per webhook."""
    [problem] = validate_settings(SCHEMA, settings(AuthToken=token))
    assert (problem.field, problem.message) == ("AuthToken", "is not valid UTF-8 text")
    connector = TwilioWhatsAppConnector(
        SCHEMA, settings(AuthToken=token), transport=FakeTwilio(ACCOUNT)
    )
    result = await connector.initialize()
    assert result.error is not None
    assert result.error.code == "INVALID_CONNECTION_SETTINGS"
    await connector.shutdown()


def test_a_validator_given_such_a_token_refuses_instead_of_raising() -> None:
    """Built directly with a broken token, the validator answers False, never an exception."""
    validator = TwilioSignatureValidator("\udcff-broken")
    url = "https://hooks.example.com/webhooks/twilio/whatsapp"
    assert not validator.validate(url, {"Body": ["hi"]}, compute_signature("x", url, {}))
    assert not validator.validate(url + "?bodySHA256=00", '{"Body": "\ud83d"}', "c2lnbmF0dXJl")
