"""Sending under injected faults: no lost result, no duplicate, Retry-After honoured.

The connector is built the way users build it (``bootstrap.build_connector``)
and talks through the real aiohttp transport to the emulator on loopback,
which injects 429 and 503 (with ``Retry-After``), 500 after storing,
connection resets before and after storing, and answers slower than the read
timeout. The emulator records every create call, so duplicates and the gaps
between attempts are measured where Twilio would see them.

The unit-level cases below pin each rule on its own, and a counting test
double of the ``MessagingApi`` port checks the rate limit and the in-flight
cap under concurrent ``send_message`` and ``send_batch``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
from resilience_support import ALL_CODES, record_figures

from ratatosk import ConnectionSettings, MessageBuilder, MessagingErrorCodes
from ratatosk.adapters.twilio_http import AiohttpMessagingApi
from ratatosk.bootstrap import build_connector
from ratatosk.domain.message import Message
from ratatosk.domain.result import ConnectorResult, SendResult
from ratatosk.emulator.app import RunningEmulator, start_emulator
from ratatosk.emulator.model import CreateAttempt, FaultKind, FaultPlan
from ratatosk.ports import (
    AccountResource,
    ApiError,
    CreateMessageRequest,
    MessagePage,
    MessageQuery,
    MessageResource,
)
from ratatosk.twilio import TwilioChannelSchemas, TwilioErrorCodes, TwilioWhatsAppConnector
from ratatosk.twilio.resilience import RetryPolicy, SendPolicy

SENDER = "whatsapp:+14155238886"
OTHER_SENDER = "whatsapp:+14155550100"
#: About 20% of create calls fail one way or another.
FAULTS: dict[str, float] = {
    "rate_429": 0.05,
    "rate_503": 0.03,
    "rate_500": 0.03,
    "rate_reset_before": 0.03,
    "rate_reset_after": 0.03,
    "rate_slow": 0.03,
}
RETRY_AFTER = 1.0
READ_TIMEOUT = 0.5
TOTAL_TIMEOUT = 5.0
#: Faults after which Twilio may have created the message: never resent.
AMBIGUOUS = {
    FaultKind.SERVER_ERROR.value,
    FaultKind.RESET_BEFORE_STORE.value,
    FaultKind.RESET_AFTER_STORE.value,
    FaultKind.SLOW.value,
}


def emulator_settings(emulator: RunningEmulator, **extra: str) -> ConnectionSettings:
    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", emulator.account_sid)
        .set_parameter("AuthToken", emulator.auth_token)
        .set_parameter("FromNumber", SENDER)
        .set_parameter("ApiBaseUrl", emulator.url)
        .set_parameter("HttpReadTimeout", str(READ_TIMEOUT))
        .set_parameter("HttpTotalTimeout", str(TOTAL_TIMEOUT))
    )
    for name, value in extra.items():
        settings = settings.set_parameter(name, value)
    return settings


def text_message(to: str, body: str, sender: str | None = None) -> Message:
    builder = MessageBuilder().to_phone(to).with_text(body)
    if sender is not None:
        builder.from_phone(sender)
    return builder.build()


def attempts_by_body(attempts: list[CreateAttempt]) -> dict[str, list[CreateAttempt]]:
    grouped: dict[str, list[CreateAttempt]] = defaultdict(list)
    for attempt in attempts:
        grouped[attempt.body or ""].append(attempt)
    for group in grouped.values():
        group.sort(key=lambda a: a.at)
    return grouped


async def send_under_faults(count: int, seed: int) -> dict[str, Any]:
    """``count`` sends (half concurrent send_message, half one send_batch); every check."""
    emulator = await start_emulator(
        seed=seed,
        step_delay=0.05,
        retry_after=RETRY_AFTER,
        slow_seconds=READ_TIMEOUT * 3,
        **FAULTS,
    )
    connector = build_connector(emulator_settings(emulator), environ={})
    run = uuid.uuid4().hex[:8]
    recipients = [f"whatsapp:+1555{n:07d}" for n in range(max(count // 4, 1))]
    messages = [
        text_message(
            recipients[i % len(recipients)],
            f"soak {run} #{i}",
            OTHER_SENDER if i % 2 else None,
        )
        for i in range(count)
    ]
    durations: list[float] = []

    async def timed(message: Message) -> ConnectorResult[SendResult]:
        began = time.monotonic()
        try:
            return await connector.send_message(message)
        finally:
            durations.append(time.monotonic() - began)

    try:
        (await connector.initialize()).unwrap()
        began = time.monotonic()
        half = count // 2
        singles, batch = await asyncio.gather(
            asyncio.gather(*(timed(m) for m in messages[:half])),
            connector.send_batch(messages[half:]),
        )
        elapsed = time.monotonic() - began
    finally:
        await connector.shutdown()
        await emulator.close()
    results = [*singles, *batch]
    model = emulator.model

    # Exactly one result per send, each a success or a coded failure.
    assert len(results) == count
    outcomes: Counter[str] = Counter()
    for result in results:
        assert (result.value is None) != (result.error is None)
        if result.error is not None:
            assert result.error.code in ALL_CODES, result.error
            outcomes[result.error.code] += 1
        else:
            outcomes["success"] += 1

    # Zero duplicates at the emulator; a success's SID is what Twilio stored; a failure
    # stored nothing (else the caller, told it failed, would resend a delivered message).
    stored_by_body: dict[str, list[str]] = defaultdict(list)
    for stored in model.outbound:
        stored_by_body[stored.body].append(stored.sid)
    duplicates = sum(len(sids) - 1 for sids in stored_by_body.values())
    assert duplicates == 0
    assert model.duplicate_count() == 0
    tried = attempts_by_body(model.attempts)
    for message, result in zip(messages, results, strict=True):
        body = message.content.text  # type: ignore[union-attr]
        if result.value is not None:
            assert stored_by_body[body] == [result.value.provider_message_id]
            assert model.message(result.value.provider_message_id) is not None
        else:
            assert stored_by_body.get(body, []) == [], result.error
        attempts = tried[body]
        assert 1 <= len(attempts) <= RetryPolicy().max_attempts
        # Never resent after Twilio may have created it.
        for attempt in attempts[:-1]:
            assert attempt.fault not in AMBIGUOUS, attempts
        if result.error is not None and result.error.code == TwilioErrorCodes.SEND_OUTCOME_UNKNOWN:
            # Truly ambiguous: the connection dropped after the request went out.
            assert attempts[-1].fault == FaultKind.RESET_BEFORE_STORE.value, attempts

    # Retry-After honoured: the next attempt never came sooner than Twilio asked.
    ratios: list[float] = []
    for attempts in tried.values():
        for earlier, later in itertools.pairwise(attempts):
            if earlier.status in {429, 503}:
                assert earlier.retry_after is not None
                asked = float(earlier.retry_after)
                gap = (later.at - earlier.at).total_seconds()
                ratios.append(gap / asked)
                assert gap >= asked, (earlier, later)

    # Bounded time: every send ends within the retry deadline plus two reconcile calls.
    bound = RetryPolicy().deadline + 2 * TOTAL_TIMEOUT
    assert max(durations) < bound

    faults = Counter(a.fault or "none" for a in model.attempts)
    injected = sum(n for kind, n in faults.items() if kind != "none")
    return {
        "sends": count,
        "create_calls": len(model.attempts),
        "faults_injected": injected,
        "fault_share": round(injected / len(model.attempts), 3),
        "faults": dict(faults),
        "outcomes": dict(outcomes),
        "stored": model.stored_count,
        "duplicates": duplicates,
        "retries_after_retry_after": len(ratios),
        "min_gap_over_retry_after": round(min(ratios), 3) if ratios else None,
        "max_send_seconds": round(max(durations), 2),
        "elapsed_seconds": round(elapsed, 1),
    }


async def test_sends_under_faults_small() -> None:
    """200 sends, ~20% faults: one result each, no duplicate, Retry-After respected."""
    figures = await send_under_faults(200, seed=7)
    assert figures["faults_injected"] > 20
    assert figures["retries_after_retry_after"] > 0
    assert figures["outcomes"].get("success", 0) > 150


@pytest.mark.slow
async def test_sends_under_faults_soak() -> None:
    """The full figure: 2,000 sends with ~20% injected faults."""
    figures = await send_under_faults(2000, seed=2024)
    record_figures("sends_under_faults", **figures)


# --- each rule on its own, through the real transport -------------------------------------


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    running = await start_emulator(step_delay=0.05)
    yield running
    await running.close()


def direct_connector(
    emulator: RunningEmulator, policy: SendPolicy | None = None, **extra: str
) -> TwilioWhatsAppConnector:
    settings = emulator_settings(emulator, **extra)
    return TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP,
        settings,
        transport=AiohttpMessagingApi.from_settings(settings),
        owns_transport=True,
        send_policy=policy,
    )


async def test_read_timeout_after_storing_reconciles_to_the_stored_sid() -> None:
    """Twilio stored the message but answered too late: the send succeeds with that SID."""
    running = await start_emulator(rate_slow=1.0, slow_seconds=0.6, step_delay=0.05)
    connector = build_connector(emulator_settings(running, HttpReadTimeout="0.1"), environ={})
    try:
        (await connector.initialize()).unwrap()
        result = await connector.send_message(text_message("whatsapp:+15550001111", "late"))
    finally:
        await connector.shutdown()
        await running.close()
    sent = result.unwrap()
    [stored] = running.model.outbound
    assert sent.provider_message_id == stored.sid
    assert len(running.model.attempts) == 1


async def test_no_resend_after_500_stored(emulator: RunningEmulator) -> None:
    """A 500 after storing is reconciled to the stored message, never resent."""
    emulator.model.faults = FaultPlan(server_error=1.0)
    async with build_connector(emulator_settings(emulator), environ={}) as connector:
        result = await connector.send_message(text_message("whatsapp:+15550001112", "five"))
    [stored] = emulator.model.outbound
    assert result.unwrap().provider_message_id == stored.sid
    assert [a.status for a in emulator.model.attempts] == [500]


async def test_no_resend_after_500_not_stored(emulator: RunningEmulator) -> None:
    """A 500 with nothing stored: SEND_OUTCOME_UNKNOWN with what is needed to decide."""
    emulator.model.fail_next(20500, status=500)
    async with build_connector(emulator_settings(emulator), environ={}) as connector:
        result = await connector.send_message(text_message("whatsapp:+15550001113", "gone"))
    assert result.error is not None
    assert result.error.code == TwilioErrorCodes.SEND_OUTCOME_UNKNOWN
    assert result.error.details["to"] == "whatsapp:+15550001113"
    assert result.error.details["attempts"] == 1
    assert result.error.details["message_id"]
    assert emulator.model.outbound == []
    assert len(emulator.model.attempts) == 1


@pytest.mark.parametrize("after_store", [False, True])
async def test_reset_is_reconciled_not_resent(
    emulator: RunningEmulator, *, after_store: bool
) -> None:
    """A dropped connection: found -> success with that SID; not found -> outcome unknown."""
    emulator.model.reset_next(after_store=after_store)
    async with build_connector(emulator_settings(emulator), environ={}) as connector:
        result = await connector.send_message(text_message("whatsapp:+15550001114", "reset"))
    assert len(emulator.model.attempts) == 1
    if after_store:
        assert result.unwrap().provider_message_id == emulator.model.outbound[0].sid
    else:
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.SEND_OUTCOME_UNKNOWN
        assert emulator.model.outbound == []


async def test_retry_after_is_honoured_and_capped(emulator: RunningEmulator) -> None:
    """429 then 503: the waits follow Retry-After, but never beyond the policy's cap."""
    policy = SendPolicy(retry=RetryPolicy(retry_after_cap=0.3, deadline=10.0))
    emulator.model.fail_next(20429, status=429, retry_after=0.2)
    emulator.model.fail_next(20503, status=503, retry_after=3600)
    async with direct_connector(emulator, policy) as connector:
        began = time.monotonic()
        result = await connector.send_message(text_message("whatsapp:+15550001115", "again"))
        elapsed = time.monotonic() - began
    assert result.successful
    first, second, third = emulator.model.attempts
    assert (second.at - first.at).total_seconds() >= 0.2
    assert (third.at - second.at).total_seconds() >= 0.3
    assert elapsed < 2.0  # the hour-long Retry-After was capped
    assert len(emulator.model.outbound) == 1


