"""Both REST transports at their edges: headers on the wire, dead ports, clean close, imports."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from ratatosk import ConnectionSettings, MessageBuilder, MessagingErrorCodes, __version__
from ratatosk.adapters.twilio_http import (
    AiohttpMessagingApi,
    Http11MessagingApi,
    HttpTimeouts,
    TwilioRestApi,
)
from ratatosk.ports import ApiError, CreateMessageRequest, TransportError
from ratatosk.twilio import TwilioChannelSchemas, TwilioErrorCodes, TwilioWhatsAppConnector
from ratatosk.twilio.resilience import RetryPolicy, SendPolicy

ACCOUNT = "AC" + "ab" * 16
TOKEN = "transport-token-000111222333"
TRANSPORTS = pytest.mark.parametrize("rest", [AiohttpMessagingApi, Http11MessagingApi])


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _settings(base_url: str) -> ConnectionSettings:
    return (
        ConnectionSettings()
        .set_parameter("AccountSid", ACCOUNT)
        .set_parameter("AuthToken", TOKEN)
        .set_parameter("FromNumber", "whatsapp:+14155238886")
        .set_parameter("ApiBaseUrl", base_url)
    )


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[web.Request], list[bytes]]]:
    """A bare server that records what arrives and answers a Twilio error."""
    seen: list[web.Request] = []
    bodies: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request)
        bodies.append(await request.read())
        return web.json_response(
            {"code": 21211, "message": "Invalid 'To'", "more_info": "https://x", "status": 400},
            status=400,
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen, bodies
    await runner.cleanup()


@TRANSPORTS
async def test_wire_format_auth_agent_and_repeated_media(
    recorder: tuple[str, list[web.Request], list[bytes]], rest: type[TwilioRestApi]
) -> None:
    url, seen, bodies = recorder
    api = rest(ACCOUNT, TOKEN, base_url=url)
    try:
        answer = await api.create_message(
            CreateMessageRequest(
                to="whatsapp:+15550002222",
                from_="whatsapp:+14155238886",
                body="caption",
                media_urls=("https://e.com/1.jpg", "https://e.com/2.jpg"),
            )
        )
    finally:
        await api.close()
    assert isinstance(answer, ApiError)
    assert (answer.status, answer.code, answer.more_info) == (400, 21211, "https://x")
    [request] = seen
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert request.headers["User-Agent"] == f"ratatosk-twilio/{__version__}"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["Authorization"].startswith("Basic ")
    assert bodies[0].count(b"MediaUrl=") == 2


@TRANSPORTS
async def test_dead_port_is_a_transport_error_that_never_reached_twilio(
    rest: type[TwilioRestApi],
) -> None:
    api = rest(ACCOUNT, TOKEN, base_url=f"http://127.0.0.1:{_dead_port()}", timeouts=HttpTimeouts())
    try:
        with pytest.raises(TransportError) as raised:
            await api.fetch_account()
    finally:
        await api.close()
    assert not raised.value.maybe_delivered
    assert "cannot connect to http://127.0.0.1:" in str(raised.value)
    assert TOKEN not in str(raised.value) + repr(api)


@TRANSPORTS
async def test_connector_codes_when_twilio_is_unreachable(rest: type[TwilioRestApi]) -> None:
    settings = _settings(f"http://127.0.0.1:{_dead_port()}")
    transport = rest.from_settings(settings)  # the caller's: the connector leaves it open
    connector = TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP, settings, transport=transport
    )
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(transport.close)
        await stack.enter_async_context(connector)
        tested = await connector.test_connection()
        assert tested.error is not None
        assert tested.error.code == MessagingErrorCodes.CONNECTION_FAILED
        status = await connector.get_status()
        assert status.error is not None
        assert status.error.code == TwilioErrorCodes.STATUS_ERROR
        queried = await connector.get_message_status("SM" + "0" * 32)
        assert queried.error is not None
        assert queried.error.code == TwilioErrorCodes.WHATSAPP_STATUS_QUERY_FAILED
        message = MessageBuilder().to_phone("whatsapp:+15550002222").with_text("x").build()
        sent = await connector.send_message(message)
        assert sent.error is not None
        assert sent.error.code == TwilioErrorCodes.SEND_WHATSAPP_MESSAGE_FAILED
        assert TOKEN not in repr(sent.error) + repr(connector)


def test_importing_the_core_never_imports_aiohttp() -> None:
    code = "import sys, ratatosk, ratatosk.twilio, ratatosk.ports;print('aiohttp' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


async def test_the_default_template_catalog_reads_through_the_clients_own_pool() -> None:
    """One pool per connector: template lookups ride the messaging client's session."""
    import aiohttp

    from ratatosk.emulator.app import start_emulator

    emulator = await start_emulator()
    paths: list[str] = []

    async def on_start(_: object, __: object, params: aiohttp.TraceRequestStartParams) -> None:
        paths.append(params.url.path)

    tracing = aiohttp.TraceConfig()
    tracing.on_request_start.append(on_start)
    session = aiohttp.ClientSession(trace_configs=[tracing])
    api = AiohttpMessagingApi(
        emulator.account_sid, emulator.auth_token, base_url=emulator.url, session=session
    )
    try:
        templates = await api.template_catalog().list()
    finally:
        await session.close()
        await emulator.close()
    assert {t.friendly_name for t in templates} >= {"order_confirmed"}
    assert paths == ["/v1/ContentAndApprovals"]


