"""``fetch_media`` on FakeTwilio: the model keeps a customer's media, the fake serves it.

The fake answers in process from the same model the emulator serves over
HTTP: the Media URL needs the account's credentials and redirects to the CDN
(``mms.twiliocdn.com``), which the policy must allow; the limits and codes
are the HTTP adapter's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlencode

import pytest

from ratatosk import ConnectionSettings, MediaContent, MessageSource, MessagingErrorCodes
from ratatosk.ports import (
    AccountResource,
    ApiError,
    CreateMessageRequest,
    MediaPolicy,
    MessagePage,
    MessageQuery,
    MessageResource,
)
from ratatosk.testing import FakeTwilio, InboundMedia
from ratatosk.twilio import TwilioChannelSchemas, TwilioErrorCodes, TwilioWhatsAppConnector

CUSTOMER = "whatsapp:+15551234567"
BUSINESS = "whatsapp:+14155238886"
HOOK = "https://hooks.example.com/webhooks/twilio/whatsapp"
PHOTO = bytes(range(256)) * 1000


def _settings(fake: FakeTwilio, token: str | None = None) -> ConnectionSettings:
    return (
        ConnectionSettings()
        .set_parameter("AccountSid", fake.account_sid)
        .set_parameter("AuthToken", token or fake.auth_token)
    )


@pytest.fixture
def fake() -> FakeTwilio:
    return FakeTwilio(seed=7)


@pytest.fixture
async def connector(fake: FakeTwilio) -> AsyncIterator[TwilioWhatsAppConnector]:
    async with TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP, _settings(fake), transport=fake
    ) as connector:
        yield connector


def _inbound(fake: FakeTwilio, *media: InboundMedia) -> dict[str, str]:
    body, _ = fake.inbound_message_body(HOOK, CUSTOMER, BUSINESS, media=media)
    return dict(parse_qsl(body))


class TestFetchMediaOnTheFake:
    async def test_the_webhooks_media_content_fetches_its_bytes(
        self, fake: FakeTwilio, connector: TwilioWhatsAppConnector
    ) -> None:
        """From the webhook body to the bytes: the MediaContent the decoder made is enough."""
        form = _inbound(fake, InboundMedia("Image/JPEG; name=a.jpg", PHOTO))
        assert form["MediaUrl0"].startswith("https://api.twilio.com/2010-04-01/Accounts/")
        received = await connector.receive_messages(MessageSource.url_post(urlencode(form)))
        [message] = received.unwrap().messages
        assert isinstance(message.content, MediaContent)
        fetched = (await connector.fetch_media(message.content)).unwrap()
        assert fetched.data == PHOTO
        assert fetched.content_type == "image/jpeg"
        assert fetched.size == len(PHOTO)
        assert "size=256000" in repr(fetched)

    async def test_streaming_hands_out_the_same_bytes_in_chunks(
        self, fake: FakeTwilio, connector: TwilioWhatsAppConnector
    ) -> None:
        form = _inbound(fake, InboundMedia("video/mp4", PHOTO))
        opened = (await connector.fetch_media(form["MediaUrl0"], stream=True)).unwrap()
        async with opened as stream:
            chunks = [chunk async for chunk in stream]
        assert len(chunks) > 1
        assert b"".join(chunks) == PHOTO
        assert (stream.content_type, stream.content_length, stream.received) == (
            "video/mp4",
            len(PHOTO),
            len(PHOTO),
        )

    async def test_a_policy_without_twilios_cdn_refuses_the_redirect(
        self, fake: FakeTwilio, connector: TwilioWhatsAppConnector
    ) -> None:
        form = _inbound(fake, InboundMedia("image/png", b"png"))
        result = await connector.fetch_media(
            form["MediaUrl0"], policy=MediaPolicy(allowed_hosts=("cdn.example",))
        )
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.MEDIA_REDIRECT_NOT_ALLOWED
        assert result.error.details["host"] == "mms.twiliocdn.com"

    async def test_media_over_max_bytes_is_refused(
        self, fake: FakeTwilio, connector: TwilioWhatsAppConnector
    ) -> None:
        form = _inbound(fake, InboundMedia("image/png", PHOTO))
        result = await connector.fetch_media(form["MediaUrl0"], policy=MediaPolicy(max_bytes=1000))
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.MEDIA_TOO_LARGE
        assert result.error.details == {"max_bytes": 1000, "declared": len(PHOTO)}

    async def test_an_unknown_media_sid_is_twilios_404(
        self, fake: FakeTwilio, connector: TwilioWhatsAppConnector
    ) -> None:
        form = _inbound(fake, InboundMedia("image/png", b"png"))
        unknown = form["MediaUrl0"][:-32] + "f" * 32
        result = await connector.fetch_media(unknown)
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.MEDIA_FETCH_FAILED
        assert (result.error.details["http_status"], result.error.provider_code) == (404, 20404)

    async def test_a_url_off_twilios_api_is_refused(
        self, fake: FakeTwilio, connector: TwilioWhatsAppConnector
    ) -> None:
        form = _inbound(fake, InboundMedia("image/png", b"png"))
        moved = form["MediaUrl0"].replace("api.twilio.com", "api.twilio.com.evil.example")
        result = await connector.fetch_media(moved)
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.MEDIA_URL_NOT_ALLOWED

    async def test_wrong_credentials_are_twilios_401(self) -> None:
        fake = FakeTwilio(seed=8)
        form = dict(parse_qsl(fake.inbound_message_body(
            HOOK, CUSTOMER, BUSINESS, media=[InboundMedia("image/png", b"png")]
        )[0]))  # fmt: skip
        impostor = FakeTwilio(fake.account_sid, "another-token-0000000000", model=fake.model)
        async with TwilioWhatsAppConnector(
            TwilioChannelSchemas.TWILIO_WHATSAPP,
            _settings(fake, "another-token-0000000000"),
            transport=impostor,
        ) as connector:
            result = await connector.fetch_media(form["MediaUrl0"])
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.MEDIA_FETCH_FAILED
        assert result.error.details["http_status"] == 401

    async def test_fetch_media_takes_a_media_content_or_its_url(
        self, connector: TwilioWhatsAppConnector
    ) -> None:
        with pytest.raises(TypeError, match="MediaContent"):
            await connector.fetch_media(b"https://api.twilio.com/x")  # type: ignore[call-overload]


class _SendOnly:
    """A transport of one's own that sends but cannot fetch media."""

    def __init__(self, inner: FakeTwilio) -> None:
        self._inner = inner

    async def create_message(self, request: CreateMessageRequest) -> MessageResource | ApiError:
        return await self._inner.create_message(request)

    async def fetch_message(self, sid: str) -> MessageResource | ApiError:
        return await self._inner.fetch_message(sid)

    async def list_messages(self, query: MessageQuery) -> MessagePage | ApiError:
        return await self._inner.list_messages(query)

    async def fetch_account(self) -> AccountResource | ApiError:
        return await self._inner.fetch_account()

    async def close(self) -> None:
        await self._inner.close()


async def test_a_transport_that_cannot_fetch_media_says_so() -> None:
    fake = FakeTwilio(seed=9)
    async with TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP, _settings(fake), transport=_SendOnly(fake)
    ) as connector:
        result = await connector.fetch_media("https://api.twilio.com/2010-04-01/x")
    assert result.error is not None
    assert result.error.code == MessagingErrorCodes.UNSUPPORTED_OPERATION
