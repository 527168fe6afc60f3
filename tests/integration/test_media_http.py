"""Fetching inbound media over real HTTP: the emulator's Media URL and CDN, and hostile hosts.

Every server here is a real aiohttp server on 127.0.0.1 that records what
reaches it. A "Twilio API" server of the test's own scripts the redirects an
attacker would want (to a hostile host, through an allowed CDN and onwards);
the hostile server must never see the account's credentials, and mostly
never sees a request at all. The happy path is the emulator's: a customer's
photo arrives in a signed webhook, the handler fetches it by its Media URL.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ratatosk import ConnectionSettings, MediaContent, ReceiveResult
from ratatosk.adapters.http_server import RunningServer, start_server
from ratatosk.adapters.webhook_server import create_webhook_app
from ratatosk.domain.result import ConnectorException
from ratatosk.emulator.app import start_emulator
from ratatosk.ports import MediaPolicy
from ratatosk.testing import InboundMedia
from ratatosk.twilio import TwilioChannelSchemas, TwilioErrorCodes, TwilioWhatsAppConnector
from ratatosk.twilio.media import MediaStream

ACCOUNT = "AC" + "3c" * 16
TOKEN = "media-secret-token-5e6f7a8b9c0d1e2f"
MEDIA_PATH = f"/2010-04-01/Accounts/{ACCOUNT}/Messages/MM{'1' * 32}/Media/ME{'2' * 32}"
BASIC = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
CUSTOMER = "whatsapp:+15551234567"
BUSINESS = "whatsapp:+14155238886"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Host:
    """A loopback server that records every request's path and headers."""

    def __init__(self, server: RunningServer, seen: list[tuple[str, dict[str, str]]]) -> None:
        self.server = server
        self.seen = seen

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def hostport(self) -> str:
        return self.url.split("://", 1)[1]

    def authorizations(self) -> list[str]:
        return [h["Authorization"] for _, h in self.seen if "Authorization" in h]


