"""The connector through FakeTwilio: every documented example, rule and error code.

No sockets: the fake is the same Twilio behaviour model the emulator serves,
so these tests exercise the real connector, codec and model together.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import urlencode

import pytest

from ratatosk import (
    ConnectionSettings,
    ConnectorException,
    ConnectorState,
    Endpoint,
    EndpointType,
    LocationContent,
    MediaContent,
    MediaType,
    MessageBuilder,
    MessageSource,
    MessageStatus,
    MessagingErrorCodes,
    TemplateContent,
)
from ratatosk.adapters.templates import StaticTemplateCatalog
from ratatosk.domain.schema import Capability
from ratatosk.ports import ApiError, CreateMessageRequest, MessageResource, TemplateInfo
from ratatosk.testing import FakeTwilio
from ratatosk.twilio import (
    TwilioChannelSchemas,
    TwilioErrorCodes,
    TwilioWhatsAppConnector,
    compute_signature,
)
from ratatosk.twilio.resilience import RetryPolicy, SendPolicy

ACCOUNT = "AC" + "1" * 32
TOKEN = "tok-SECRET-9f8e7d6c5b4a39281706"
SENDER = "whatsapp:+14155238886"
RECIPIENT = "whatsapp:+15550002222"
ORDER_SID = "HX" + "a" * 32


def settings(**extra: str) -> ConnectionSettings:
    result = (
        ConnectionSettings().set_parameter("AccountSid", ACCOUNT).set_parameter("AuthToken", TOKEN)
    )
    for name, value in extra.items():
        result = result.set_parameter(name, value)
    return result


@pytest.fixture
def fake() -> FakeTwilio:
    return FakeTwilio(account_sid=ACCOUNT, auth_token=TOKEN)


def make_connector(fake: FakeTwilio, **kw: object) -> TwilioWhatsAppConnector:
    opts: dict[str, object] = {
        "transport": fake,
        "template_catalog": StaticTemplateCatalog(
            {
                "order_confirmed": TemplateInfo(
                    sid=ORDER_SID,
                    friendly_name="order_confirmed",
                    whatsapp_status="approved",
                    variables={"order_id": "x", "delivery_date": "y"},
                ),
                "pending_promo": TemplateInfo(
                    sid="HX" + "b" * 32, friendly_name="pending_promo", whatsapp_status="pending"
                ),
            }
        ),
    }
    opts.update(kw)
    schema = opts.pop("schema", TwilioChannelSchemas.TWILIO_WHATSAPP)
    config = opts.pop("settings", settings(StatusCallback="https://hooks.example.com/status"))
    return TwilioWhatsAppConnector(schema, config, **opts)  # type: ignore[arg-type]


@pytest.fixture
async def connector(fake: FakeTwilio) -> AsyncIterator[TwilioWhatsAppConnector]:
    async with make_connector(fake) as ready:
        yield ready


class TestDocumentedExamples:
    async def test_text_message_sends_exact_form(
        self, connector: TwilioWhatsAppConnector, fake: FakeTwilio
    ) -> None:
        """The documentation's text example reaches Twilio as To, From, Body and StatusCallback."""
        message = (
            MessageBuilder()
            .with_id("wa-1")
            .from_phone(SENDER)
            .to_phone(RECIPIENT)
            .with_text("Hello from WhatsApp!")
            .build()
        )
        result = await connector.send_message(message)
        sent = result.unwrap()
        assert sent.message_id == "wa-1"
        assert sent.provider_message_id.startswith("SM")
        assert sent.status is MessageStatus.QUEUED
        assert fake.outbox[0].params == {
            "To": RECIPIENT,
            "From": SENDER,
            "Body": "Hello from WhatsApp!",
            "StatusCallback": "https://hooks.example.com/status",
        }
        assert fake.outbox[0].sid == sent.provider_message_id

    async def test_template_by_name_without_sender_uses_default(self, fake: FakeTwilio) -> None:
        """The template example has no sender: FromNumber supplies it and the name resolves."""
        config = settings(FromNumber=SENDER)
        async with make_connector(fake, settings=config) as connector:
            message = (
                MessageBuilder()
                .with_id("wa-template-1")
                .to_phone(RECIPIENT)
                .with_content(
                    TemplateContent(
                        "order_confirmed", {"order_id": "ORD-123", "delivery_date": "2026-05-15"}
                    )
                )
                .build()
            )
            sent = (await connector.send_message(message)).unwrap()
        params = fake.outbox[0].params
        assert params["ContentSid"] == ORDER_SID
        assert json.loads(params["ContentVariables"]) == {
            "order_id": "ORD-123",
            "delivery_date": "2026-05-15",
        }
        assert params["From"] == SENDER
        assert "Body" not in params
        assert sent.provider_message_id == fake.outbox[0].sid

    async def test_media_with_caption(
        self, connector: TwilioWhatsAppConnector, fake: FakeTwilio
    ) -> None:
        """Media goes as MediaUrl and the caption property becomes Body."""
        message = (
            MessageBuilder()
            .from_phone(SENDER)
            .to_phone(RECIPIENT)
            .with_content(
                MediaContent(MediaType.IMAGE, "product.jpg", "https://example.com/product.jpg")
            )
            .with_property("caption", "Check out our new product!")
            .build()
        )
        sent = (await connector.send_message(message)).unwrap()
        record = fake.outbox[0]
        assert record.media_urls == ("https://example.com/product.jpg",)
        assert record.params["Body"] == "Check out our new product!"
        assert sent.provider_message_id.startswith("MM")

    async def test_validity_period_is_sent(
        self, connector: TwilioWhatsAppConnector, fake: FakeTwilio
    ) -> None:
        """ValidityPeriod, ignored by the .NET sibling, reaches Twilio."""
        message = (
            MessageBuilder()
            .from_phone(SENDER)
            .to_phone(RECIPIENT)
            .with_text("hi")
            .with_property("ValidityPeriod", 600)
            .build()
        )
        (await connector.send_message(message)).unwrap()
        assert fake.outbox[0].params["ValidityPeriod"] == "600"


