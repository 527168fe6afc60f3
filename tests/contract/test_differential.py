"""Differential: one generated sequence of port calls, played on the fake and over HTTP.

Both backends get a model seeded the same way on the same manual clock, so
every answer (SIDs, statuses, dates, Twilio's error codes and messages,
dropped connections) must be identical. Whatever the HTTP adapter, the
emulator's HTTP face or the fake add or lose shows up as a difference.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from ratatosk.adapters.clock import ManualClock
from ratatosk.adapters.twilio_http import AiohttpMessagingApi
from ratatosk.emulator.app import start_emulator
from ratatosk.emulator.model import TwilioModel
from ratatosk.ports import (
    ApiError,
    CreateMessageRequest,
    MessageQuery,
    MessagingApi,
    TransportError,
)
from ratatosk.testing import FakeTwilio

from .conftest import ACCOUNT, OTHER_SENDER, RECIPIENT, SENDER, TOKEN

Op = tuple[Any, ...]

recipients = st.sampled_from([RECIPIENT, "whatsapp:+15550003333", "+15550002222", "whatsapp:12"])
senders = st.sampled_from([SENDER, OTHER_SENDER, "whatsapp:+15559990000", None])
bodies = st.one_of(
    st.none(), st.text(max_size=30), st.just("x" * 1601), st.just("emoji 👋 and ünïcode")
)
creates = st.tuples(
    st.just("create"),
    recipients,
    senders,
    bodies,
    st.integers(0, 11),
    st.sampled_from([None, "HX" + "ab" * 16, "HXnope"]),
    st.sampled_from([None, 0, 60, 36001]),
    st.sampled_from([None, "https://hooks.example.com/s", "not a url"]),
)
operations = st.lists(
    st.one_of(
        creates,
        st.tuples(st.just("fetch"), st.integers(0, 5)),
        st.tuples(
            st.just("status"),
            st.integers(0, 5),
            st.sampled_from(["sent", "delivered", "read", "failed", "undelivered"]),
        ),
        st.tuples(st.just("list"), st.sampled_from([None, RECIPIENT]), st.integers(1, 3)),
        st.tuples(
            st.just("fail"),
            st.sampled_from([20429, 21610, 30008]),
            st.sampled_from([400, 429, 503]),
        ),
        st.tuples(st.just("reset"), st.booleans()),
        st.tuples(st.just("tick"), st.integers(0, 5)),
        st.tuples(st.just("account")),
    ),
    max_size=12,
)


def _request(op: Op) -> CreateMessageRequest:
    _, to, from_, body, media, content_sid, validity, callback = op
    return CreateMessageRequest(
        to=to,
        from_=from_,
        messaging_service_sid=None if from_ else "MG" + "0" * 32,
        body=body,
        media_urls=tuple(f"https://example.com/{i}.jpg" for i in range(media)),
        content_sid=content_sid,
        content_variables=json.dumps({"1": "x"}) if content_sid else None,
        status_callback=callback,
        validity_period=validity,
    )


def _shape(answer: object) -> object:
    if isinstance(answer, TransportError):
        return ("transport", answer.maybe_delivered)
    return attrs.asdict(answer) if attrs.has(type(answer)) else answer  # type: ignore[arg-type]


async def _play(
    api: MessagingApi, model: TwilioModel, clock: ManualClock, ops: list[Op]
) -> list[object]:
    outcomes: list[object] = []
    sids: list[str] = []
    for op in ops:
        kind = op[0]
        try:
            if kind == "create":
                answer: object = await api.create_message(_request(op))
                if not isinstance(answer, ApiError):
                    sids.append(answer.sid)  # type: ignore[attr-defined]
            elif kind == "fetch":
                sid = sids[op[1] % len(sids)] if sids else "SM" + "0" * 32
                answer = await api.fetch_message(sid)
            elif kind == "status":
                if not sids:
                    continue
                model.set_status(
                    sids[op[1] % len(sids)], op[2], 30008 if op[2] == "failed" else None
                )
                answer = None
            elif kind == "list":
                answer = await api.list_messages(MessageQuery(to=op[1], page_size=op[2]))
            elif kind == "fail":
                model.fail_next(op[1], status=op[2], retry_after=1 if op[2] == 429 else None)
                answer = None
            elif kind == "reset":
                model.reset_next(after_store=op[1])
                answer = None
            elif kind == "tick":
                clock.advance(op[1])
                model.advance(clock.now())
                answer = None
            else:
                answer = await api.fetch_account()
        except TransportError as exc:
            answer = exc
        outcomes.append((kind, _shape(answer)))
    return outcomes


def _model(clock: ManualClock) -> TwilioModel:
    return TwilioModel(
        ACCOUNT, TOKEN, clock=clock.now, rng=random.Random(7), senders={SENDER, OTHER_SENDER}
    )


async def _both(ops: list[Op]) -> tuple[list[object], list[object]]:
    fake_clock, http_clock = ManualClock(), ManualClock()
    fake_model, http_model = _model(fake_clock), _model(http_clock)
    fake = FakeTwilio(ACCOUNT, TOKEN, clock=fake_clock, model=fake_model)
    in_memory = await _play(fake, fake_model, fake_clock, ops)
    emulator = await start_emulator(model=http_model)
    api = AiohttpMessagingApi(ACCOUNT, TOKEN, base_url=emulator.url)
    try:
        over_http = await _play(api, http_model, http_clock, ops)
    finally:
        await api.close()
        await emulator.close()
    return in_memory, over_http


@settings(max_examples=100)
@given(operations)
def test_fake_and_http_answer_every_sequence_identically(ops: list[Op]) -> None:
    in_memory, over_http = asyncio.run(_both(ops))
    assert over_http == in_memory
