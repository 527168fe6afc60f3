"""A reconcile never adopts another send's message, and one message id is sent once.

Two sends to one recipient: the first loses its connection before Twilio
stores it, the second is stored and its answer is still on the way when the
first one looks for its message. Before the send ledger, the first adopted
the second's message: two successes with one SID, and a message never sent
reported as sent. Run on the fake and over HTTP to the emulator (a real
dropped connection), with a ``MessagingApi`` wrapper that only delays answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratatosk import ConnectionSettings, Message, MessageBuilder, TemplateContent
from ratatosk.adapters.clock import ManualClock
from ratatosk.domain.result import ConnectorResult, SendResult
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
from ratatosk.testing import FakeTwilio
from ratatosk.twilio import TwilioChannelSchemas, TwilioErrorCodes, TwilioWhatsAppConnector
from ratatosk.twilio.resilience import SendPolicy

from .conftest import ACCOUNT, RECIPIENT, SENDER, TOKEN, Backend


class Delayed:
    """The backend's API with slow news: a lost connection noticed late, an answer late."""

    def __init__(self, inner: MessagingApi, *, lost_after: float, answer_after: float) -> None:
        self.inner = inner
        self.lost_after = lost_after
        self.answer_after = answer_after

    async def create_message(self, request: CreateMessageRequest) -> MessageResource | ApiError:
        try:
            answer = await self.inner.create_message(request)
        except TransportError:
            await asyncio.sleep(self.lost_after)
            raise
        await asyncio.sleep(self.answer_after)
        return answer

    async def fetch_message(self, sid: str) -> MessageResource | ApiError:
        return await self.inner.fetch_message(sid)

    async def list_messages(self, query: MessageQuery) -> MessagePage | ApiError:
        return await self.inner.list_messages(query)

    async def fetch_account(self) -> AccountResource | ApiError:
        return await self.inner.fetch_account()

    async def close(self) -> None:
        return None


class RealWaits:
    """The backend's time of day (message dates), with real waiting (answers in transit)."""

    def __init__(self, backend: Backend) -> None:
        self.now = backend.clock.now
        self.monotonic = time.monotonic
        self.sleep = asyncio.sleep


def _connector(backend: Backend, api: MessagingApi, clock: Clock) -> TwilioWhatsAppConnector:
    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", ACCOUNT)
        .set_parameter("AuthToken", TOKEN)
        .set_parameter("FromNumber", SENDER)
    )
    return TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP,
        settings,
        transport=api,
        clock=clock,
        template_catalog=backend.template_catalog(),
    )


def _text(body: str) -> Message:
    return MessageBuilder().to_phone(RECIPIENT).with_text(body).build()


def _order(order_id: str) -> Message:
    content = TemplateContent("order_confirmed", {"order_id": order_id, "delivery_date": "soon"})
    return MessageBuilder().to_phone(RECIPIENT).with_content(content).build()


@pytest.mark.parametrize(
    "messages",
    [
        pytest.param(lambda: [_text("same words"), _text("same words")], id="identical-texts"),
        pytest.param(lambda: [_order("ORD-1"), _order("ORD-2")], id="templates"),
    ],
)
async def test_a_lost_send_never_takes_the_sid_of_a_rival_still_in_flight(
    backend: Backend, messages: object, caplog: pytest.LogCaptureFixture
) -> None:
    backend.model.reset_next()  # the first create to arrive: connection dropped, nothing stored
    api = Delayed(backend.api, lost_after=0.05, answer_after=0.3)
    first, second = messages()  # type: ignore[operator]
    with caplog.at_level(logging.ERROR, logger="ratatosk.twilio"):
        async with _connector(backend, api, RealWaits(backend)) as connector:
            results = await asyncio.gather(
                connector.send_message(first), connector.send_message(second)
            )
    stored = [m.sid for m in backend.model.outbound]
    assert len(stored) == 1
    sent = [r.value for r in results if r.value is not None]
    assert [s.provider_message_id for s in sent] == stored  # one success, with its own SID
    lost = [r.error for r in results if r.error is not None]
    assert len(lost) == 1
    assert lost[0].code == TwilioErrorCodes.SEND_OUTCOME_UNKNOWN
    assert "two results share one SID" not in caplog.text


async def test_a_message_id_sent_twice_is_sent_once(backend: Backend) -> None:
    message = _text("only once")
    async with _connector(backend, backend.api, backend.clock) as connector:
        first = (await connector.send_message(message)).unwrap()
        again = (await connector.send_message(message)).unwrap()
    assert again.provider_message_id == first.provider_message_id
    assert again.data["replayed"] is True
    assert len(backend.model.outbound) == 1


