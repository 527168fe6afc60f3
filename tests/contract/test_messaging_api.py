"""The MessagingApi contract: every test runs on FakeTwilio and on HTTP + emulator.

If the fake and the real adapter ever disagree, one of these fails on one
backend only, which names the liar.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from ratatosk import (
    MediaContent,
    MediaType,
    MessageBuilder,
    MessageStatus,
    MessagingErrorCodes,
    TemplateContent,
)
from ratatosk.ports import (
    AccountResource,
    ApiError,
    CreateMessageRequest,
    MessagePage,
    MessageQuery,
    MessageResource,
    TransportError,
)
from ratatosk.twilio import TwilioErrorCodes

from .conftest import ACCOUNT, RECIPIENT, SENDER, Backend

CONTENT_SID = "HX" + "ab" * 16


def _text(body: str = "Hello from WhatsApp!", **extra: object) -> CreateMessageRequest:
    return CreateMessageRequest(to=RECIPIENT, from_=SENDER, body=body, **extra)  # type: ignore[arg-type]


async def _create(backend: Backend, request: CreateMessageRequest) -> MessageResource:
    answer = await backend.api.create_message(request)
    assert isinstance(answer, MessageResource), answer
    return answer


async def _refused(backend: Backend, request: CreateMessageRequest) -> ApiError:
    answer = await backend.api.create_message(request)
    assert isinstance(answer, ApiError), answer
    return answer


# --- create ---------------------------------------------------------------------------


async def test_text_message_is_stored_as_queued_sm(backend: Backend) -> None:
    created = await _create(backend, _text())
    assert created.sid.startswith("SM")
    assert len(created.sid) == 34
    assert created.account_sid == ACCOUNT
    assert (created.to, created.from_, created.body) == (RECIPIENT, SENDER, "Hello from WhatsApp!")
    assert created.status == "queued"
    assert created.direction == "outbound-api"
    assert created.date_created is not None
    assert created.date_created.tzinfo is not None
    assert backend.model.stored_count == 1


async def test_media_message_gets_an_mm_sid_and_counts_media(backend: Backend) -> None:
    request = _text(
        "Check out our new product!",
        media_urls=("https://example.com/a.jpg", "https://example.com/b.pdf"),
    )
    created = await _create(backend, request)
    assert created.sid.startswith("MM")
    assert created.num_media == 2
    stored = backend.model.message(created.sid)
    assert stored is not None
    assert stored.media_urls == request.media_urls


async def test_template_by_content_sid_with_variables(backend: Backend) -> None:
    request = CreateMessageRequest(
        to=RECIPIENT,
        from_=SENDER,
        content_sid=CONTENT_SID,
        content_variables=json.dumps({"1": "ORD-123"}),
    )
    created = await _create(backend, request)
    stored = backend.model.message(created.sid)
    assert stored is not None
    form = dict(stored.form)
    assert form["ContentSid"] == CONTENT_SID
    assert json.loads(form["ContentVariables"]) == {"1": "ORD-123"}


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (CreateMessageRequest(to="+15550002222", from_=SENDER, body="x"), 21211),
        (CreateMessageRequest(to=RECIPIENT, from_="whatsapp:+15559990000", body="x"), 63007),
        (CreateMessageRequest(to=RECIPIENT, from_=SENDER), 21602),
        (CreateMessageRequest(to=RECIPIENT, from_=SENDER, body="x" * 1601), 21617),
        (
            CreateMessageRequest(
                to=RECIPIENT,
                from_=SENDER,
                media_urls=tuple(f"https://e.com/{i}" for i in range(11)),
            ),
            21623,
        ),
        (CreateMessageRequest(to=RECIPIENT, from_=SENDER, content_sid="HXnope"), 21655),
        (CreateMessageRequest(to=RECIPIENT, from_=SENDER, body="x", validity_period=0), 21658),
        (
            CreateMessageRequest(to=RECIPIENT, from_=SENDER, body="x", status_callback="nope"),
            21609,
        ),
    ],
    ids=["to", "from", "empty", "long", "media", "content-sid", "validity", "callback"],
)
async def test_twilio_validation_codes(
    backend: Backend, request_: CreateMessageRequest, code: int
) -> None:
    refused = await _refused(backend, request_)
    assert (refused.status, refused.code) == (400, code)
    assert refused.message
    assert refused.more_info is not None
    assert str(code) in refused.more_info
    assert backend.model.stored_count == 0


async def test_scripted_throttle_carries_retry_after(backend: Backend) -> None:
    backend.model.fail_next(20429, status=429, retry_after=2)
    refused = await _refused(backend, _text())
    assert (refused.status, refused.code, refused.retry_after) == (429, 20429, 2.0)
    assert isinstance(await backend.api.create_message(_text()), MessageResource)


@pytest.mark.parametrize("after_store", [False, True])
async def test_connection_reset_is_a_transport_error(backend: Backend, after_store: bool) -> None:
    backend.model.reset_next(after_store=after_store)
    with pytest.raises(TransportError) as raised:
        await backend.api.create_message(_text())
    assert raised.value.maybe_delivered
    assert backend.model.stored_count == (1 if after_store else 0)


# --- fetch, list, account ---------------------------------------------------------------


async def test_fetch_follows_the_status(backend: Backend) -> None:
    created = await _create(backend, _text())
    backend.model.set_status(created.sid, "delivered")
    fetched = await backend.api.fetch_message(created.sid)
    assert isinstance(fetched, MessageResource)
    assert (fetched.sid, fetched.status) == (created.sid, "delivered")
    backend.model.set_status(created.sid, "failed", 63016)
    failed = await backend.api.fetch_message(created.sid)
    assert isinstance(failed, MessageResource)
    assert (failed.status, failed.error_code) == ("failed", 63016)
    assert failed.error_message


async def test_fetch_unknown_sid_is_20404(backend: Backend) -> None:
    missing = await backend.api.fetch_message("SM" + "0" * 32)
    assert isinstance(missing, ApiError)
    assert (missing.status, missing.code) == (404, 20404)


async def test_list_filters_by_recipient_and_sender(backend: Backend) -> None:
    mine = await _create(backend, _text("mine"))
    await _create(
        backend, CreateMessageRequest(to="whatsapp:+15550003333", from_=SENDER, body="other")
    )
    page = await backend.api.list_messages(MessageQuery(to=RECIPIENT, from_=SENDER))
    assert isinstance(page, MessagePage)
    assert [m.sid for m in page.messages] == [mine.sid]
    today = backend.clock.now().date()
    tomorrow = today + dt.timedelta(days=1)
    assert len(_page(await backend.api.list_messages(MessageQuery(date_sent_after=today)))) == 2
    assert _page(await backend.api.list_messages(MessageQuery(date_sent_after=tomorrow))) == []


def _page(answer: MessagePage | ApiError) -> list[MessageResource]:
    assert isinstance(answer, MessagePage), answer
    return list(answer.messages)


async def test_fetch_account(backend: Backend) -> None:
    account = await backend.api.fetch_account()
    assert isinstance(account, AccountResource)
    assert (account.sid, account.status) == (ACCOUNT, "active")


async def test_wrong_token_is_20003(backend: Backend) -> None:
    stranger = backend.api_with_token("not-the-token-0000000")
    try:
        refused = await stranger.fetch_account()
        assert isinstance(refused, ApiError)
        assert (refused.status, refused.code) == (401, 20003)
        assert "not-the-token" not in refused.message
    finally:
        await stranger.close()


# --- the connector on either backend ----------------------------------------------------


async def test_documented_examples_send_and_track(backend: Backend) -> None:
    async with backend.connector() as connector:
        text = MessageBuilder().to_phone(RECIPIENT).with_text("Hello from WhatsApp!").build()
        media = (
            MessageBuilder()
            .to_phone(RECIPIENT)
            .with_content(MediaContent(MediaType.IMAGE, "p.jpg", "https://example.com/p.jpg"))
            .with_property("caption", "Check out our new product!")
            .build()
        )
        template = (
            MessageBuilder()
            .to_phone(RECIPIENT)
            .with_content(TemplateContent(CONTENT_SID, {"1": "ORD-123"}))
            .build()
        )
        results = await connector.send_batch([text, media, template])
        sids = [r.unwrap().provider_message_id for r in results]
        assert [s[:2] for s in sids] == ["SM", "MM", "SM"]
        backend.model.set_status(sids[0], "read")
        status = (await connector.get_message_status(sids[0])).unwrap()
        assert status.status is MessageStatus.READ


async def test_connector_maps_twilio_errors_keeping_the_provider_code(backend: Backend) -> None:
    async with backend.connector() as connector:
        message = MessageBuilder().to_phone(RECIPIENT).with_text("hi").build()
        backend.model.fail_next(21610, status=400)
        failed = await connector.send_message(message)
        assert failed.error is not None
        assert failed.error.provider_code == 21610
        assert failed.error.code == MessagingErrorCodes.INVALID_RECIPIENT


async def test_lost_answer_after_store_reconciles_to_the_stored_sid(backend: Backend) -> None:
    async with backend.connector() as connector:
        backend.model.reset_next(after_store=True)
        message = MessageBuilder().to_phone(RECIPIENT).with_text("exactly once").build()
        sent = (await connector.send_message(message)).unwrap()
        assert backend.model.stored_count == 1
        assert backend.model.message(sent.provider_message_id) is not None


async def test_lost_request_before_store_is_reported_unknown_not_resent(backend: Backend) -> None:
    async with backend.connector() as connector:
        backend.model.reset_next(after_store=False)
        message = MessageBuilder().to_phone(RECIPIENT).with_text("maybe").build()
        result = await connector.send_message(message)
        assert result.error is not None
        assert result.error.code == TwilioErrorCodes.SEND_OUTCOME_UNKNOWN
        assert backend.model.stored_count == 0


@pytest.mark.parametrize("stored", [False, True], ids=["before-store", "after-store"])
async def test_a_503_is_retried_only_after_looking(backend: Backend, stored: bool) -> None:
    """503 is retried, but 5xx are ambiguous: a message Twilio did create is found, not resent."""
    async with backend.connector() as connector:
        backend.model.fail_next(20503, status=503, retry_after=0, after_store=stored)
        message = MessageBuilder().to_phone(RECIPIENT).with_text("once, 503 or not").build()
        sent = (await connector.send_message(message)).unwrap()
    assert backend.model.stored_count == 1
    assert backend.model.message(sent.provider_message_id) is not None