@pytest.fixture(params=["no answer", "headers, then no body"])
async def silent(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A server that reads each request and never finishes its answer."""

    async def handle(incoming: web.Request) -> web.StreamResponse:
        await incoming.read()
        if request.param == "headers, then no body":
            answer = web.StreamResponse(status=201, headers={"Content-Length": "100"})
            await answer.prepare(incoming)
            await answer.write(b'{"sid": ')
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def test_the_transport_names_the_longest_a_call_can_take() -> None:
    api = AiohttpMessagingApi(ACCOUNT, TOKEN, timeouts=HttpTimeouts(total=30.0))
    assert api.request_timeout == 31.0  # aiohttp rounds a deadline up to the next second
    ours = Http11MessagingApi(ACCOUNT, TOKEN, timeouts=HttpTimeouts(total=30.0))
    assert ours.request_timeout == 30.0  # one timer at exactly the deadline


async def test_the_http11_transports_catalog_reads_the_content_api_with_its_credentials() -> None:
    from ratatosk.emulator.app import start_emulator

    emulator = await start_emulator()
    api = Http11MessagingApi(emulator.account_sid, emulator.auth_token, base_url=emulator.url)
    try:
        templates = await api.template_catalog().list()
        account = await api.fetch_account()
    finally:
        await api.close()
        await emulator.close()
    assert {t.friendly_name for t in templates} >= {"order_confirmed"}
    assert not isinstance(account, ApiError)


async def test_a_callers_session_without_a_total_timeout_bounds_nothing() -> None:
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        api = AiohttpMessagingApi(ACCOUNT, TOKEN, session=session)
        assert api.request_timeout == math.inf


@TRANSPORTS
@pytest.mark.parametrize(
    ("deadline", "total", "said"),
    [
        (0.3, "30", "send deadline passed"),  # the deadline first: the stage's own timer
        (60.0, "0.3", "Twilio did not answer in time"),  # the transport's total first
    ],
)
async def test_an_unanswered_send_ends_at_the_earlier_of_deadline_and_total(
    silent: str, deadline: float, total: str, said: str, rest: type[TwilioRestApi]
) -> None:
    policy = SendPolicy(retry=RetryPolicy(deadline=deadline), reconcile=False)
    settings = _settings(silent).set_parameter("HttpTotalTimeout", total)
    transport = rest.from_settings(settings)  # the caller's: the connector leaves it open
    connector = TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP,
        settings,
        send_policy=policy,
        transport=transport,
    )
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(transport.close)
        await stack.enter_async_context(connector)
        message = MessageBuilder().to_phone("whatsapp:+15550002222").with_text("hi").build()
        result = await connector.send_message(message)
    assert result.error is not None
    assert result.error.code == TwilioErrorCodes.SEND_WHATSAPP_MESSAGE_FAILED
    assert said in result.error.message
    assert result.error.details["maybe_delivered"] is True