def text(to: str = RECIPIENT, sender: str | None = SENDER, body: str = "hi") -> MessageBuilder:
    builder = MessageBuilder().to_phone(to).with_text(body)
    return builder.from_phone(sender) if sender is not None else builder


class TestRefusalsBeforeAnyIO:
    @pytest.mark.parametrize(
        ("builder", "code"),
        [
            (text(sender=None), TwilioErrorCodes.MISSING_FROM_NUMBER),
            (text(sender="+1 not a number"), TwilioErrorCodes.INVALID_SENDER),
            (text(sender="sms:+14155238886"), TwilioErrorCodes.INVALID_SENDER),
            (text(to="whatsapp:+1"), TwilioErrorCodes.INVALID_WHATSAPP_NUMBER),
            (text(to="15550002222"), MessagingErrorCodes.INVALID_RECIPIENT),
            (text(to="sms:+15550002222"), MessagingErrorCodes.INVALID_RECIPIENT),
            (text(body=""), TwilioErrorCodes.INVALID_MESSAGE),
            (text(body="x" * 1601), TwilioErrorCodes.INVALID_MESSAGE),
            (text().with_property("ValidityPeriod", 0), TwilioErrorCodes.INVALID_MESSAGE),
            (text().with_property("ValidityPeriod", 36001), TwilioErrorCodes.INVALID_MESSAGE),
            (text().with_property("caption", "dropped"), TwilioErrorCodes.INVALID_MESSAGE),
            (
                text().with_content(LocationContent(latitude=91.0, longitude=2.0, label="x")),
                TwilioErrorCodes.INVALID_MESSAGE,
            ),
            (
                text().with_content(TemplateContent("", {})),
                TwilioErrorCodes.MISSING_CONTENT_SID,
            ),
            (
                text().with_content(TemplateContent("no_such_template", {})),
                TwilioErrorCodes.MISSING_CONTENT_SID,
            ),
            (
                text().with_content(TemplateContent("pending_promo", {})),
                TwilioErrorCodes.TEMPLATE_NOT_APPROVED,
            ),
            (
                text().with_content(TemplateContent("order_confirmed", {"order_id": "1"})),
                TwilioErrorCodes.INVALID_MESSAGE,
            ),
            (
                text().with_content(TemplateContent(ORDER_SID, {"order_id": None})),
                TwilioErrorCodes.INVALID_MESSAGE,
            ),
            (
                text().with_content(MediaContent(MediaType.IMAGE, "a.jpg", "ftp://x/a.jpg")),
                TwilioErrorCodes.INVALID_MESSAGE,
            ),
        ],
    )
    async def test_refused_with_code_and_nothing_sent(
        self,
        connector: TwilioWhatsAppConnector,
        fake: FakeTwilio,
        builder: MessageBuilder,
        code: str,
    ) -> None:
        """Each broken message gets its documented code and Twilio sees nothing."""
        result = await connector.send_message(builder.build())
        assert not result.successful
        assert result.error is not None
        assert result.error.code == code
        assert fake.outbox == []

    async def test_no_recipient(self, connector: TwilioWhatsAppConnector) -> None:
        """A message without a recipient is INVALID_RECIPIENT."""
        message = MessageBuilder().from_phone(SENDER).with_text("x").build()
        result = await connector.send_message(message)
        assert result.error is not None
        assert result.error.code == MessagingErrorCodes.INVALID_RECIPIENT

    async def test_non_phone_endpoint(self, connector: TwilioWhatsAppConnector) -> None:
        """An e-mail recipient is refused: the schema only declares phone numbers."""
        message = (
            MessageBuilder()
            .from_phone(SENDER)
            .to_endpoint(Endpoint(EndpointType.EMAIL_ADDRESS, "a@example.com"))
            .with_text("x")
            .build()
        )
        result = await connector.send_message(message)
        assert result.error is not None
        assert result.error.code == MessagingErrorCodes.INVALID_RECIPIENT

    async def test_missing_content_sid_without_catalog(self, fake: FakeTwilio) -> None:
        """A template name with no catalog (a transport of the caller's that reads none)."""

        class NoTemplates:  # the fake's messaging calls, without its Content API
            def __getattr__(self, name: str) -> object:
                if name == "template_catalog":
                    raise AttributeError(name)
                return getattr(fake, name)

        async with make_connector(cast(Any, NoTemplates()), template_catalog=None) as connector:
            message = text().with_content(TemplateContent("order_confirmed", {})).build()
            result = await connector.send_message(message)
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.MISSING_CONTENT_SID

    async def test_narrowed_schema_refuses_operation(self, fake: FakeTwilio) -> None:
        """A schema without a capability refuses the operation before any I/O."""
        schema = TwilioChannelSchemas.TWILIO_WHATSAPP.without_capabilities(
            Capability.MESSAGE_STATUS_QUERY | Capability.SEND_MESSAGES
        )
        async with make_connector(fake, schema=schema) as connector:
            status = await connector.get_message_status("SM" + "0" * 32)
            sent = await connector.send_message(text().build())
        assert status.error is not None
        assert status.error.code == MessagingErrorCodes.UNSUPPORTED_OPERATION
        assert sent.error is not None
        assert sent.error.code == MessagingErrorCodes.UNSUPPORTED_OPERATION
        assert fake.outbox == []

    async def test_bare_e164_recipient_is_normalised(
        self, connector: TwilioWhatsAppConnector, fake: FakeTwilio
    ) -> None:
        """+15550002222 goes out as whatsapp:+15550002222."""
        (await connector.send_message(text(to="+15550002222").build())).unwrap()
        assert fake.outbox[0].params["To"] == RECIPIENT

    async def test_messaging_service_is_last_sender_fallback(self, fake: FakeTwilio) -> None:
        """With no sender anywhere but a Messaging Service, Twilio picks the sender."""
        service = "MG" + "c" * 32
        async with make_connector(fake, settings=settings(MessagingServiceSid=service)) as c:
            (await c.send_message(text(sender=None).build())).unwrap()
        assert fake.outbox[0].params["MessagingServiceSid"] == service
        assert "From" not in fake.outbox[0].params