async def test_deadline_bounds_retries(emulator: RunningEmulator) -> None:
    """Throttled without end: the send gives up by its deadline, RATE_LIMITED, nothing stored."""
    emulator.model.faults = FaultPlan(throttle=1.0, retry_after=0.3)
    policy = SendPolicy(retry=RetryPolicy(max_attempts=10, deadline=1.0))
    async with direct_connector(emulator, policy) as connector:
        began = time.monotonic()
        result = await connector.send_message(text_message("whatsapp:+15550001116", "never"))
        elapsed = time.monotonic() - began
    assert result.error is not None
    assert result.error.code == MessagingErrorCodes.RATE_LIMITED
    assert result.error.provider_code == 20429
    assert elapsed < 1.5
    assert emulator.model.outbound == []


async def test_connect_refused_is_retried_then_reported() -> None:
    """Nothing listens: the request never left, so it is retried, then reported."""
    running = await start_emulator()
    url, account, token = running.url, running.account_sid, running.auth_token
    await running.close()
    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", account)
        .set_parameter("AuthToken", token)
        .set_parameter("FromNumber", SENDER)
        .set_parameter("ApiBaseUrl", url)
    )
    policy = SendPolicy(retry=RetryPolicy(max_attempts=3, base_delay=0.01))
    connector = TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP,
        settings,
        transport=AiohttpMessagingApi.from_settings(settings),
        owns_transport=True,
        send_policy=policy,
    )
    async with connector:
        result = await connector.send_message(text_message("whatsapp:+15550001117", "nobody"))
    assert result.error is not None
    assert result.error.code == TwilioErrorCodes.SEND_WHATSAPP_MESSAGE_FAILED
    assert result.error.details["maybe_delivered"] is False
    assert result.error.details["attempts"] == 3


