"""FakeTwilio, the clocks and the public strategies of ``ratatosk.testing``.

The fake is the MessagingApi port over the shared model: these tests go
through the port (and the fake's inspection API), and check the signed
helper bodies with the official ``twilio`` RequestValidator as an oracle.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from urllib.parse import parse_qs

import pytest
from hypothesis import given
from twilio.request_validator import RequestValidator

from ratatosk import ConnectionSettings, ConnectorError, Message, MessageBuilder
from ratatosk.adapters.clock import ManualClock, SystemClock
from ratatosk.emulator.app import build_model
from ratatosk.emulator.model import DEFAULT_ACCOUNT_SID, TwilioModel, is_whatsapp_address
from ratatosk.ports import (
    AccountResource,
    ApiError,
    Clock,
    CreateMessageRequest,
    MessagePage,
    MessageQuery,
    MessageResource,
    MessagingApi,
    TransportError,
)
from ratatosk.testing import (
    FakeTwilio,
    fake_twilio,
    inbound_forms,
    invalid_whatsapp_numbers,
    message_texts,
    whatsapp_numbers,
)
from ratatosk.twilio import (
    RetryPolicy,
    SendPolicy,
    TwilioChannelSchemas,
    TwilioWhatsAppConnector,
    wire,
)

ACCOUNT = "AC" + "3" * 32
TOKEN = "fake-test-token-00112233445566778"
SENDER = "whatsapp:+14155238886"
RECIPIENT = "whatsapp:+15550002222"
HOOK = "https://hooks.example.com/twilio/whatsapp"

# Registered as a fixture of this module under its own name, "fake_twilio".
users_fixture = fake_twilio


@pytest.fixture
def fake() -> FakeTwilio:
    return FakeTwilio(ACCOUNT, TOKEN)


def request(**fields: object) -> CreateMessageRequest:
    values: dict[str, object] = {"to": RECIPIENT, "from_": SENDER, "body": "hi"}
    values.update(fields)
    return CreateMessageRequest(**values)  # type: ignore[arg-type]


async def created(fake: FakeTwilio, **fields: object) -> MessageResource:
    answer = await fake.create_message(request(**fields))
    assert isinstance(answer, MessageResource), answer
    return answer


class TestPort:
    def test_is_a_messaging_api(self, fake: FakeTwilio) -> None:
        """FakeTwilio satisfies the MessagingApi port (runtime and static)."""
        port: MessagingApi = fake
        assert isinstance(port, MessagingApi)

    async def test_create_and_outbox(self, fake: FakeTwilio) -> None:
        """A create returns the resource and records the exact form in the outbox."""
        sent = await created(
            fake,
            body="Look",
            media_urls=("https://e.com/a.jpg", "https://e.com/b.jpg"),
            status_callback=HOOK,
        )
        assert sent.sid.startswith("MM")
        assert (sent.status, sent.to, sent.from_, sent.num_media) == (
            "queued",
            RECIPIENT,
            SENDER,
            2,
        )
        (record,) = fake.outbox
        assert record.sid == sent.sid
        assert record.media_urls == ("https://e.com/a.jpg", "https://e.com/b.jpg")
        assert dict(record.params) == {
            "To": RECIPIENT,
            "From": SENDER,
            "Body": "Look",
            "MediaUrl": "https://e.com/a.jpg",
            "StatusCallback": HOOK,
        }
        assert [k for k, _ in record.form].count("MediaUrl") == 2

    async def test_twilio_refusal_is_a_value(self, fake: FakeTwilio) -> None:
        """Validation failures come back as ApiError with Twilio's code and docs link."""
        answer = await fake.create_message(request(to="whatsapp:+1"))
        assert isinstance(answer, ApiError)
        assert (answer.status, answer.code) == (400, 21211)
        assert answer.more_info == "https://www.twilio.com/docs/errors/21211"
        assert fake.outbox == []

    async def test_fail_next(self, fake: FakeTwilio) -> None:
        """fail_next scripts the next answer, Retry-After included; then sends work."""
        fake.fail_next(20429, status=429, retry_after=2)
        throttled = await fake.create_message(request())
        assert isinstance(throttled, ApiError)
        assert (throttled.status, throttled.code, throttled.retry_after) == (429, 20429, 2.0)
        await created(fake)
        assert len(fake.outbox) == 1

    @pytest.mark.parametrize(("after", "stored"), [(False, 0), (True, 1)])
    async def test_reset_raises_transport_error(
        self, fake: FakeTwilio, after: bool, stored: int
    ) -> None:
        """A reset fault raises TransportError(maybe_delivered=True); it may have stored."""
        fake.reset_next(after_store=after)
        with pytest.raises(TransportError) as caught:
            await fake.create_message(request())
        assert caught.value.maybe_delivered
        assert len(fake.outbox) == stored

    async def test_fetch_list_account(self, fake: FakeTwilio) -> None:
        """fetch, list (filters and date) and fetch_account decode through the wire codec."""
        first = await created(fake)
        await created(fake, to="whatsapp:+15550003333")
        fetched = await fake.fetch_message(first.sid)
        assert isinstance(fetched, MessageResource)
        assert fetched.sid == first.sid
        page = await fake.list_messages(
            MessageQuery(to=RECIPIENT, date_sent_after=fake.clock.now().date())
        )
        assert isinstance(page, MessagePage)
        assert [m.sid for m in page.messages] == [first.sid]
        assert page.next_page_uri is None
        account = await fake.fetch_account()
        assert isinstance(account, AccountResource)
        assert (account.sid, account.status) == (ACCOUNT, "active")
        missing = await fake.fetch_message("SM" + "0" * 32)
        assert isinstance(missing, ApiError)
        assert missing.code == 20404

    async def test_wrong_credentials(self) -> None:
        """A fake whose token does not match the shared model's account answers 401."""
        model = TwilioModel(ACCOUNT, TOKEN)
        impostor = FakeTwilio(ACCOUNT, "not-the-token", model=model)
        answer = await impostor.fetch_account()
        assert isinstance(answer, ApiError)
        assert (answer.status, answer.code) == (401, 20003)

    async def test_closed(self, fake: FakeTwilio) -> None:
        """Using a closed fake is a programming error."""
        await fake.close()
        with pytest.raises(RuntimeError, match="closed"):
            await fake.fetch_account()

    def test_repr_hides_token(self, fake: FakeTwilio) -> None:
        assert TOKEN not in repr(fake)


