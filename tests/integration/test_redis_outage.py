"""Redis unreachable: sends fail with a coded error and reach no one, webhooks get 503.

Each test runs on a redis-server of its own and stops it mid-test: a send
never goes to Twilio without the shared limiter and ledger, an answer Twilio
gave is never reported as anything but what it was, and the webhook server
never answers 200 to a delivery it could not deduplicate. After a restart
on the same port the same clients work again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

import aiohttp

from ratatosk import MessageBuilder, ReceiveResult
from ratatosk.adapters.http_server import start_server
from ratatosk.adapters.redis import RedisRateLimiter, RedisStores
from ratatosk.bootstrap import build_connector, build_webhook_app, settings_from_env
from ratatosk.ports import CreateMessageRequest, TransportError
from ratatosk.testing import FakeTwilio
from ratatosk.twilio import TwilioChannelSchemas, TwilioErrorCodes, TwilioWhatsAppConnector
from redis_support import RedisServer

SENDER = "whatsapp:+14155238886"
CUSTOMER = "whatsapp:+15550002222"
PATH = "/webhooks/twilio/whatsapp"


def _text(message_id: str) -> object:
    return MessageBuilder().with_id(message_id).to_phone(CUSTOMER).with_text("hello").build()


def _environ(fake: FakeTwilio, url: str) -> dict[str, str]:
    return {
        "TWILIO_ACCOUNT_SID": fake.account_sid,
        "TWILIO_AUTH_TOKEN": fake.auth_token,
        "TWILIO_WHATSAPP_FROM": SENDER,
        "REDIS_URL": url,
    }


class StopsRedisWhileTwilioAnswers(FakeTwilio):
    """Twilio stores the message, and Redis goes down before the connector hears back.

    ``lost=True``: the answer is lost as well (a dropped connection), so the
    connector must reconcile while the ledger cannot be asked.
    """

    def __init__(self, redis: RedisServer, *, lost: bool) -> None:
        super().__init__()
        self.redis_server = redis
        self.lost = lost
        self.armed = False

    async def create_message(self, request: CreateMessageRequest) -> object:
        if not self.armed:
            return await super().create_message(request)
        self.armed = False
        answer = await super().create_message(request)
        self.redis_server.stop()
        if self.lost:
            raise TransportError("connection reset after sending", maybe_delivered=True)
        return answer


class TestSending:
    async def test_a_send_while_redis_is_down_fails_coded_and_reaches_no_one(
        self, own_redis_server: RedisServer
    ) -> None:
        fake = FakeTwilio()
        async with build_connector(
            environ=_environ(fake, own_redis_server.url), transport=fake
        ) as connector:
            assert (await connector.send_message(_text("before"))).successful
            own_redis_server.stop()
            failed = await connector.send_message(_text("during"))
            assert failed.error is not None
            assert failed.error.code == TwilioErrorCodes.STATE_STORE_UNAVAILABLE
            assert failed.error.details["message_id"] == "during"
            assert "nothing was sent" in failed.error.message
            assert len(fake.outbox) == 1
            own_redis_server.start()
            again = await connector.send_message(_text("during"))  # forgotten: sent now, once
            assert again.successful, again.error
        assert [m.params["Body"] for m in fake.outbox] == ["hello", "hello"]

    async def test_without_the_shared_limiter_nothing_is_sent(
        self, redis_server: RedisServer, own_redis_server: RedisServer
    ) -> None:
        """The ledger answers, the limiter's Redis is down: still nothing reaches Twilio."""
        fake = FakeTwilio()
        limiter_client = own_redis_server.client()
        try:
            connector = TwilioWhatsAppConnector(
                TwilioChannelSchemas.TWILIO_WHATSAPP,
                settings_from_env(_environ(fake, redis_server.url)),
                transport=fake,
                rate_limiter=RedisRateLimiter(limiter_client, 80.0, 80.0),
            )
            async with connector:
                own_redis_server.stop()
                failed = await connector.send_message(_text("limiter-down"))
                assert failed.error is not None
                assert failed.error.code == TwilioErrorCodes.STATE_STORE_UNAVAILABLE
                assert fake.outbox == []
                own_redis_server.start()
                assert (await connector.send_message(_text("limiter-down"))).successful
            assert len(fake.outbox) == 1
        finally:
            await limiter_client.aclose()

    async def test_a_lost_answer_with_the_ledger_down_is_unknown_never_resent(
        self, own_redis_server: RedisServer
    ) -> None:
        fake = StopsRedisWhileTwilioAnswers(own_redis_server, lost=True)
        async with build_connector(
            environ=_environ(fake, own_redis_server.url), transport=fake
        ) as connector:
            fake.armed = True
            result = await connector.send_message(_text("lost"))
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.SEND_OUTCOME_UNKNOWN
        assert "Redis could not" in result.error.message
        assert len(fake.outbox) == 1

    async def test_an_answer_twilio_gave_is_reported_though_the_ledger_went_down(
        self, own_redis_server: RedisServer
    ) -> None:
        fake = StopsRedisWhileTwilioAnswers(own_redis_server, lost=False)
        async with build_connector(
            environ=_environ(fake, own_redis_server.url), transport=fake
        ) as connector:
            fake.armed = True
            result = await connector.send_message(_text("answered"))
        assert result.value is not None, result.error
        assert result.value.provider_message_id == _only_sid(fake)


