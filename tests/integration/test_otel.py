"""OpenTelemetry (the ``otel`` extra) as an operator reads it: spans and metrics, exported.

Everything goes through the SDK's in-memory exporters: a send through the
real connector and FakeTwilio, and webhook deliveries through the real
aiohttp server on loopback. Each test checks what is recorded and that no
secret, body or full phone number is.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from ratatosk import ConnectionSettings, Message, MessageBuilder, ReceiveResult
from ratatosk.adapters.otel import OpenTelemetry, mask_number
from ratatosk.bootstrap import build_asgi_webhook_app, build_connector, build_webhook_app
from ratatosk.ports import RetryNotice
from ratatosk.testing import BackgroundEmulator, FakeTwilio
from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector
from readme_text import blocks, section
from webhook_apps import serve_asgi

SENDER = "whatsapp:+14155238886"
CUSTOMER = "whatsapp:+15551234567"
TEXT = "your parcel ships on Tuesday"
PATH = "/webhooks/twilio/whatsapp"


@attrs.define
class Exported:
    """An SDK wired to in-memory exporters, and the adapter on it."""

    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider
    otel: OpenTelemetry

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, point) of every data point of the instrument ``name``."""
        data = self.metrics.get_metrics_data()
        found: list[tuple[dict[str, Any], Any]] = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found += [(dict(p.attributes or {}), p) for p in metric.data.data_points]
        return found

    def counts(self, name: str) -> dict[tuple[tuple[str, Any], ...], int]:
        return {tuple(sorted(a.items())): p.value for a, p in self.points(name)}

    def everything(self) -> str:
        """Every exported span (names, attributes, events) and metric point, as one text."""
        spans = [json.loads(span.to_json()) for span in self.finished()]
        data = self.metrics.get_metrics_data()
        metrics = data.to_json() if data is not None else ""
        return json.dumps(spans) + metrics


def exported(**options: Any) -> Exported:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    otel = OpenTelemetry(tracer_provider=tracer_provider, meter_provider=meter_provider, **options)
    return Exported(spans, reader, tracer_provider, otel)


@pytest.fixture
def sdk() -> Iterator[Exported]:
    telemetry = exported()
    yield telemetry
    telemetry.tracer_provider.shutdown()


def settings_for(fake: FakeTwilio) -> ConnectionSettings:
    return (
        ConnectionSettings()
        .set_parameter("AccountSid", fake.account_sid)
        .set_parameter("AuthToken", fake.auth_token)
        .set_parameter("FromNumber", SENDER)
    )


def connector_for(fake: FakeTwilio, **options: Any) -> TwilioWhatsAppConnector:
    return TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP, settings_for(fake), transport=fake, **options
    )


def order(message_id: str = "order-1") -> Message:
    return MessageBuilder().with_id(message_id).to_phone(CUSTOMER).with_text(TEXT).build()


def assert_nothing_secret(text: str, fake: FakeTwilio) -> None:
    assert fake.auth_token not in text
    assert TEXT not in text
    assert "5551234567" not in text  # the customer's number, with or without its + and prefix


