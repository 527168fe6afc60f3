"""The auth token shows up nowhere: logs at DEBUG, reprs, error texts, exceptions, CLI output.

One distinctive token runs through a whole scenario (build, initialize, sends
that succeed and fail, an authentication failure, status queries, webhook
refusals and a failing handler, the CLI with and without ``--json``,
successes and failures), everything observable is collected, and the
collection is scanned for the token, a long piece of it, and the Basic
credentials ``base64(sid:token)`` that carry it on the wire.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import attrs
import pytest
from aiohttp import web
from resilience_support import LoopThread, emulator_in_thread

from ratatosk import ConnectionSettings, MessageBuilder, MessageSource
from ratatosk.adapters.templates import ContentApiTemplateCatalog
from ratatosk.adapters.twilio_http import AiohttpMessagingApi
from ratatosk.adapters.webhook_server import SIGNATURE_HEADER, create_webhook_app
from ratatosk.bootstrap import build_connector
from ratatosk.cli import main
from ratatosk.domain.schema import validate_settings
from ratatosk.domain.settings import Secret
from ratatosk.emulator.app import start_emulator
from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector
from ratatosk.twilio.signature import compute_signature

ACCOUNT = "AC" + "5a" * 16
TOKEN = "Zx9-ratatosk-secret-token-Q7w3e5r7"
SENDER = "whatsapp:+14155238886"
RECIPIENT = "whatsapp:+15550002222"
PUBLIC = "https://hooks.example.com"
PATH = "/webhooks/twilio/whatsapp"

#: What must never appear: the token, a long piece of it, and the Basic credentials.
FORBIDDEN = (
    TOKEN,
    TOKEN[5:-5],
    quote(TOKEN),
    base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode(),
    base64.b64encode(TOKEN.encode()).decode()[:-4],
)


def assert_clean(label: str, texts: list[str]) -> None:
    assert texts, f"nothing collected from {label}"
    for text in texts:
        for secret in FORBIDDEN:
            assert secret not in text, f"{label} leaks the token: ...{text[:300]}..."


def settings(base_url: str, **extra: str) -> ConnectionSettings:
    result = (
        ConnectionSettings()
        .set_parameter("AccountSid", ACCOUNT)
        .set_parameter("AuthToken", TOKEN)
        .set_parameter("FromNumber", SENDER)
        .set_parameter("ApiBaseUrl", base_url)
        .set_parameter("ContentApiBaseUrl", base_url)
    )
    for name, value in extra.items():
        result = result.set_parameter(name, value)
    return result


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Everything logged anywhere, at DEBUG, tracebacks included."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def seen(value: Any) -> list[str]:
    """Every way a value shows itself."""
    texts = [repr(value), str(value), f"{value}"]
    if attrs.has(type(value)):
        texts.append(repr(attrs.asdict(value, recurse=True)))
    if isinstance(value, BaseException):
        texts.extend(traceback.format_exception(value))
    return texts


def raised(call: Callable[[], Any]) -> list[str]:
    try:
        call()
    except Exception as exc:
        return seen(exc)
    raise AssertionError("expected an exception")


async def test_no_token_in_logs_reprs_errors_or_exceptions(
    debug_log: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    good = await start_emulator(account_sid=ACCOUNT, auth_token=TOKEN, step_delay=0.01)
    wrong = await start_emulator(account_sid=ACCOUNT, auth_token="another-token-entirely-000")
    runner: web.AppRunner | None = None
    try:
        config = settings(good.url, HttpReadTimeout="0.3")
        connector = build_connector(config, environ={})
        texts += seen(connector) + seen(config) + seen(config.masked()) + seen(dict(config))
        texts += seen(config.get_secret("AuthToken")) + seen(
            validate_settings(connector.schema, config)
        )
        assert (await connector.initialize()).successful
        texts += seen(connector) + seen(connector.signature_validator)
        texts += seen(AiohttpMessagingApi.from_settings(config))
        texts += seen(ContentApiTemplateCatalog.from_settings(config))

        def text(to: str, body: str) -> Any:
            return MessageBuilder().to_phone(to).with_text(body).build()

        results = [await connector.send_message(text(RECIPIENT, "fine"))]
        results.append(await connector.send_message(text("0800 not a number", "bad")))
        good.model.fail_next(21211)
        results.append(await connector.send_message(text(RECIPIENT, "refused")))
        good.model.fail_next(20429, status=429, retry_after=0.05)
        results.append(await connector.send_message(text(RECIPIENT, "throttled once")))
        good.model.reset_next()
        results.append(await connector.send_message(text(RECIPIENT, "lost")))
        good.model.faults = attrs.evolve(good.model.faults, slow=1.0, slow_seconds=0.6)
        results.append(await connector.send_message(text(RECIPIENT, "late")))
        good.model.faults = attrs.evolve(good.model.faults, slow=0.0)
        results += await connector.send_batch([text(RECIPIENT, "batch"), text("x", "y")])
        sid = results[0].unwrap().provider_message_id
        results.append(await connector.get_message_status(sid))
        results.append(await connector.get_message_status("SM" + "0" * 32))
        results.append(await connector.get_message_status("not a sid"))
        results.append(await connector.get_status())
        results.append(await connector.get_health())
        results.append(await connector.test_connection())
        assert not all(r.successful for r in results)
        assert any(r.successful for r in results)
        for result in results:
            texts += seen(result)
            if result.error is not None:
                texts.append(json.dumps(result.error.to_dict()))
                texts += raised(result.unwrap)

        # Authentication failure: Twilio (the emulator) knows another token.
        denied = build_connector(settings(wrong.url), environ={})
        async with denied:
            for result in (
                await denied.send_message(text(RECIPIENT, "denied")),
                await denied.test_connection(),
                await denied.get_status(),
                await denied.get_health(),
                await denied.get_message_status(sid),
            ):
                texts += seen(result)
                if result.error is not None:
                    assert result.error.code in {"INVALID_CREDENTIALS", "STATUS_ERROR"} or (
                        result.error.code == "WHATSAPP_STATUS_QUERY_FAILED"
                    )
                    texts += raised(result.unwrap)

        # Webhook refusals and a failing handler, with the access log on.
        async def broken(_: object) -> None:
            raise RuntimeError("handler failed")

        app = create_webhook_app(
            connector,
            validator=connector.signature_validator,
            public_url=PUBLIC,
            on_message=broken,
        )
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        form = {"MessageSid": "SM" + "1" * 32, "From": RECIPIENT, "To": SENDER, "Body": "hi"}
        signed = compute_signature(TOKEN, PUBLIC + PATH, form)
        async with aiohttp.ClientSession() as session:
            for headers, body in (
                ({SIGNATURE_HEADER: "forged"}, urlencode(form)),
                ({}, urlencode(form)),
                ({SIGNATURE_HEADER: signed}, urlencode({**form, "Body": "changed"})),
                ({SIGNATURE_HEADER: signed}, urlencode(form)),  # reaches the broken handler
                ({SIGNATURE_HEADER: signed}, "x" * 100_000),
            ):
                headers["Content-Type"] = "application/x-www-form-urlencoded"
                async with session.post(url + PATH, data=body, headers=headers) as response:
                    texts.append(f"{response.status} {await response.text()}")
        source = MessageSource.url_post(urlencode(form))
        texts += seen(connector.validate_signature(PUBLIC + PATH, source, "forged"))
        texts += seen(await connector.receive_messages(MessageSource.url_post("x=1")))

        # Misuse raises; the exception texts are clean too.
        texts += raised(lambda: TwilioWhatsAppConnector(connector.schema, dict(config)))  # type: ignore[arg-type]
        texts += raised(lambda: TwilioWhatsAppConnector(TwilioChannelSchemas.TWILIO_WHATSAPP, 1))  # type: ignore[arg-type]
        texts += raised(lambda: config.set_parameter("", TOKEN))
        texts += raised(lambda: __import__("pickle").dumps(config.get_secret("AuthToken")))
        texts += raised(lambda: AiohttpMessagingApi.from_settings(ConnectionSettings()))
        texts += raised(lambda: MessageBuilder().to_phone(Secret(TOKEN)))  # type: ignore[arg-type]
        unready = build_connector(config, environ={})
        try:
            await unready.send_message(text(RECIPIENT, "too early"))
        except RuntimeError as exc:
            texts += seen(exc)
        try:
            await connector.send_message(config)  # type: ignore[arg-type]
        except TypeError as exc:
            texts += seen(exc)
        await connector.shutdown()
        await unready.shutdown()
        texts += seen(connector)
    finally:
        if runner is not None:
            await runner.cleanup()
        await good.close()
        await wrong.close()
    assert_clean("reprs, results, errors and exceptions", texts)
    logged = debug_log.getvalue()
    assert "handler failed" in logged  # the log really saw the scenario, tracebacks included
    assert "DEBUG" in logged or "INFO" in logged
    assert_clean("the DEBUG log", [logged, caplog.text])
    assert_clean("log records", [repr(r.__dict__) for r in caplog.records])


def test_no_token_in_cli_output(
    loop_thread: LoopThread,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    debug_log: io.StringIO,
) -> None:
    good = emulator_in_thread(loop_thread, account_sid=ACCOUNT, auth_token=TOKEN, step_delay=0.01)
    wrong = emulator_in_thread(loop_thread, account_sid=ACCOUNT, auth_token="some-other-token-0")
    outputs: list[str] = []
    codes: list[int] = []

    def run(*argv: str, base_url: str = good.url) -> str:
        monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
        monkeypatch.setenv("TWILIO_WHATSAPP_FROM", SENDER)
        monkeypatch.setenv("TWILIO_API_BASE_URL", base_url)
        monkeypatch.setenv("TWILIO_CONTENT_API_BASE_URL", base_url)
        codes.append(main(list(argv)))
        captured = capsys.readouterr()
        outputs.extend([captured.out, captured.err])
        return captured.out

    try:
        sent = run("--json", "send", "--to", RECIPIENT, "--text", "hello")
        sid = json.loads(sent.splitlines()[-1])["sid"]
        run("send", "--to", RECIPIENT, "--text", "hello again")
        run("status", sid)
        run("--json", "status", sid)
        run("templates", "list")
        run("--json", "templates", "list")
        run("send", "--to", "not-a-number", "--text", "x")
        run("--json", "send", "--to", RECIPIENT, "--template", "no_such_template")
        run("status", "SMnot-a-sid")
        run("--json", "status", "SM" + "0" * 32)
        run("send", "--to", RECIPIENT, "--text", "denied", base_url=wrong.url)
        run("--json", "send", "--to", RECIPIENT, "--text", "denied", base_url=wrong.url)
        run("--json", "status", sid, base_url=wrong.url)
        run("templates", "list", base_url=wrong.url)
        run("send", "--to", RECIPIENT)  # usage error
        run("send", "--to", RECIPIENT, "--text", "nobody listens", base_url="http://127.0.0.1:9")
    finally:
        loop_thread.run(good.close())
        loop_thread.run(wrong.close())
    assert codes[:6] == [0] * 6
    assert set(codes[6:]) <= {1, 2}
    assert 2 in codes[6:]
    assert sum(len(o) for o in outputs) > 500, outputs  # the output really was captured
    assert_clean("CLI output", outputs)
    assert_clean("the DEBUG log of CLI runs", [debug_log.getvalue() or "(empty)"])