class TestTwilioErrors:
    @pytest.mark.parametrize(
        ("twilio_code", "status", "code"),
        [
            (21211, 400, MessagingErrorCodes.INVALID_RECIPIENT),
            (21610, 400, MessagingErrorCodes.INVALID_RECIPIENT),
            (21614, 400, TwilioErrorCodes.INVALID_SENDER),
            (21408, 400, TwilioErrorCodes.INVALID_SENDER),
            (20001, 400, TwilioErrorCodes.INVALID_MESSAGE),
            (63018, 400, MessagingErrorCodes.RATE_LIMITED),
            (30008, 400, MessagingErrorCodes.SEND_MESSAGE_FAILED),
        ],
    )
    async def test_provider_code_mapped_and_kept(
        self,
        connector: TwilioWhatsAppConnector,
        fake: FakeTwilio,
        twilio_code: int,
        status: int,
        code: str,
    ) -> None:
        """Twilio's refusal maps to the framework code and keeps Twilio's own code."""
        fake.fail_next(twilio_code, status=status)
        result = await connector.send_message(text().build())
        assert result.error is not None
        assert result.error.code == code
        assert result.error.provider_code == twilio_code

    async def test_rate_limit_is_retried_then_reported(self, fake: FakeTwilio) -> None:
        """20429 is retried (Twilio did not process it); after max attempts it is RATE_LIMITED."""
        policy = SendPolicy(retry=RetryPolicy(max_attempts=2, base_delay=0.001))
        async with make_connector(fake, send_policy=policy) as connector:
            fake.fail_next(20429, status=429, retry_after=0)
            ok = await connector.send_message(text().build())
            assert ok.successful
            fake.fail_next(20429, status=429, retry_after=0)
            fake.fail_next(20429, status=429, retry_after=0)
            limited = await connector.send_message(text().build())
        assert limited.error is not None
        assert limited.error.code == MessagingErrorCodes.RATE_LIMITED
        assert limited.error.provider_code == 20429
        assert len(fake.outbox) == 1