class TestSendSpans:
    async def test_a_retry_and_a_reconcile_are_events_of_one_send_span(self, sdk: Exported) -> None:
        """A 429, then a lost answer Twilio had stored: one span, two events, the counters."""
        fake = FakeTwilio()
        fake.fail_next(20429, 429, retry_after=1.5)
        fake.reset_next(after_store=True)
        notices: list[RetryNotice] = []
        async with connector_for(fake, telemetry=sdk.otel, on_retry=notices.append) as connector:
            sent = (await connector.send_message(order())).unwrap()
        sid = sent.provider_message_id

        [span] = sdk.finished()
        assert (span.name, span.kind) == ("whatsapp send", SpanKind.PRODUCER)
        assert span.status.status_code is StatusCode.UNSET
        attributes = dict(span.attributes or {})
        assert attributes == {
            "messaging.system": "twilio",
            "messaging.operation.type": "send",
            "messaging.destination.name": "whatsapp:***4567",
            "ratatosk.message_id": "order-1",
            "ratatosk.outcome": "SENT",
            "ratatosk.attempts": 2,
            "ratatosk.reconciled": True,
            "ratatosk.replayed": False,
            "twilio.message_sid": sid,
        }
        retry, reconcile = span.events
        assert retry.name == "retry"
        assert dict(retry.attributes or {}) == {
            "ratatosk.attempt": 1,
            "ratatosk.failure": "HTTP 429, Twilio 20429",
            "ratatosk.wait_seconds": 1.5,
            "http.response.status_code": 429,
            "twilio.error_code": 20429,
        }
        assert reconcile.name == "reconcile"
        assert dict(reconcile.attributes or {}) == {
            "ratatosk.found": True,
            "ratatosk.why": "found",
            "twilio.message_sid": sid,
        }

        assert sdk.counts("ratatosk.sends") == {(("ratatosk.outcome", "SENT"),): 1}
        assert sdk.counts("ratatosk.send.retries") == {
            (("http.response.status_code", 429), ("twilio.error_code", 20429)): 1
        }
        assert sdk.counts("ratatosk.send.reconciles") == {(("ratatosk.found", True),): 1}
        [(labels, duration)] = sdk.points("ratatosk.send.duration")
        assert labels == {"ratatosk.outcome": "SENT"}
        assert isinstance(duration, HistogramDataPoint)
        assert duration.count == 1
        assert duration.sum == pytest.approx(1.5, abs=1e-6)  # on the fake's clock: only the wait

        assert [(n.message_id, n.attempt) for n in notices] == [("order-1", 1)]  # on_retry too
        assert_nothing_secret(sdk.everything(), fake)

    async def test_a_refused_send_is_an_error_span_counted_by_its_code(self, sdk: Exported) -> None:
        fake = FakeTwilio()
        fake.fail_next(21610, 400)  # the customer opted out
        async with connector_for(fake, telemetry=sdk.otel) as connector:
            failure = (await connector.send_message(order())).error
        assert failure is not None
        [span] = sdk.finished()
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == failure.code
        attributes = dict(span.attributes or {})
        assert attributes["ratatosk.outcome"] == failure.code
        assert attributes["twilio.error_code"] == 21610
        assert "twilio.message_sid" not in attributes
        assert sdk.counts("ratatosk.sends") == {(("ratatosk.outcome", failure.code),): 1}
        assert sdk.points("ratatosk.send.retries") == []
        assert_nothing_secret(sdk.everything(), fake)

    async def test_the_send_span_is_current_while_the_send_runs(self, sdk: Exported) -> None:
        """What runs inside a send (here the on_retry hook) sees the send's span as its parent."""
        fake = FakeTwilio()
        fake.fail_next(20429, 429)
        inner: list[trace.Span] = []
        tracer = sdk.tracer_provider.get_tracer("test")

        def hook(notice: RetryNotice) -> None:
            with tracer.start_as_current_span("inside the send") as span:
                inner.append(span)

        async with connector_for(fake, telemetry=sdk.otel, on_retry=hook) as connector:
            with tracer.start_as_current_span("the caller's request"):
                (await connector.send_message(order())).unwrap()
        spans = {span.name: span for span in sdk.finished()}
        send, caller = spans["whatsapp send"], spans["the caller's request"]
        assert spans["inside the send"].parent == send.context
        assert send.parent == caller.context  # and the send belongs to the caller's trace
        assert trace.get_current_span() is trace.INVALID_SPAN  # nothing left attached

    async def test_phone_numbers_are_recorded_whole_only_when_asked(self) -> None:
        sdk = exported(record_phone_numbers=True)
        async with connector_for(FakeTwilio(), telemetry=sdk.otel) as connector:
            (await connector.send_message(order())).unwrap()
        [span] = sdk.finished()
        assert dict(span.attributes or {})["messaging.destination.name"] == CUSTOMER

    def test_a_number_is_masked_to_its_last_four_digits(self) -> None:
        assert mask_number("whatsapp:+15551234567") == "whatsapp:***4567"
        assert mask_number("+447700900123") == "***0123"


@attrs.define
class Served:
    url: str
    fake: FakeTwilio
    received: list[ReceiveResult]
    handler_spans: list[trace.Span]

    async def post(self, path: str, body: str, signature: str) -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                self.url + path,
                data=body,
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": signature,
                },
            ) as response,
        ):
            await response.read()
            return response.status