async def test_a_message_id_in_flight_or_reused_is_refused_with_a_code(backend: Backend) -> None:
    message = _text("busy")
    reused = attrs.evolve(message, content=_text("other words").content)
    slow = Delayed(backend.api, lost_after=0.0, answer_after=0.05)  # the first is in flight
    async with _connector(backend, slow, backend.clock) as connector:
        both = await asyncio.gather(
            connector.send_message(message), connector.send_message(message)
        )
        other = await connector.send_message(reused)
    codes = sorted(r.error.code if r.error else "sent" for r in both)
    assert codes == [TwilioErrorCodes.SEND_IN_PROGRESS, "sent"]
    assert other.error is not None
    assert other.error.code == TwilioErrorCodes.MESSAGE_ID_REUSED
    assert len(backend.model.outbound) == 1


async def test_a_message_id_refused_by_twilio_may_be_sent_again(backend: Backend) -> None:
    message = _text("second chance")
    backend.model.fail_next(21610)
    async with _connector(backend, backend.api, backend.clock) as connector:
        refused = await connector.send_message(message)
        retried = await connector.send_message(message)
    assert refused.error is not None
    assert retried.successful
    assert len(backend.model.outbound) == 1


# --- the property: any interleaving, any lost answer ----------------------------------------

FAULTS = ("ok", "lost-before", "lost-after", "500-after")


class Scripted:
    """FakeTwilio with a fault and a delay (in event-loop turns) for each create, in call order.

    It records which task made each stored message, so a success can be
    checked against the messages its own send created.
    """

    def __init__(self, fake: FakeTwilio, plans: Sequence[tuple[str, int]]) -> None:
        self.fake = fake
        self.plans = list(plans)
        self.created_by: dict[asyncio.Task[object] | None, set[str]] = defaultdict(set)

    async def create_message(self, request: CreateMessageRequest) -> MessageResource | ApiError:
        fault, turns = self.plans.pop(0) if self.plans else ("ok", 0)
        if fault == "lost-before":
            await _turns(turns)
            raise TransportError("reset before store", maybe_delivered=True)
        answer = await self.fake.create_message(request)
        if isinstance(answer, MessageResource):
            self.created_by[asyncio.current_task()].add(answer.sid)
        await _turns(turns)
        if fault == "lost-after":
            raise TransportError("reset after store", maybe_delivered=True)
        if fault == "500-after":
            return ApiError(status=500, code=20500, message="internal error")
        return answer

    async def fetch_message(self, sid: str) -> MessageResource | ApiError:
        return await self.fake.fetch_message(sid)

    async def list_messages(self, query: MessageQuery) -> MessagePage | ApiError:
        await _turns(1)
        return await self.fake.list_messages(query)

    async def fetch_account(self) -> AccountResource | ApiError:
        return await self.fake.fetch_account()

    async def close(self) -> None:
        return None


async def _turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sends=st.lists(
        st.tuples(
            st.sampled_from(["hello", "hello", "bye", "template"]),
            st.sampled_from(FAULTS),
            st.integers(0, 6),
        ),
        min_size=2,
        max_size=5,
    )
)
def test_no_two_results_share_a_sid_and_no_unsent_message_is_reported_sent(
    sends: list[tuple[str, str, int]],
) -> None:
    async def run() -> None:
        clock = ManualClock()
        fake = FakeTwilio(ACCOUNT, TOKEN, clock=clock, seed=3)
        api = Scripted(fake, [(fault, turns) for _, fault, turns in sends])
        settings_ = (
            ConnectionSettings()
            .set_parameter("AccountSid", ACCOUNT)
            .set_parameter("AuthToken", TOKEN)
            .set_parameter("FromNumber", SENDER)
        )
        connector = TwilioWhatsAppConnector(
            TwilioChannelSchemas.TWILIO_WHATSAPP,
            settings_,
            transport=api,
            clock=clock,
            template_catalog=fake.template_catalog(),
            send_policy=SendPolicy(rate_per_sender=None),
        )
        messages = [
            _order(f"ORD-{i}") if kind == "template" else _text(kind)
            for i, (kind, _, _) in enumerate(sends)
        ]
        async with connector:
            tasks = [asyncio.create_task(connector.send_message(m)) for m in messages]
            results: list[ConnectorResult[SendResult]] = await asyncio.gather(*tasks)
        sids = [r.value.provider_message_id for r in results if r.value is not None]
        assert len(sids) == len(set(sids)), "two results share a SID"
        for task, result in zip(tasks, results, strict=True):
            if result.value is not None:
                assert result.value.provider_message_id in api.created_by[task], (
                    "a send reported another send's message as its own"
                )
            else:
                assert result.error is not None
                assert result.error.code == TwilioErrorCodes.SEND_OUTCOME_UNKNOWN

    asyncio.run(run())