class TestStatusQuery:
    async def test_status_follows_twilio(
        self, connector: TwilioWhatsAppConnector, fake: FakeTwilio
    ) -> None:
        """get_message_status reports what Twilio has, read included."""
        sid = (await connector.send_message(text().build())).unwrap().provider_message_id
        fake.set_status(sid, "read")
        update = (await connector.get_message_status(sid)).unwrap()
        assert update.message_id == sid
        assert update.status is MessageStatus.READ
        assert update.data["twilio_status"] == "read"

    async def test_failed_status_carries_error(
        self, connector: TwilioWhatsAppConnector, fake: FakeTwilio
    ) -> None:
        """An undelivered message reports its Twilio error code."""
        sid = (await connector.send_message(text().build())).unwrap().provider_message_id
        fake.set_status(sid, "undelivered", error_code=63016)
        update = (await connector.get_message_status(sid)).unwrap()
        assert update.status is MessageStatus.DELIVERY_FAILED
        assert update.error_code == 63016

    async def test_unknown_sid(self, connector: TwilioWhatsAppConnector) -> None:
        """An unknown SID is WHATSAPP_STATUS_QUERY_FAILED with Twilio's 20404."""
        result = await connector.get_message_status("SM" + "f" * 32)
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.WHATSAPP_STATUS_QUERY_FAILED
        assert result.error.provider_code == 20404

    async def test_malformed_sid(self, connector: TwilioWhatsAppConnector) -> None:
        """Something that is not a message SID never reaches Twilio."""
        result = await connector.get_message_status("not-a-sid")
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.STATUS_QUERY_FAILED