@pytest.fixture(params=["aiohttp", "asgi"])
async def served(sdk: Exported, request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    """The webhook server through bootstrap, on loopback, watched by the connector's telemetry.

    Both apps: aiohttp's, and the ASGI one under uvicorn (one core watches both).
    """
    fake = FakeTwilio()
    connector = build_connector(settings_for(fake), environ={}, transport=fake, telemetry=sdk.otel)
    (await connector.initialize()).unwrap()
    received: list[ReceiveResult] = []
    handler_spans: list[trace.Span] = []

    async def on_message(event: ReceiveResult) -> None:
        received.append(event)
        handler_spans.append(trace.get_current_span())

    if request.param == "asgi":
        url, stop = await serve_asgi(build_asgi_webhook_app(connector, on_message=on_message))
        yield Served(url, fake, received, handler_spans)
        await stop()
        await connector.shutdown()
        return
    runner = web.AppRunner(build_webhook_app(connector, on_message=on_message))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield Served(f"http://127.0.0.1:{port}", fake, received, handler_spans)
    await runner.cleanup()
    await connector.shutdown()


class TestWebhookSpans:
    async def test_each_delivery_is_a_span_and_answers_are_counted_by_status(
        self, sdk: Exported, served: Served
    ) -> None:
        """A message, its repeat and a forged copy: 200, 200 (duplicate), 403."""
        fake, url = served.fake, served.url + PATH
        body, signature = fake.inbound_message_body(url, CUSTOMER, SENDER, TEXT)
        sid = dict(kv.split("=", 1) for kv in body.split("&"))["MessageSid"]
        assert await served.post(PATH, body, signature) == 200
        assert await served.post(PATH, body, signature) == 200
        assert await served.post(PATH, body, "forged") == 403
        assert len(served.received) == 1

        first, repeat, forged = sdk.finished()
        for span in (first, repeat, forged):
            assert (span.name, span.kind) == ("whatsapp webhook message", SpanKind.CONSUMER)
        assert dict(first.attributes or {}) == {
            "messaging.system": "twilio",
            "messaging.operation.type": "process",
            "ratatosk.webhook.route": "message",
            "http.response.status_code": 200,
            "ratatosk.duplicate": False,
            "twilio.message_sid": sid,
        }
        assert dict(repeat.attributes or {})["ratatosk.duplicate"] is True
        forged_attributes = dict(forged.attributes or {})
        assert forged_attributes["http.response.status_code"] == 403
        assert "twilio.message_sid" not in forged_attributes  # refused before decoding
        # The handler ran inside the first delivery's span.
        assert served.handler_spans[0].get_span_context() == first.context

        route = ("ratatosk.webhook.route", "message")
        assert sdk.counts("ratatosk.webhook.answers") == {
            (("http.response.status_code", 200), route): 2,
            (("http.response.status_code", 403), route): 1,
        }
        assert sdk.counts("ratatosk.webhook.duplicates") == {(route,): 1}
        durations = {
            tuple(sorted(a.items())): p.count for a, p in sdk.points("ratatosk.webhook.duration")
        }
        assert durations == {
            (("http.response.status_code", 200), route): 2,
            (("http.response.status_code", 403), route): 1,
        }
        assert_nothing_secret(sdk.everything(), fake)

    async def test_a_status_callback_is_a_span_of_the_status_route(
        self, sdk: Exported, served: Served
    ) -> None:
        fake, url = served.fake, served.url + PATH + "/status"
        body, signature = fake.status_callback_body(url, "SM" + "a" * 32, "delivered")
        assert await served.post(PATH + "/status", body, signature) == 200
        [span] = sdk.finished()
        assert span.name == "whatsapp webhook status"
        assert dict(span.attributes or {})["twilio.message_sid"] == "SM" + "a" * 32
        assert sdk.counts("ratatosk.webhook.answers") == {
            (("http.response.status_code", 200), ("ratatosk.webhook.route", "status")): 1
        }


def test_without_telemetry_opentelemetry_is_never_imported() -> None:
    """``import ratatosk``, a send with a retry and a webhook app: no opentelemetry module loads.

    In a fresh interpreter, since this one has the SDK loaded for the tests above.
    """
    script = textwrap.dedent(
        """
        import asyncio, sys
        import ratatosk
        from ratatosk import ConnectionSettings, MessageBuilder
        from ratatosk.bootstrap import build_connector, build_webhook_app
        from ratatosk.testing import FakeTwilio

        async def main():
            fake = FakeTwilio()
            fake.fail_next(20429, 429)
            settings = (
                ConnectionSettings()
                .set_parameter("AccountSid", fake.account_sid)
                .set_parameter("AuthToken", fake.auth_token)
                .set_parameter("FromNumber", "whatsapp:+14155238886")
            )
            async with build_connector(settings, environ={}, transport=fake) as connector:
                message = MessageBuilder().to_phone("whatsapp:+15551234567").with_text("hi")
                result = await connector.send_message(message.build())
                assert result.unwrap().data["attempts"] == 2
                build_webhook_app(connector)

        asyncio.run(main())
        loaded = sorted(name for name in sys.modules if name.split(".")[0] == "opentelemetry")
        print(",".join(loaded) or "none")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "none"


def test_the_readme_example_exports_a_send_span_and_its_metrics(tmp_path: Path) -> None:
    """The README's Telemetry block, as written, against the emulator: the console shows both."""
    code = blocks(section("## Telemetry"), "python")[0]
    (tmp_path / "watched.py").write_text(code, encoding="utf-8")
    with BackgroundEmulator() as emulator:
        env = {
            **os.environ,
            "TWILIO_ACCOUNT_SID": emulator.account_sid,
            "TWILIO_AUTH_TOKEN": emulator.auth_token,
            "TWILIO_API_BASE_URL": emulator.url,
        }
        done = subprocess.run(
            [sys.executable, "watched.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    sid = re.search(r"^(SM[0-9a-f]{32})$", done.stdout, re.M)
    assert sid is not None, done.stdout
    assert '"name": "whatsapp send"' in done.stdout
    assert f'"twilio.message_sid": "{sid.group(1)}"' in done.stdout
    assert '"messaging.destination.name": "whatsapp:***2222"' in done.stdout
    assert '"name": "ratatosk.sends"' in done.stdout  # the metrics, flushed at exit
    assert "15550002222" not in done.stdout
    assert emulator.auth_token not in done.stdout + done.stderr
