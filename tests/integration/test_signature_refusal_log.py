"""A refused signature explains itself in the log: a real server on loopback, real requests.

The requests are signed like Twilio's, for the URL Twilio would have called,
and sent to a server configured the way the common mistakes configure it
(TLS ended at a proxy, forwarded headers not trusted). The log line must say
what was checked, what the forwarded headers were and whether they count,
the likely cause and the setting to change; never the body or the token; and
only a few lines a minute, however many forgeries arrive.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from ratatosk import ConnectionSettings
from ratatosk.adapters.http_server import RunningServer, start_server
from ratatosk.adapters.webhook_server import (
    REFUSAL_LOG_BURST,
    SIGNATURE_HEADER,
    STATS,
    create_webhook_app,
)
from ratatosk.testing import FakeTwilio
from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector
from ratatosk.twilio.signature import body_sha256, compute_signature

ACCOUNT = "AC" + "4d" * 16
TOKEN = "refusal-log-token-77665544332211"
PATH = "/webhooks/twilio/whatsapp"
PUBLIC = "https://hooks.example.com"
SECRET_TEXT = "PRIVATE-BODY-TEXT-do-not-log"
FORM = {
    "MessageSid": "SM" + "5e" * 16,
    "AccountSid": ACCOUNT,
    "From": "whatsapp:+15551234567",
    "To": "whatsapp:+14155238886",
    "Body": SECRET_TEXT,
    "NumMedia": "0",
}
PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.example.com"}


@pytest.fixture
async def connector() -> AsyncIterator[TwilioWhatsAppConnector]:
    settings = (
        ConnectionSettings().set_parameter("AccountSid", ACCOUNT).set_parameter("AuthToken", TOKEN)
    )
    async with TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP, settings, transport=FakeTwilio(ACCOUNT, TOKEN)
    ) as connector:
        yield connector


async def _start(connector: TwilioWhatsAppConnector, **options: Any) -> RunningServer:
    app = create_webhook_app(connector, validator=connector.signature_validator, **options)
    return await start_server(app, "127.0.0.1", 0, access_log=False)


async def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as answer,
    ):
        return answer.status


def _signed_form(signed_for: str) -> tuple[bytes, dict[str, str]]:
    return urlencode(FORM).encode(), {
        "Content-Type": "application/x-www-form-urlencoded",
        SIGNATURE_HEADER: compute_signature(TOKEN, signed_for, FORM),
    }


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "ratatosk.webhooks" and r.levelno == logging.WARNING
    ]


async def test_behind_a_tls_proxy_the_log_names_the_url_and_both_settings(
    connector: TwilioWhatsAppConnector, caplog: pytest.LogCaptureFixture
) -> None:
    """The server checks http://127.0.0.1:PORT; the line says https://hooks... holds."""
    caplog.set_level(logging.WARNING, logger="ratatosk.webhooks")
    body, headers = _signed_form(PUBLIC + PATH)
    server = await _start(connector)
    try:
        status = await _post(server.url + PATH, body, headers | PROXY)
    finally:
        await server.close()
    assert status == 403
    [line] = _lines(caplog)
    assert f"refused a webhook to '{PATH}', URL from the request's Host" in line
    assert f"checked '{server.url}{PATH}'" in line
    assert "X-Forwarded-Proto='https'" in line
    assert "X-Forwarded-Host='hooks.example.com' not trusted (trust_forwarded is off)" in line
    assert f"it holds for '{PUBLIC}{PATH}'" in line
    assert f"--public-url {PUBLIC}" in line
    assert "--trust-forwarded" in line
    assert SECRET_TEXT not in line
    assert TOKEN not in caplog.text


async def test_the_settings_the_log_names_do_make_the_signature_hold(
    connector: TwilioWhatsAppConnector, caplog: pytest.LogCaptureFixture
) -> None:
    """Following the advice: the same request is accepted with either setting."""
    body, headers = _signed_form(PUBLIC + PATH)
    for options in ({"public_url": PUBLIC}, {"trust_forwarded": True}):
        server = await _start(connector, **options)
        try:
            assert await _post(server.url + PATH, body, headers | PROXY) == 200, options
        finally:
            await server.close()
    assert _lines(caplog) == []


async def test_a_json_body_that_changed_is_named_without_showing_it(
    connector: TwilioWhatsAppConnector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ratatosk.webhooks")
    original = json.dumps(FORM).encode()
    changed = original.replace(b"PRIVATE", b"Private")
    server = await _start(connector, public_url=PUBLIC)
    try:
        query = f"?bodySHA256={body_sha256(original)}"
        signature = compute_signature(TOKEN, PUBLIC + PATH + query, {})
        status = await _post(
            server.url + PATH + query,
            changed,
            {"Content-Type": "application/json", SIGNATURE_HEADER: signature},
        )
    finally:
        await server.close()
    assert status == 403
    [line] = _lines(caplog)
    assert "URL from public_url" in line
    assert "JSON body hash mismatched" in line
    assert "re-encoded" in line
    assert SECRET_TEXT not in line
    assert "Private-BODY" not in line


async def test_a_flood_of_forgeries_logs_a_few_lines_and_counts_the_rest(
    connector: TwilioWhatsAppConnector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ratatosk.webhooks")
    body, headers = _signed_form(PUBLIC + PATH)
    forged = headers | {SIGNATURE_HEADER: "bm90IGEgc2lnbmF0dXJl"}
    app = create_webhook_app(connector, validator=connector.signature_validator, public_url=PUBLIC)
    server = await start_server(app, "127.0.0.1", 0, access_log=False)
    try:
        statuses = [
            await _post(server.url + PATH, body, forged) for _ in range(REFUSAL_LOG_BURST + 3)
        ]
        statuses.append(
            await _post(server.url + PATH, body, {"Content-Type": headers["Content-Type"]})
        )
    finally:
        await server.close()
    assert statuses == [403] * (REFUSAL_LOG_BURST + 4)
    assert app[STATS].refused_signature == REFUSAL_LOG_BURST + 4
    lines = _lines(caplog)
    assert len(lines) == REFUSAL_LOG_BURST
    assert "only counted" in lines[-1]
    assert all("signature present" in line for line in lines)
    assert all("no plausible URL matches" in line for line in lines)


async def test_a_missing_signature_is_said_to_be_missing(
    connector: TwilioWhatsAppConnector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ratatosk.webhooks")
    body, headers = _signed_form(PUBLIC + PATH)
    server = await _start(connector, public_url=PUBLIC)
    try:
        status = await _post(server.url + PATH, body, {"Content-Type": headers["Content-Type"]})
    finally:
        await server.close()
    assert status == 403
    [line] = _lines(caplog)
    assert "signature missing" in line
    assert "no X-Twilio-Signature header" in line