class TestBatch:
    async def test_batch_keeps_order_and_isolates_failures(
        self, connector: TwilioWhatsAppConnector, fake: FakeTwilio
    ) -> None:
        """One result per message, in input order; a bad message fails only itself."""
        messages = [text(body=f"m{i}").with_id(f"id-{i}").build() for i in range(20)]
        messages[7] = text(to="nope").with_id("id-7").build()
        results = await connector.send_batch(messages, max_concurrency=5)
        assert [r.successful for r in results] == [i != 7 for i in range(20)]
        assert [r.value.message_id for r in results if r.value] == [
            f"id-{i}" for i in range(20) if i != 7
        ]
        assert len(fake.outbox) == 19


class TestReceiving:
    async def test_inbound_text(self, connector: TwilioWhatsAppConnector) -> None:
        """A form webhook becomes a message with the SID as id and profile properties."""
        body = urlencode(
            {
                "MessageSid": "SM" + "a" * 32,
                "From": "whatsapp:+15551234567",
                "To": SENDER,
                "Body": "Hola",
                "ProfileName": "Zoë",
                "WaId": "15551234567",
                "NumMedia": "0",
            }
        )
        received = (await connector.receive_messages(MessageSource.url_post(body))).unwrap()
        (message,) = received.messages
        assert message.id == "SM" + "a" * 32
        assert message.sender is not None
        assert message.sender.address == "whatsapp:+15551234567"
        assert message.properties["ProfileName"] == "Zoë"

    async def test_inbound_missing_fields(self, connector: TwilioWhatsAppConnector) -> None:
        """A form without MessageSid is INVALID_WEBHOOK_DATA."""
        result = await connector.receive_messages(MessageSource.url_post("Body=hi"))
        assert result.error is not None
        assert result.error.code == MessagingErrorCodes.INVALID_WEBHOOK_DATA

    async def test_inbound_unreadable_json(self, connector: TwilioWhatsAppConnector) -> None:
        """A JSON body that is not JSON is RECEIVE_MESSAGE_FAILED."""
        result = await connector.receive_messages(MessageSource.json("{nope"))
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.RECEIVE_MESSAGE_FAILED

    async def test_status_callback(self, connector: TwilioWhatsAppConnector) -> None:
        """A read callback is READ, not Delivered."""
        body = urlencode({"MessageSid": "SM" + "b" * 32, "MessageStatus": "read"})
        update = (await connector.receive_message_status(MessageSource.url_post(body))).unwrap()
        assert update.status is MessageStatus.READ

    async def test_status_callback_unreadable(self, connector: TwilioWhatsAppConnector) -> None:
        """An unreadable status body is RECEIVE_STATUS_FAILED."""
        result = await connector.receive_message_status(MessageSource.json("[1,"))
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.RECEIVE_STATUS_FAILED

    async def test_other_content_type(self, connector: TwilioWhatsAppConnector) -> None:
        """An XML body is UNSUPPORTED_CONTENT_TYPE."""
        source = MessageSource.from_content_type("text/xml", "<x/>")
        result = await connector.receive_messages(source)
        assert result.error is not None
        assert result.error.code == MessagingErrorCodes.UNSUPPORTED_CONTENT_TYPE

    async def test_validate_signature(self, connector: TwilioWhatsAppConnector) -> None:
        """validate_signature accepts Twilio's signature and refuses a forged one."""
        url = "https://hooks.example.com/wa"
        params = {"MessageSid": "SM" + "a" * 32, "Body": "hi"}
        source = MessageSource.url_post(urlencode(params))
        good = compute_signature(TOKEN, url, params)
        assert connector.validate_signature(url, source, good).successful
        forged = connector.validate_signature(url, source, "AAAA")
        assert forged.error is not None
        assert forged.error.code == TwilioErrorCodes.INVALID_SIGNATURE