class TestSids:
    async def test_two_fakes_never_share_a_sid(self) -> None:
        """Fresh fakes draw their SIDs independently, so their first messages differ."""
        first, second = FakeTwilio(ACCOUNT, TOKEN), FakeTwilio(ACCOUNT, TOKEN)
        assert (await created(first)).sid != (await created(second)).sid

    async def test_a_seed_repeats_the_sids(self) -> None:
        """The same seed gives the same SIDs, in order; another seed gives others."""

        async def sids(seed: int) -> list[str]:
            fake = FakeTwilio(ACCOUNT, TOKEN, seed=seed)
            return [(await created(fake)).sid for _ in range(3)]

        assert await sids(1) == await sids(1)
        assert (await sids(1))[0] != (await sids(2))[0]

    def test_emulator_models_never_share_a_sid(self) -> None:
        """Two emulators built without a seed (as ``ratatosk emulator`` is) differ too."""
        form = [("To", RECIPIENT), ("From", SENDER), ("Body", "hi")]
        first = [build_model().create_message(DEFAULT_ACCOUNT_SID, form) for _ in range(2)]
        assert all(reply.status == 201 for reply in first)
        bodies = [reply.body or {} for reply in first]
        assert bodies[0]["sid"] != bodies[1]["sid"]


class TestScriptedFailuresMeetRetries:
    """A connector retries 429 / 20429: how fail_next and fail_all meet that."""

    @staticmethod
    def connector(fake: FakeTwilio) -> TwilioWhatsAppConnector:
        settings = (
            ConnectionSettings()
            .set_parameter("AccountSid", ACCOUNT)
            .set_parameter("AuthToken", TOKEN)
            .set_parameter("FromNumber", SENDER)
        )
        policy = SendPolicy(retry=RetryPolicy(max_attempts=3, base_delay=0.001))
        return TwilioWhatsAppConnector(
            TwilioChannelSchemas.TWILIO_WHATSAPP, settings, transport=fake, send_policy=policy
        )

    @staticmethod
    def message() -> Message:
        return MessageBuilder().to_phone(RECIPIENT).with_text("hi").build()

    async def test_one_scripted_throttle_is_absorbed_by_a_retry(self, fake: FakeTwilio) -> None:
        """fail_next(20429, 429) fails the first attempt only; the retry sends the message."""
        fake.fail_next(20429, 429, retry_after=0)
        async with self.connector(fake) as connector:
            sent = await connector.send_message(self.message())
        assert sent.successful
        assert [a.status for a in fake.model.attempts] == [429, 201]

    async def test_fail_all_fails_the_send_retries_included(self, fake: FakeTwilio) -> None:
        """Inside fail_all every attempt fails; after the block sends go through again."""
        async with self.connector(fake) as connector:
            with fake.fail_all(20429, 429, retry_after=0):
                limited = await connector.send_message(self.message())
            sent = await connector.send_message(self.message())
        assert limited.error is not None
        assert (limited.error.code, limited.error.provider_code) == ("RATE_LIMITED", 20429)
        assert [a.status for a in fake.model.attempts] == [429, 429, 429, 201]
        assert sent.successful
        assert len(fake.outbox) == 1

    async def test_fail_next_times_covers_every_attempt(self, fake: FakeTwilio) -> None:
        """fail_next(times=n) with n >= the policy's attempts fails one send, not the next."""
        fake.fail_next(20429, 429, retry_after=0, times=3)
        async with self.connector(fake) as connector:
            limited = await connector.send_message(self.message())
            sent = await connector.send_message(self.message())
        assert limited.error is not None
        assert limited.error.code == "RATE_LIMITED"
        assert sent.successful

    async def test_clear_failures_forgets_queued_ones(self, fake: FakeTwilio) -> None:
        """clear_failures drops queued fail_next errors as well as fail_all."""
        fake.fail_all(21610)
        fake.fail_next(21211, times=2)
        fake.clear_failures()
        assert isinstance(await fake.create_message(request()), MessageResource)


