"""An unknown outcome looked at again, and a send whose process died finished by another.

Run on the fake and over HTTP to the emulator. A lost answer is the model's
dropped connection (``reset_next``, before or after Twilio stored the
message); Twilio's message list catching up late is :class:`Lagging`, a
``MessagingApi`` wrapper that hides messages younger than ``lag`` seconds on
the backend's clock. A dead holder is a ``begin`` through the shared ledger
that nobody finishes, whose lease then passes on the clock.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ratatosk import ConnectionSettings, Message, MessageBuilder
from ratatosk.adapters.clock import ManualClock
from ratatosk.adapters.memory import InMemorySendLedger
from ratatosk.adapters.redis import RedisSendLedger
from ratatosk.ports import (
    AccountResource,
    ApiError,
    CreateMessageRequest,
    MessagePage,
    MessageQuery,
    MessageResource,
    MessagingApi,
    SendLedger,
)
from ratatosk.twilio import (
    Delivery,
    TwilioChannelSchemas,
    TwilioErrorCodes,
    TwilioWhatsAppConnector,
)
from ratatosk.twilio.outbound import SendConfig, SendPlan, plan_send
from ratatosk.twilio.send.records import fingerprint
from redis_support import RedisTimeMachine

from .conftest import ACCOUNT, RECIPIENT, SENDER, TOKEN, Backend

#: Seconds Twilio's list takes to show a new message, in these tests.
LAG = 60.0
LEASE = 30.0


class Lagging:
    """The backend's API, whose message list shows a message only ``lag`` seconds after it."""

    def __init__(self, inner: MessagingApi, clock: ManualClock, lag: float = LAG) -> None:
        self.inner = inner
        self.clock = clock
        self.lag = lag

    async def create_message(self, request: CreateMessageRequest) -> MessageResource | ApiError:
        return await self.inner.create_message(request)

    async def fetch_message(self, sid: str) -> MessageResource | ApiError:
        return await self.inner.fetch_message(sid)

    async def list_messages(self, query: MessageQuery) -> MessagePage | ApiError:
        await asyncio.sleep(0)  # an answer takes a turn of the loop, as over a socket
        page = await self.inner.list_messages(query)
        if isinstance(page, ApiError):
            return page
        horizon = self.clock.now().timestamp() - self.lag
        listed = tuple(
            m
            for m in page.messages
            if m.date_created is None or m.date_created.timestamp() <= horizon
        )
        return MessagePage(messages=listed, next_page_uri=page.next_page_uri)

    async def fetch_account(self) -> AccountResource | ApiError:
        return await self.inner.fetch_account()

    async def close(self) -> None:
        return None


def _settings() -> ConnectionSettings:
    return (
        ConnectionSettings()
        .set_parameter("AccountSid", ACCOUNT)
        .set_parameter("AuthToken", TOKEN)
        .set_parameter("FromNumber", SENDER)
    )


def _connector(
    backend: Backend, ledger: SendLedger | None = None, api: MessagingApi | None = None
) -> TwilioWhatsAppConnector:
    return TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP,
        _settings(),
        transport=api or Lagging(backend.api, backend.clock),
        clock=backend.clock,
        send_ledger=ledger,
    )


def _text(body: str) -> Message:
    return MessageBuilder().to_phone(RECIPIENT).with_text(body).build()


def _plan(message: Message) -> SendPlan:
    plan = plan_send(
        TwilioChannelSchemas.TWILIO_WHATSAPP, SendConfig.from_settings(_settings()), message
    )
    assert isinstance(plan, SendPlan)
    return plan


def _lose_after_store(backend: Backend, how: str) -> None:
    """The next create stores the message, then loses its answer (a dropped connection, a 500)."""
    if how == "reset":
        backend.model.reset_next(after_store=True)
    else:
        backend.model.fail_next(20500, status=500, after_store=True)


@pytest.mark.parametrize("how", ["reset", "500"])
@pytest.mark.parametrize("delivery", list(Delivery))
async def test_a_lost_answer_whose_message_twilio_stored_is_found_and_adopted(
    backend: Backend, delivery: Delivery, how: str
) -> None:
    message = _text("stored, answer lost")
    _lose_after_store(backend, how)
    async with _connector(backend) as connector:
        lost = await connector.send_message(message)
        assert lost.error is not None
        assert lost.error.code == TwilioErrorCodes.SEND_OUTCOME_UNKNOWN  # the list lagged
        backend.clock.advance(LAG + 1)
        found = (await connector.recheck_message(message, delivery=delivery)).unwrap()
        again = (await connector.send_message(message)).unwrap()
    stored = [m.sid for m in backend.model.outbound]
    assert stored == [found.provider_message_id]
    assert (found.data["rechecked"], found.data["reconciled"]) == (True, True)
    assert "resent" not in found.data
    assert again.provider_message_id == found.provider_message_id
    assert again.data["replayed"] is True


async def test_at_most_once_reports_a_message_twilio_never_stored_as_not_sent(
    backend: Backend,
) -> None:
    message = _text("never stored, at most once")
    backend.model.reset_next()  # dropped before Twilio stored it
    async with _connector(backend) as connector:
        lost = await connector.send_message(message)
        assert lost.error is not None
        assert lost.error.code == TwilioErrorCodes.SEND_OUTCOME_UNKNOWN
        backend.clock.advance(LAG + 1)
        rechecked = await connector.recheck_message(message, delivery=Delivery.AT_MOST_ONCE)
        later = await connector.send_message(message)
        twice = await connector.recheck_message(message, delivery=Delivery.AT_LEAST_ONCE)
    assert rechecked.error is not None
    assert rechecked.error.code == TwilioErrorCodes.MESSAGE_NOT_SENT
    assert rechecked.error.details["first_attempt"] == lost.error.details["attempted_at"]
    for replayed in (later, twice):  # recorded for good: never sent under this id
        assert replayed.error is not None
        assert replayed.error.code == TwilioErrorCodes.MESSAGE_NOT_SENT
        assert replayed.error.details["replayed"] is True
    assert backend.model.outbound == []