# --- rate limit and in-flight cap, at a counting test double --------------------------------


class CountingApi:
    """A ``MessagingApi`` that answers after ``latency`` and counts what reaches it."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.active = 0
        self.max_active = 0
        self.starts: dict[str, list[float]] = defaultdict(list)

    async def create_message(self, request: CreateMessageRequest) -> MessageResource | ApiError:
        loop = asyncio.get_running_loop()
        self.starts[request.from_ or ""].append(loop.time())
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.active -= 1
        return MessageResource(
            sid="SM" + uuid.uuid4().hex,
            account_sid="AC" + "0" * 32,
            status="queued",
            to=request.to,
            from_=request.from_,
            body=request.body,
            date_created=dt.datetime.now(dt.UTC),
        )

    async def fetch_message(self, sid: str) -> MessageResource | ApiError:
        return ApiError(status=404, code=20404, message="not found")

    async def list_messages(self, query: MessageQuery) -> MessagePage | ApiError:
        return MessagePage(messages=())

    async def fetch_account(self) -> AccountResource | ApiError:
        return AccountResource(sid="AC" + "0" * 32)

    async def close(self) -> None:
        return None


async def test_rate_limit_and_in_flight_cap_hold_under_concurrency() -> None:
    """Concurrent send_message and send_batch share one per-sender bucket and one cap."""
    rate, burst, cap = 100.0, 5.0, 4
    api = CountingApi(latency=0.005)
    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", "AC" + "0" * 32)
        .set_parameter("AuthToken", "counting-token")
        .set_parameter("FromNumber", SENDER)
    )
    policy = SendPolicy(rate_per_sender=rate, burst=burst, max_in_flight=cap)
    connector = TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP, settings, transport=api, send_policy=policy
    )
    per_sender = 60
    singles = [
        text_message(f"whatsapp:+1555{n:07d}", f"single {n}", (SENDER, OTHER_SENDER)[n % 2])
        for n in range(per_sender)
    ]
    batch = [
        text_message(f"whatsapp:+1556{n:07d}", f"batch {n}", (SENDER, OTHER_SENDER)[n % 2])
        for n in range(per_sender)
    ]
    async with connector:
        began = asyncio.get_running_loop().time()
        results = await asyncio.gather(
            *(connector.send_message(m) for m in singles),
            connector.send_batch(batch, max_concurrency=50),
        )
    flat = [*results[:-1], *results[-1]]
    assert all(r.successful for r in flat)
    assert api.max_active <= cap
    assert api.max_active == cap  # the cap was reached, so it was what held
    for sender in (SENDER, OTHER_SENDER):
        starts = sorted(api.starts[sender])
        assert len(starts) == per_sender
        # The k-th request of a sender cannot start before its token existed.
        for k, when in enumerate(starts, start=1):
            assert when - began >= (k - burst) / rate - 0.002, (sender, k)