class TestTime:
    async def test_advance_moves_statuses(self, fake: FakeTwilio) -> None:
        """advance() moves the manual clock and returns the callbacks now due."""
        sent = await created(fake, status_callback=HOOK)
        assert fake.advance(0.5) == []
        callbacks = fake.advance(10)
        assert [c.status for c in callbacks] == ["sending", "sent", "delivered", "read"]
        fetched = await fake.fetch_message(sent.sid)
        assert isinstance(fetched, MessageResource)
        assert fetched.status == "read"

    async def test_set_status(self, fake: FakeTwilio) -> None:
        """set_status is visible through fetch with its error code."""
        sent = await created(fake)
        fake.set_status(sent.sid, "undelivered", error_code=63016)
        fetched = await fake.fetch_message(sent.sid)
        assert isinstance(fetched, MessageResource)
        assert (fetched.status, fetched.error_code) == ("undelivered", 63016)

    async def test_model_options(self) -> None:
        """Model options pass through, e.g. the 24-hour window."""
        fake = FakeTwilio(ACCOUNT, TOKEN, enforce_window=True)
        sent = await created(fake)
        fake.advance(60)
        fetched = await fake.fetch_message(sent.sid)
        assert isinstance(fetched, MessageResource)
        assert fetched.error_code == 63016

    def test_manual_clock(self) -> None:
        """ManualClock stands still, moves forward only, and satisfies the Clock port."""
        clock = ManualClock(dt.datetime(2030, 5, 1, tzinfo=dt.UTC))
        port: Clock = clock
        assert isinstance(port, Clock)
        assert clock.now() == clock() == dt.datetime(2030, 5, 1, tzinfo=dt.UTC)
        assert clock.advance(90, minutes=1) == dt.datetime(2030, 5, 1, 0, 2, 30, tzinfo=dt.UTC)
        with pytest.raises(ValueError, match="backwards"):
            clock.advance(-1)
        with pytest.raises(ValueError, match="backwards"):
            clock.set(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
        with pytest.raises(ValueError, match="aware"):
            ManualClock(dt.datetime(2030, 1, 1))

    def test_system_clock(self) -> None:
        assert SystemClock().now().tzinfo is dt.UTC


class TestSignedBodies:
    def test_inbound_body(self, fake: FakeTwilio) -> None:
        """inbound_message_body is signed for the URL and decodes to the inbound message."""
        body, signature = fake.inbound_message_body(
            HOOK, RECIPIENT, SENDER, "Hola", profile_name="Zoë", media=["https://e.com/a.jpg"]
        )
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        assert RequestValidator(TOKEN).validate(HOOK, form, signature)
        message = wire.decode_inbound(wire.parse_form(body))
        assert not isinstance(message, ConnectorError)
        assert message.id.startswith("MM")
        assert message.properties["ProfileName"] == "Zoë"

    async def test_status_callback_body(self, fake: FakeTwilio) -> None:
        """status_callback_body is signed and decodes to the status update."""
        sent = await created(fake)
        body, signature = fake.status_callback_body(HOOK, sent.sid, "failed", error_code=63016)
        form = {k: v[0] for k, v in parse_qs(body).items()}
        assert RequestValidator(TOKEN).validate(HOOK, form, signature)
        update = wire.decode_status_callback(wire.parse_form(body), fake.clock.now())
        assert not isinstance(update, ConnectorError)
        assert (update.message_id, update.error_code) == (sent.sid, 63016)

    def test_unknown_sid_still_builds(self, fake: FakeTwilio) -> None:
        """A callback body for a SID the fake never sent uses placeholder addresses."""
        body, _ = fake.status_callback_body(HOOK, "SM" + "e" * 32, "read")
        assert "MessageStatus=read" in body


class TestFixtureAndStrategies:
    def test_fixture(self, fake_twilio: FakeTwilio) -> None:
        """The shipped fixture gives a working FakeTwilio with the default account."""
        assert isinstance(fake_twilio, FakeTwilio)
        assert fake_twilio.outbox == []

    def test_import_needs_no_hypothesis(self) -> None:
        """Importing ratatosk.testing (and building a fake) works without hypothesis."""
        code = (
            "import sys; sys.modules['hypothesis'] = None\n"
            "from ratatosk.testing import FakeTwilio; FakeTwilio()\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr

    @given(number=whatsapp_numbers())
    def test_numbers_are_accepted(self, number: str) -> None:
        assert is_whatsapp_address(number)

    @given(number=invalid_whatsapp_numbers())
    def test_near_misses_are_refused(self, number: str) -> None:
        assert not is_whatsapp_address(number)

    @given(text=message_texts())
    def test_texts_fit(self, text: str) -> None:
        assert 1 <= len(text) <= 1600
        assert text.strip()

    @given(form=inbound_forms())
    def test_inbound_forms_decode(self, form: dict[str, str]) -> None:
        """Generated inbound forms decode, with SM/MM matching the media count."""
        message = wire.decode_inbound({k: [v] for k, v in form.items()})
        assert not isinstance(message, ConnectorError)
        assert message.id[:2] == ("MM" if form["NumMedia"] != "0" else "SM")