async def _host(answer: Handler) -> Host:
    seen: list[tuple[str, dict[str, str]]] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append((request.path_qs, dict(request.headers)))
        return await answer(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    return Host(await start_server(app, "127.0.0.1", 0, access_log=False), seen)


def _redirect(to: Callable[[], str]) -> Handler:
    async def answer(_: web.Request) -> web.StreamResponse:
        return web.Response(status=307, headers={"Location": to()})

    return answer


def _bytes(data: bytes, content_type: str = "image/jpeg") -> Handler:
    async def answer(_: web.Request) -> web.StreamResponse:
        return web.Response(body=data, headers={"Content-Type": content_type})

    return answer


class Hosts:
    """The test's Twilio API, an allowed CDN and a hostile host, each scripted per test."""

    def __init__(self) -> None:
        self.api_answer: Handler = _bytes(b"")
        self.cdn_answer: Handler = _bytes(b"")
        self.api: Host
        self.cdn: Host
        self.hostile: Host

    async def start(self) -> None:
        async def api(request: web.Request) -> web.StreamResponse:
            return await self.api_answer(request)  # as scripted when the request comes

        async def cdn(request: web.Request) -> web.StreamResponse:
            return await self.cdn_answer(request)

        self.api = await _host(api)
        self.cdn = await _host(cdn)
        self.hostile = await _host(_bytes(b"stolen?"))

    async def close(self) -> None:
        for host in (self.api, self.cdn, self.hostile):
            await host.server.close()

    def policy(self, *extra: str, **options: Any) -> MediaPolicy:
        return MediaPolicy(allowed_hosts=(self.cdn.hostport, *extra), **options)

    def connector(self) -> TwilioWhatsAppConnector:
        settings = (
            ConnectionSettings()
            .set_parameter("AccountSid", ACCOUNT)
            .set_parameter("AuthToken", TOKEN)
            .set_parameter("ApiBaseUrl", self.api.url)
        )
        return TwilioWhatsAppConnector(TwilioChannelSchemas.TWILIO_WHATSAPP, settings)


@pytest.fixture
async def hosts() -> AsyncIterator[Hosts]:
    hosts = Hosts()
    await hosts.start()
    try:
        yield hosts
    finally:
        await hosts.close()


class TestCredentialsNeverLeave:
    """The account's Basic credentials reach the API origin and nothing else."""

    async def test_a_media_url_on_a_hostile_host_is_never_requested(self, hosts: Hosts) -> None:
        """A Twilio-shaped path on another origin is refused before any request."""
        async with hosts.connector() as connector:
            result = await connector.fetch_media(
                hosts.hostile.url + MEDIA_PATH, policy=hosts.policy()
            )
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.MEDIA_URL_NOT_ALLOWED
        assert hosts.hostile.seen == []
        assert hosts.api.seen == []

    @pytest.mark.parametrize(
        "lookalike",
        [
            "http://{api}@{hostile}{path}",  # user info that reads as the API origin
            "http://{hostile}\\@{api}{path}",  # a backslash parsers disagree on
            "http://{hostile}{path}?origin=http://{api}",
            "http://{hostile}/http://{api}{path}",
            "https://{api}{path}",  # the API's host and port, another scheme
            "http://localhost:{api_port}{path}",  # the same server under another name
        ],
    )
    async def test_a_url_that_merely_looks_like_the_api_origin_is_refused(
        self, hosts: Hosts, lookalike: str
    ) -> None:
        """Origins are compared as parsed (scheme, host, port), never as text prefixes."""
        url = lookalike.format(
            api=hosts.api.hostport,
            api_port=hosts.api.hostport.rsplit(":", 1)[1],
            hostile=hosts.hostile.hostport,
            path=MEDIA_PATH,
        )
        async with hosts.connector() as connector:
            result = await connector.fetch_media(url, policy=hosts.policy())
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.MEDIA_URL_NOT_ALLOWED
        assert hosts.hostile.seen == []
        assert hosts.api.seen == []

    async def test_the_api_origin_but_not_a_media_resource_is_refused(self, hosts: Hosts) -> None:
        """Credentials go to a message's media resource only, not to any API path."""
        async with hosts.connector() as connector:
            result = await connector.fetch_media(
                f"{hosts.api.url}/2010-04-01/Accounts/{ACCOUNT}.json", policy=hosts.policy()
            )
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.MEDIA_URL_NOT_ALLOWED
        assert hosts.api.seen == []

    @pytest.mark.parametrize("location", ["{hostile}/x.jpg", "//{hostport}/x.jpg"])
    async def test_a_redirect_to_a_hostile_host_is_not_followed(
        self, hosts: Hosts, location: str
    ) -> None:
        """The API's redirect to a host off the list stops the fetch; the host sees nothing."""
        target = location.format(hostile=hosts.hostile.url, hostport=hosts.hostile.hostport)
        hosts.api_answer = _redirect(lambda: target)
        async with hosts.connector() as connector:
            result = await connector.fetch_media(hosts.api.url + MEDIA_PATH, policy=hosts.policy())
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.MEDIA_REDIRECT_NOT_ALLOWED
        assert result.error.details["host"] == "127.0.0.1"
        assert hosts.hostile.seen == []
        assert hosts.api.authorizations() == [BASIC]  # the API itself did get them

    async def test_a_chain_through_the_allowed_cdn_to_a_hostile_host_stops_there(
        self, hosts: Hosts
    ) -> None:
        """API -> CDN (allowed, no credentials) -> hostile: refused at the second hop."""
        hosts.api_answer = _redirect(lambda: hosts.cdn.url + "/AC/key")
        hosts.cdn_answer = _redirect(lambda: hosts.hostile.url + "/x.jpg")
        async with hosts.connector() as connector:
            result = await connector.fetch_media(hosts.api.url + MEDIA_PATH, policy=hosts.policy())
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.MEDIA_REDIRECT_NOT_ALLOWED
        assert len(hosts.cdn.seen) == 1
        assert hosts.cdn.authorizations() == []
        assert hosts.hostile.seen == []

    async def test_even_an_allowed_host_gets_no_credentials_at_any_hop(self, hosts: Hosts) -> None:
        """API -> CDN -> a second allowed host: both are asked without Authorization."""
        hosts.api_answer = _redirect(lambda: hosts.cdn.url + "/AC/key")
        hosts.cdn_answer = _redirect(lambda: hosts.hostile.url + "/photo.jpg")
        policy = hosts.policy(hosts.hostile.hostport)
        async with hosts.connector() as connector:
            result = await connector.fetch_media(hosts.api.url + MEDIA_PATH, policy=policy)
        assert result.unwrap().data == b"stolen?"
        assert [path for path, _ in hosts.hostile.seen] == ["/photo.jpg"]
        assert hosts.hostile.authorizations() == []
        assert hosts.cdn.authorizations() == []
        assert hosts.api.authorizations() == [BASIC]

    async def test_a_redirect_loop_ends_after_max_redirects(self, hosts: Hosts) -> None:
        """The CDN redirecting to itself is followed max_redirects times, then refused."""
        hosts.api_answer = _redirect(lambda: hosts.cdn.url + "/again")
        hosts.cdn_answer = _redirect(lambda: hosts.cdn.url + "/again")
        async with hosts.connector() as connector:
            result = await connector.fetch_media(
                hosts.api.url + MEDIA_PATH, policy=hosts.policy(max_redirects=3)
            )
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.MEDIA_REDIRECT_NOT_ALLOWED
        assert len(hosts.cdn.seen) == 3  # three redirects followed (one from the API), not a 4th
        assert hosts.cdn.authorizations() == []


class TestLimits:
    """Size, time and error answers end a fetch with their own codes."""

    async def test_a_declared_length_over_the_limit_is_refused_before_the_body(
        self, hosts: Hosts
    ) -> None:
        hosts.api_answer = _redirect(lambda: hosts.cdn.url + "/big")
        hosts.cdn_answer = _bytes(b"x" * 5000)
        async with hosts.connector() as connector:
            result = await connector.fetch_media(
                hosts.api.url + MEDIA_PATH, policy=hosts.policy(max_bytes=1000)
            )
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.MEDIA_TOO_LARGE
        assert result.error.details["declared"] == 5000

    async def test_an_undeclared_body_over_the_limit_is_cut_off(self, hosts: Hosts) -> None:
        """Chunked, with no Content-Length: the count stops it, whole read or streamed."""

        async def chunked(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(10):
                await response.write(b"y" * 500)
            await response.write_eof()
            return response

        hosts.api_answer = _redirect(lambda: hosts.cdn.url + "/chunked")
        hosts.cdn_answer = chunked
        policy = hosts.policy(max_bytes=1200)
        async with hosts.connector() as connector:
            whole = await connector.fetch_media(hosts.api.url + MEDIA_PATH, policy=policy)
            opened = await connector.fetch_media(
                hosts.api.url + MEDIA_PATH, policy=policy, stream=True
            )
            received: list[bytes] = []
            with pytest.raises(ConnectorException) as raised:
                await _drain(opened.unwrap(), received)
        assert whole.error is not None
        assert whole.error.code == TwilioErrorCodes.MEDIA_TOO_LARGE
        assert raised.value.error.code == TwilioErrorCodes.MEDIA_TOO_LARGE
        assert len(b"".join(received)) <= 1200  # nothing past the limit is handed out

    async def test_a_cdn_that_never_answers_times_out(self, hosts: Hosts) -> None:
        stall = asyncio.Event()

        async def silent(_: web.Request) -> web.StreamResponse:
            await stall.wait()
            return web.Response(body=b"late")

        hosts.api_answer = _redirect(lambda: hosts.cdn.url + "/slow")
        hosts.cdn_answer = silent
        try:
            async with hosts.connector() as connector:
                result = await connector.fetch_media(
                    hosts.api.url + MEDIA_PATH, policy=hosts.policy(timeout=0.3)
                )
        finally:
            stall.set()
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.MEDIA_FETCH_TIMEOUT

    async def test_a_body_that_stalls_midway_times_out_while_streaming(self, hosts: Hosts) -> None:
        stall = asyncio.Event()

        async def half(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "image/png"})
            response.content_length = 1000
            await response.prepare(request)
            await response.write(b"z" * 100)
            await stall.wait()
            return response

        hosts.api_answer = _redirect(lambda: hosts.cdn.url + "/half")
        hosts.cdn_answer = half
        try:
            async with hosts.connector() as connector:
                opened = await connector.fetch_media(
                    hosts.api.url + MEDIA_PATH, policy=hosts.policy(timeout=0.3), stream=True
                )
                stream = opened.unwrap()
                assert stream.content_length == 1000
                with pytest.raises(ConnectorException) as raised:
                    await stream.read()
        finally:
            stall.set()
        assert raised.value.error.code == TwilioErrorCodes.MEDIA_FETCH_TIMEOUT

    async def test_an_error_answer_keeps_twilios_code(self, hosts: Hosts) -> None:
        async def missing(_: web.Request) -> web.StreamResponse:
            return web.json_response(
                {"code": 20404, "message": "not found", "status": 404}, status=404
            )

        hosts.api_answer = missing
        async with hosts.connector() as connector:
            result = await connector.fetch_media(hosts.api.url + MEDIA_PATH, policy=hosts.policy())
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.MEDIA_FETCH_FAILED
        assert result.error.details["http_status"] == 404
        assert result.error.provider_code == 20404


async def _drain(stream: MediaStream, into: list[bytes]) -> None:
    async with stream:
        async for chunk in stream:
            into.append(chunk)


class TestThroughTheEmulator:
    """A customer's photo, from the emulator's webhook to the bytes, as with Twilio."""

    async def test_the_handler_fetches_the_photo_the_webhook_names(self) -> None:
        photo = bytes(range(256)) * 300
        emulator = await start_emulator(account_sid=ACCOUNT, auth_token=TOKEN)
        settings = emulator_settings(emulator.url)
        fetched: list[Any] = []
        policy = MediaPolicy(allowed_hosts=(emulator.media_host,))
        try:
            async with TwilioWhatsAppConnector(
                TwilioChannelSchemas.TWILIO_WHATSAPP, settings
            ) as connector:

                async def on_message(received: ReceiveResult) -> None:
                    [message] = received.messages
                    assert isinstance(message.content, MediaContent)
                    fetched.append(await connector.fetch_media(message.content, policy=policy))
                    streamed = await connector.fetch_media(
                        message.content, policy=policy, stream=True
                    )
                    async with streamed.unwrap() as stream:
                        fetched.append((stream.content_type, [c async for c in stream]))

                app = create_webhook_app(
                    connector, validator=connector.signature_validator, on_message=on_message
                )
                webhooks = await start_server(app, "127.0.0.1", 0)
                try:
                    answer = await emulator.inject_inbound(
                        webhooks.url + "/webhooks/twilio/whatsapp",
                        from_=CUSTOMER,
                        to=BUSINESS,
                        media=[InboundMedia("Image/JPEG; name=photo.jpg", photo)],
                    )
                finally:
                    await webhooks.close()
        finally:
            await emulator.close()
        assert answer["status"] == 200, answer
        assert answer["media_urls"][0].startswith(emulator.url + "/2010-04-01/Accounts/")
        whole, (streamed_type, chunks) = fetched
        assert whole.unwrap().data == photo
        assert whole.unwrap().content_type == "image/jpeg"
        assert streamed_type == "image/jpeg"
        assert b"".join(chunks) == photo

    async def test_the_media_url_needs_credentials_and_the_cdn_none(self) -> None:
        """Like Twilio: 401 without Basic auth; the redirect's target serves without it."""
        emulator = await start_emulator(account_sid=ACCOUNT, auth_token=TOKEN)
        try:
            form = emulator.model.inbound_message(
                CUSTOMER, BUSINESS, media=[InboundMedia("audio/ogg", b"ogg")], api_base=emulator.url
            )
            async with aiohttp.ClientSession() as session:
                async with session.get(form["MediaUrl0"], allow_redirects=False) as anonymous:
                    assert anonymous.status == 401
                async with session.get(
                    form["MediaUrl0"], allow_redirects=False, headers={"Authorization": BASIC}
                ) as redirect:
                    assert redirect.status == 307
                    location = redirect.headers["Location"]
                assert location.startswith(emulator.media_url + "/")
                async with session.get(location) as cdn:
                    assert (cdn.status, await cdn.read()) == (200, b"ogg")
                    assert cdn.content_type == "audio/ogg"
        finally:
            await emulator.close()

    async def test_the_default_policy_refuses_the_emulators_loopback_cdn(self) -> None:
        """Twilio's media hosts only, by default: a loopback CDN must be allowed explicitly."""
        emulator = await start_emulator(account_sid=ACCOUNT, auth_token=TOKEN)
        try:
            form = emulator.model.inbound_message(
                CUSTOMER, BUSINESS, media=[InboundMedia("image/png", b"png")], api_base=emulator.url
            )
            async with TwilioWhatsAppConnector(
                TwilioChannelSchemas.TWILIO_WHATSAPP, emulator_settings(emulator.url)
            ) as connector:
                refused = await connector.fetch_media(form["MediaUrl0"])
        finally:
            await emulator.close()
        assert refused.error is not None
        assert refused.error.code == TwilioErrorCodes.MEDIA_REDIRECT_NOT_ALLOWED


def emulator_settings(url: str) -> ConnectionSettings:
    return (
        ConnectionSettings()
        .set_parameter("AccountSid", ACCOUNT)
        .set_parameter("AuthToken", TOKEN)
        .set_parameter("ApiBaseUrl", url)
        .set_parameter("ContentApiBaseUrl", url)
    )