async def test_at_least_once_sends_a_message_twilio_never_stored_exactly_once_more(
    backend: Backend,
) -> None:
    message = _text("never stored, at least once")
    backend.model.reset_next()
    async with _connector(backend) as connector:
        lost = await connector.send_message(message)
        assert lost.error is not None
        backend.clock.advance(LAG + 1)
        resent = (
            await connector.recheck_message(message, delivery=Delivery.AT_LEAST_ONCE)
        ).unwrap()
        again = (await connector.recheck_message(message, delivery=Delivery.AT_LEAST_ONCE)).unwrap()
    assert [m.sid for m in backend.model.outbound] == [resent.provider_message_id]
    assert (resent.data["rechecked"], resent.data["resent"]) == (True, True)
    assert again.provider_message_id == resent.provider_message_id
    assert again.data["replayed"] is True


async def test_a_recheck_of_a_message_never_sent_is_an_ordinary_send(backend: Backend) -> None:
    message = _text("first time")
    async with _connector(backend) as connector:
        sent = (await connector.recheck_message(message, delivery=Delivery.AT_MOST_ONCE)).unwrap()
    assert [m.sid for m in backend.model.outbound] == [sent.provider_message_id]
    assert "rechecked" not in sent.data


async def test_a_recheck_while_the_first_send_is_alive_is_in_progress(backend: Backend) -> None:
    message = _text("still being sent")
    ledger = InMemorySendLedger(backend.clock.monotonic, lease=LEASE)
    await ledger.begin(message.id, fingerprint(_plan(message)), at=backend.clock.now())
    backend.clock.advance(LEASE - 1)  # the holder's lease still runs
    async with _connector(backend, ledger) as connector:
        busy = await connector.recheck_message(message, delivery=Delivery.AT_LEAST_ONCE)
    assert busy.error is not None
    assert busy.error.code == TwilioErrorCodes.SEND_IN_PROGRESS
    assert backend.model.outbound == []


# --- a dead holder, two racing successors ---------------------------------------------------


@pytest.fixture(params=["in-memory", "redis"])
async def shared_ledger(request: pytest.FixtureRequest, backend: Backend) -> Any:
    """One ledger two connectors share, and a way to let time pass on it and on Twilio."""
    machine: RedisTimeMachine | None = None
    if request.param == "redis":
        machine = RedisTimeMachine(request.getfixturevalue("redis_server"))
        ledger: SendLedger = RedisSendLedger(
            machine.client, prefix=machine.prefix, lease=LEASE, now=machine
        )
    else:
        ledger = InMemorySendLedger(backend.clock.monotonic, lease=LEASE)

    async def advance(seconds: float) -> None:
        backend.clock.advance(seconds)
        if machine is not None:
            await machine.advance(seconds)

    try:
        yield ledger, advance
    finally:
        if machine is not None:
            await machine.close()


@pytest.mark.parametrize("stored", [True, False], ids=["twilio-stored-it", "never-stored"])
async def test_an_abandoned_id_is_taken_over_by_one_of_two_racing_connectors(
    backend: Backend, shared_ledger: Any, stored: bool
) -> None:
    ledger, advance = shared_ledger
    message = _text("the holder died")
    await ledger.begin(message.id, fingerprint(_plan(message)), at=backend.clock.now())
    if stored:  # the dead holder's create reached Twilio; its answer died with it
        request = CreateMessageRequest(to=RECIPIENT, from_=SENDER, body="the holder died")
        assert isinstance(await backend.api.create_message(request), MessageResource)
    await advance(LAG + LEASE)  # the lease ran out; Twilio's list caught up
    async with _connector(backend, ledger) as one, _connector(backend, ledger) as other:
        results = await asyncio.gather(
            one.recheck_message(message, delivery=Delivery.AT_LEAST_ONCE),
            other.recheck_message(message, delivery=Delivery.AT_LEAST_ONCE),
        )
        after = await one.send_message(message)
    codes = sorted(r.error.code if r.error else "sent" for r in results)
    assert codes == [TwilioErrorCodes.SEND_IN_PROGRESS, "sent"]
    sent = next(r.value for r in results if r.value is not None)
    assert [m.sid for m in backend.model.outbound] == [sent.provider_message_id]
    assert sent.data.get("resent", False) is not stored
    assert after.unwrap().provider_message_id == sent.provider_message_id


async def test_send_message_on_an_abandoned_id_adopts_what_twilio_has_and_never_resends(
    backend: Backend,
) -> None:
    ledger = InMemorySendLedger(backend.clock.monotonic, lease=LEASE)
    found_message, missing_message = _text("died after the create"), _text("died before it")
    for message in (found_message, missing_message):
        await ledger.begin(message.id, fingerprint(_plan(message)), at=backend.clock.now())
    request = CreateMessageRequest(to=RECIPIENT, from_=SENDER, body="died after the create")
    assert isinstance(await backend.api.create_message(request), MessageResource)
    backend.clock.advance(LAG + LEASE)
    async with _connector(backend, ledger) as connector:
        found = (await connector.send_message(found_message)).unwrap()
        missing = await connector.send_message(missing_message)
    assert [m.sid for m in backend.model.outbound] == [found.provider_message_id]
    assert found.data["rechecked"] is True
    assert missing.error is not None
    assert missing.error.code == TwilioErrorCodes.SEND_OUTCOME_UNKNOWN
