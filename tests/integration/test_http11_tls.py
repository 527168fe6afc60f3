"""The HTTP/1.1 client over TLS, as it talks to api.twilio.com: a real TLS server on loopback.

The certificate comes from a throwaway CA (trustme): trusted, the request goes
through on the pooled connection; untrusted (the system's CA store, which
never holds that CA), the connection is refused before a byte of the request
is written, so the send is known not to have reached anyone.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import pytest
import trustme
import uvloop
from aiohttp import web

from ratatosk.adapters.http11 import Http11Client, HttpError
from ratatosk.testing import BackgroundEmulator


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_server(authority: trustme.CA) -> AsyncIterator[str]:
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(served)

    async def messages(request: web.Request) -> web.Response:
        form = await request.post()
        return web.json_response({"to": form["To"], "peer_tls": request.secure}, status=201)

    app = web.Application()
    app.router.add_post("/2010-04-01/Messages.json", messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=served)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_trusted_certificate_carries_keep_alive_requests(
    authority: trustme.CA, tls_server: str
) -> None:
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    client = Http11Client(tls_server, ssl_context=trusting)
    try:
        for n in range(3):
            answer = await client.request(
                "POST",
                "/2010-04-01/Messages.json",
                f"To=whatsapp%3A%2B1555000{n:04d}".encode(),
                content_type="application/x-www-form-urlencoded",
            )
            assert answer.status == 201
            assert b'"peer_tls": true' in answer.body
            assert f"+1555000{n:04d}".encode() in answer.body
    finally:
        await client.close()


async def test_an_untrusted_certificate_is_refused_before_anything_is_sent(
    tls_server: str,
) -> None:
    client = Http11Client(tls_server)  # the system's CA store: it never holds the test CA
    try:
        with pytest.raises(HttpError) as refused:
            await client.request("POST", "/2010-04-01/Messages.json", b"To=x")
        assert refused.value.sent is False
        assert "certificate" in str(refused.value).lower()
    finally:
        await client.close()


def test_the_client_runs_on_uvloop_too() -> None:
    """uvloop's transports are not ``asyncio.Transport`` subclasses; the client must not care
    (``serve``, ``worker`` and uvicorn run on uvloop when it is installed)."""

    async def account(url: str, sid: str) -> int:
        client = Http11Client(url)
        try:
            answer = await client.request("GET", f"/2010-04-01/Accounts/{sid}.json")
            return answer.status
        finally:
            await client.close()

    with BackgroundEmulator() as emulator:
        status = uvloop.run(account(emulator.url, emulator.account_sid))
    assert status == 401  # the emulator answered (no credentials sent): the exchange completed