class TestLifecycle:
    async def test_operation_before_initialize_raises(self, fake: FakeTwilio) -> None:
        """Using a connector that was never initialised is a programming error."""
        connector = make_connector(fake)
        with pytest.raises(RuntimeError, match="initialize"):
            await connector.send_message(text().build())

    async def test_missing_credentials(self, fake: FakeTwilio) -> None:
        """A blank AuthToken is MISSING_CREDENTIALS."""
        config = ConnectionSettings().set_parameter("AccountSid", ACCOUNT)
        connector = make_connector(fake, settings=config)
        result = await connector.initialize()
        assert result.error is not None
        assert result.error.code == MessagingErrorCodes.MISSING_CREDENTIALS
        assert connector.state is ConnectorState.ERROR

    async def test_invalid_settings_lists_every_field(self, fake: FakeTwilio) -> None:
        """Every bad field is reported at once, none of them with the token."""
        config = settings(
            StatusCallback="not a url", WebhookUrl="ftp://x", FromNumber="+1"
        ).set_parameter("AccountSid", "AC123")
        result = await make_connector(fake, settings=config).initialize()
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.INVALID_CONNECTION_SETTINGS
        assert set(result.error.details["fields"]) == {
            "AccountSid",
            "StatusCallback",
            "WebhookUrl",
            "FromNumber",
        }
        assert TOKEN not in repr(result)

    async def test_async_with_raises_on_bad_settings(self, fake: FakeTwilio) -> None:
        """``async with`` on unusable settings raises ConnectorException with the code."""
        with pytest.raises(ConnectorException) as caught:
            async with make_connector(fake, settings=ConnectionSettings()):
                pass
        assert caught.value.error.code == MessagingErrorCodes.MISSING_CREDENTIALS

    async def test_status_and_health(
        self, connector: TwilioWhatsAppConnector, fake: FakeTwilio
    ) -> None:
        """get_status reports the account; get_health is healthy when Twilio answers."""
        status = (await connector.get_status()).unwrap()
        assert status.state is ConnectorState.READY
        assert status.data["account_sid"] == ACCOUNT
        health = (await connector.get_health()).unwrap()
        assert health.healthy
        assert health.issues == ()

    async def test_health_of_uninitialised_connector(self, fake: FakeTwilio) -> None:
        """A connector that never initialised is unhealthy, and says why."""
        health = (await make_connector(fake).get_health()).unwrap()
        assert not health.healthy
        assert "Uninitialized" in health.issues[0]


class TestSecrets:
    async def test_token_never_shows(
        self,
        connector: TwilioWhatsAppConnector,
        fake: FakeTwilio,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """The auth token is in no repr, result, error or DEBUG log line."""
        caplog.set_level(logging.DEBUG)
        fake.fail_next(21211)
        failed = await connector.send_message(text().build())
        sent = await connector.send_message(text().build())
        texts = [repr(connector), str(connector.settings), repr(failed), repr(sent), caplog.text]
        assert not any(TOKEN in t for t in texts)


@pytest.mark.parametrize(("strict", "refused"), [("false", False), ("true", True)])
async def test_strict_numbers_also_apply_to_the_default_sender(
    fake: FakeTwilio, strict: str, refused: bool
) -> None:
    """+1555 numbers are possible but not valid: StrictNumbers refuses them at initialize."""
    connector = TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP,
        settings(FromNumber=RECIPIENT, StrictNumbers=strict),
        transport=fake,
    )
    result = await connector.initialize()
    assert (result.error is not None) is refused
    if result.error is not None:
        assert result.error.code == TwilioErrorCodes.INVALID_CONNECTION_SETTINGS
        assert "FromNumber" in result.error.details["fields"]


class _BrokenOnce(FakeTwilio):
    """A transport with a bug that only one message triggers."""

    async def create_message(self, request: CreateMessageRequest) -> MessageResource | ApiError:
        if request.body == "boom":
            raise RuntimeError("adapter bug")
        return await super().create_message(request)


async def test_an_unexpected_error_fails_only_its_own_message_in_a_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = _BrokenOnce(ACCOUNT, TOKEN)
    async with make_connector(fake) as connector:
        messages = [text(body=b).build() for b in ("a", "boom", "c")]
        results = await connector.send_batch(messages)
    assert [r.successful for r in results] == [True, False, True]
    failed = results[1].error
    assert failed is not None
    assert failed.code == MessagingErrorCodes.SEND_MESSAGE_FAILED
    assert failed.details["message_id"] == messages[1].id
    assert "RuntimeError" in caplog.text