def _only_sid(fake: FakeTwilio) -> str:
    (message,) = fake.outbox
    sid = message.sid
    assert isinstance(sid, str)
    return sid


class TestWebhooks:
    async def test_the_server_answers_503_and_never_200_without_deduplication(
        self, own_redis_server: RedisServer
    ) -> None:
        fake = FakeTwilio()
        handled: list[ReceiveResult] = []

        async def on_message(received: ReceiveResult) -> None:
            handled.append(received)

        stores = RedisStores.from_url(own_redis_server.url, timeout=1.0)
        connector = build_connector(
            environ=_environ(fake, own_redis_server.url), transport=fake, redis=stores
        )
        server = None
        try:
            (await connector.initialize()).unwrap()
            app = build_webhook_app(connector, on_message=on_message, dedup=stores.deduplicator())
            server = await start_server(app, access_log=False)
            post = _poster(fake, server.url)
            first, second = post("first"), post("second")
            assert (await first()).status == 200
            own_redis_server.stop()
            refused = await second()
            assert refused.status == 503
            assert refused.code == TwilioErrorCodes.STATE_STORE_UNAVAILABLE
            assert refused.retry_after is not None
            assert (await first()).status == 503  # a repeat is not "duplicate, 200" either
            own_redis_server.start()
            assert (await second()).status == 200  # Twilio's retry is handled
            assert (await second()).status == 200  # and its repeat is a duplicate
        finally:
            if server is not None:
                await server.close()
            await connector.shutdown()
            await stores.close()
        assert [r.messages[0].content.text for r in handled] == ["first", "second"]


class Answer:
    def __init__(self, status: int, code: str | None, retry_after: str | None) -> None:
        self.status = status
        self.code = code
        self.retry_after = retry_after


def _poster(fake: FakeTwilio, base: str) -> Callable[[str], Callable[[], Awaitable[Answer]]]:
    """A signed inbound message per text; each can be delivered (again) by calling it."""

    def message(text: str) -> Callable[[], Awaitable[Answer]]:
        body, signature = fake.inbound_message_body(base + PATH, CUSTOMER, SENDER, text)
        assert dict(parse_qsl(body))["Body"] == text

        async def deliver() -> Answer:
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    base + PATH,
                    data=body,
                    headers={
                        "Content-Type": "application/x-www-form-urlencoded",
                        "X-Twilio-Signature": signature,
                    },
                ) as response,
            ):
                code = None
                if response.content_type == "application/json":
                    code = (await response.json())["code"]
                return Answer(response.status, code, response.headers.get("Retry-After"))

        return deliver

    return message
