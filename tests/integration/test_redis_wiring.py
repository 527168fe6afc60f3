"""``REDIS_URL`` / ``RedisUrl`` / ``--redis``: every state port on Redis at once, else memory.

Two connectors built from one environment stand for two processes: what one
records (a message id sent, a customer who wrote) the other sees, on a real
redis-server. Without the setting nothing imports redis-py at all.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from urllib.parse import parse_qs

from ratatosk import ConnectionSettings, MessageBuilder, MessageSource
from ratatosk.adapters.redis import (
    RedisConversationWindows,
    RedisRateLimiter,
    RedisSendLedger,
    RedisStatusTracker,
    RedisTemplateCache,
)
from ratatosk.bootstrap import build_connector, complete_plugs, redis_url, settings_from_env
from ratatosk.testing import FakeTwilio
from ratatosk.twilio import SendPolicy, TwilioErrorCodes
from ratatosk.twilio.connector import Plugs
from redis_support import RedisServer

SENDER = "whatsapp:+14155238886"
CUSTOMER = "whatsapp:+15550002222"
PASSWORD = "hunter2-never-shown"


def _environ(fake: FakeTwilio, url: str) -> dict[str, str]:
    return {
        "TWILIO_ACCOUNT_SID": fake.account_sid,
        "TWILIO_AUTH_TOKEN": fake.auth_token,
        "TWILIO_WHATSAPP_FROM": SENDER,
        "REDIS_URL": url,
    }


def _text(message_id: str) -> object:
    return MessageBuilder().with_id(message_id).to_phone(CUSTOMER).with_text("hello").build()


class TestTheSetting:
    def test_redis_url_from_the_environment_is_kept_as_a_secret(self) -> None:
        settings = settings_from_env({"REDIS_URL": f"redis://:{PASSWORD}@cache.example:6380/2"})
        assert PASSWORD not in repr(settings)
        assert settings.get_string("RedisUrl") is None  # a secret is read only as one
        assert redis_url(settings) == f"redis://:{PASSWORD}@cache.example:6380/2"

    async def test_a_bad_redis_url_is_a_coded_failure_that_never_shows_it(self) -> None:
        fake = FakeTwilio()
        url = f"redis://:{PASSWORD}@cache.example:port"
        connector = build_connector(environ=_environ(fake, url), transport=fake)
        failed = await connector.initialize()
        assert failed.error is not None
        assert failed.error.code == TwilioErrorCodes.INVALID_CONNECTION_SETTINGS
        assert "RedisUrl" in failed.error.details["fields"]
        assert PASSWORD not in repr(failed.error.to_dict())

    def test_without_it_nothing_imports_redis(self) -> None:
        """The in-memory default (``make run``) needs no redis-py: it is never even imported."""
        program = (
            "import sys, ratatosk, ratatosk.bootstrap, ratatosk.cli, ratatosk.testing\n"
            "from ratatosk.bootstrap import build_connector\n"
            "build_connector(environ={})\n"
            "print('redis' in sys.modules)\n"
        )
        environ = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        done = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, env=environ, check=True
        )
        assert done.stdout.strip() == "False"


class TestEveryPortAtOnce:
    async def test_complete_plugs_puts_every_state_port_on_redis(
        self, redis_server: RedisServer
    ) -> None:
        settings = ConnectionSettings().set_parameter("RedisUrl", redis_server.url, sensitive=True)
        plugs = complete_plugs(Plugs(transport=FakeTwilio()), settings, SendPolicy())
        try:
            assert isinstance(plugs.rate_limiter, RedisRateLimiter)
            assert isinstance(plugs.send_ledger, RedisSendLedger)
            assert isinstance(plugs.template_cache, RedisTemplateCache)
            assert isinstance(plugs.conversation_window, RedisConversationWindows)
            assert isinstance(plugs.status_tracker, RedisStatusTracker)
            assert len(plugs.closers) == 1
        finally:
            for close in plugs.closers:
                await close()

    async def test_a_senders_own_rate_holds_on_redis_too(self, redis_server: RedisServer) -> None:
        """``SenderRates`` reaches the shared limiter, not only the in-memory one."""
        slow = "whatsapp:+14155550100"
        settings = (
            ConnectionSettings()
            .set_parameter("RedisUrl", redis_server.url, sensitive=True)
            .set_parameter("SenderRates", f"{slow}=1")
        )
        plugs = complete_plugs(Plugs(transport=FakeTwilio()), settings, SendPolicy())
        try:
            assert plugs.rate_limiter is not None
            await plugs.rate_limiter.reserve(slow)
            assert await plugs.rate_limiter.reserve(slow) > 0.5  # 1/s: the next slot is ~1 s on
        finally:
            for close in plugs.closers:
                await close()

    async def test_what_one_process_sent_another_does_not_send_again(
        self, redis_server: RedisServer
    ) -> None:
        fake = FakeTwilio()
        environ = _environ(fake, redis_server.url)
        async with (
            build_connector(environ=environ, transport=fake) as first,
            build_connector(environ=environ, transport=fake) as second,
        ):
            sent = await first.send_message(_text("wiring-once"))
            again = await second.send_message(_text("wiring-once"))
        assert sent.value is not None
        assert again.value is not None
        assert again.value.provider_message_id == sent.value.provider_message_id
        assert again.value.data["replayed"] is True
        assert len(fake.outbox) == 1

    async def test_a_customer_who_wrote_to_one_process_may_be_answered_by_another(
        self, redis_server: RedisServer
    ) -> None:
        fake = FakeTwilio()
        environ = _environ(fake, redis_server.url) | {"RATATOSK_WINDOW_GUARD": "true"}
        url = "https://hooks.example.com/webhooks/twilio/whatsapp"
        async with (
            build_connector(environ=environ, transport=fake) as receiver,
            build_connector(environ=environ, transport=fake) as sender,
        ):
            refused = await sender.send_message(_text("before-writing"))
            assert refused.error is not None
            assert refused.error.code == TwilioErrorCodes.OUTSIDE_CONVERSATION_WINDOW
            body, _ = fake.inbound_message_body(url, CUSTOMER, SENDER, "hi")
            assert parse_qs(body)["From"] == [CUSTOMER]
            (await receiver.receive_messages(MessageSource.url_post(body))).unwrap()
            allowed = await sender.send_message(_text("after-writing"))
        assert allowed.successful, allowed.error

    async def test_a_late_callback_on_one_process_never_moves_back_what_another_saw(
        self, redis_server: RedisServer
    ) -> None:
        fake = FakeTwilio()
        environ = _environ(fake, redis_server.url)
        url = "https://hooks.example.com/webhooks/twilio/whatsapp/status"
        async with (
            build_connector(environ=environ, transport=fake) as first,
            build_connector(environ=environ, transport=fake) as second,
        ):
            sid = (await first.send_message(_text("tracked-across"))).unwrap().provider_message_id
            read, _ = fake.status_callback_body(url, sid, "read")
            late, _ = fake.status_callback_body(url, sid, "sent")
            (await first.receive_message_status(MessageSource.url_post(read))).unwrap()
            update = (await second.receive_message_status(MessageSource.url_post(late))).unwrap()
            tracked = (await second.get_message_status(sid, prefer_tracked=True)).unwrap()
        assert update.data["advanced"] is False
        assert update.data["current_status"] == "Read"
        assert tracked.data["source"] == "tracker"
        assert tracked.status.value == "Read"


class TestTheCommandLine:
    def test_serve_refuses_a_bad_redis_url_without_showing_it(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "ratatosk", "serve", "--redis", f"redis://:{PASSWORD}@h:x"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode != 0
        assert "--redis must be a redis:// or rediss:// URL" in done.stdout + done.stderr
        assert PASSWORD not in done.stdout + done.stderr


def _serve(port: int, redis: str, token: str) -> subprocess.Popen[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "REDIS_"))}
    environ |= {"TWILIO_ACCOUNT_SID": "AC" + "7e" * 16, "TWILIO_AUTH_TOKEN": token}
    command = [sys.executable, "-m", "ratatosk", "--json", "serve", "--port", str(port)]
    return subprocess.Popen(
        [*command, "--public-url", "https://hooks.example.com", "--redis", redis],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_two_serve_processes_with_redis_handle_a_delivery_once(
    redis_server: RedisServer,
) -> None:
    """The same signed webhook posted to two ``serve --redis`` nodes is handled by one."""
    fake = FakeTwilio(account_sid="AC" + "7e" * 16, auth_token="serve-redis-token-0123456789")
    public = "https://hooks.example.com/webhooks/twilio/whatsapp"
    body, signature = fake.inbound_message_body(public, CUSTOMER, SENDER, "once, please")
    ports = [_free_port(), _free_port()]
    nodes = [_serve(port, redis_server.url, fake.auth_token) for port in ports]
    answers = []
    try:
        for port, node in zip(ports, nodes, strict=True):
            _wait_for_port(port, node)
        for port in [*ports, *ports]:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/webhooks/twilio/whatsapp",
                data=body.encode(),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": signature,
                },
            )
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
                answers.append(answer.status)
    finally:
        outputs = []
        for node in nodes:
            node.send_signal(signal.SIGTERM)
            try:
                out, _ = node.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                node.kill()
                out, _ = node.communicate()
            outputs.append(out.decode())
    assert answers == [200, 200, 200, 200]
    events = [json.loads(line) for text in outputs for line in text.splitlines() if line]
    handled = [e for e in events if e["event"] == "message"]
    assert [e["content"]["text"] for e in handled] == ["once, please"]
    listening = [e for e in events if e["event"] == "listening"]
    assert len(listening) == 2
    assert all(e["state"].startswith("Redis at 127.0.0.1:") for e in listening)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30  # a hang guard, not a timing assertion
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port}") from None
            time.sleep(0.05)
