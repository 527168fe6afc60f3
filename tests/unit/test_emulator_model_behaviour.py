"""The Twilio model over time: status progression, signed callbacks, inbound, faults, content.

Pure and deterministic: a ManualClock and a seeded Random drive the model;
callback and inbound signatures are checked with the official ``twilio``
package's RequestValidator (a test oracle only).
"""

from __future__ import annotations

import json
import random
from typing import Any
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from ratatosk import ConnectorError
from ratatosk.emulator.model import (
    FaultKind,
    FaultPlan,
    Reply,
    ResetKind,
    StatusCallback,
    TwilioModel,
    stable_content_sid,
)
from ratatosk.testing import ManualClock
from ratatosk.twilio import wire

ACCOUNT = "AC" + "1" * 32
TOKEN = "model-test-token-0123456789abcdef"
SENDER = "whatsapp:+14155238886"
RECIPIENT = "whatsapp:+15550002222"
CALLBACK = "https://hooks.example.com:8443/twilio/status?tenant=acme"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def make_model(clock: ManualClock, **options: Any) -> TwilioModel:
    return TwilioModel(ACCOUNT, TOKEN, clock=clock.now, rng=random.Random(11), **options)


@pytest.fixture
def model(clock: ManualClock) -> TwilioModel:
    return make_model(clock)


def send(model: TwilioModel, *, callback: str | None = CALLBACK, **fields: str) -> str:
    """Create a message (with a StatusCallback by default) and return its SID."""
    form = {"To": RECIPIENT, "From": SENDER, "Body": "hi", **fields}
    if callback is not None:
        form["StatusCallback"] = callback
    reply = model.create_message(ACCOUNT, [(k, v) for k, v in form.items() if v])
    assert reply.status == 201, reply.body
    assert reply.body is not None
    return str(reply.body["sid"])


def run(model: TwilioModel, clock: ManualClock, seconds: float = 60) -> list[StatusCallback]:
    clock.advance(seconds)
    model.advance()
    return model.due_callbacks()


class TestStatusProgression:
    def test_order_and_no_initial_callback(self, model: TwilioModel, clock: ManualClock) -> None:
        """queued -> sending -> sent -> delivered -> read; the initial status has no callback."""
        sid = send(model)
        assert model.due_callbacks() == []
        callbacks = run(model, clock)
        assert [c.status for c in callbacks] == ["sending", "sent", "delivered", "read"]
        assert model.fetch_message(ACCOUNT, sid).body["status"] == "read"  # type: ignore[index]

    def test_one_step_per_interval(self, clock: ManualClock) -> None:
        """Each status takes step_seconds of the injected clock; nothing moves before."""
        model = make_model(clock, step_seconds=10)
        send(model)
        assert run(model, clock, 9) == []
        assert [c.status for c in run(model, clock, 1)] == ["sending"]
        assert [c.status for c in run(model, clock, 20)] == ["sent", "delivered"]

    @pytest.mark.parametrize("final", ["sent", "delivered", "read"])
    def test_configurable_final_status(self, clock: ManualClock, final: str) -> None:
        """final_status stops the progression there."""
        model = make_model(clock, final_status=final)
        send(model)
        assert run(model, clock)[-1].status == final

    def test_failing_recipient(self, clock: ManualClock) -> None:
        """A configured failing recipient ends undelivered with its error code."""
        model = make_model(clock, failing_recipients={RECIPIENT: 63018})
        sid = send(model)
        callbacks = run(model, clock)
        assert [c.status for c in callbacks] == ["sending", "sent", "undelivered"]
        assert callbacks[-1].params["ErrorCode"] == "63018"
        assert "ErrorCode" not in callbacks[0].params
        body = model.fetch_message(ACCOUNT, sid).body
        assert body is not None
        assert (body["error_code"], body["error_message"]) == (
            63018,
            "Rate limit exceeded for Channel",
        )

    def test_service_send_gets_a_sender(self, model: TwilioModel, clock: ManualClock) -> None:
        """accepted -> queued -> ... and the service's sender appears once queued."""
        sid = send(model, From="", MessagingServiceSid="MG" + "b" * 32)
        callbacks = run(model, clock)
        assert [c.status for c in callbacks][:2] == ["queued", "sending"]
        assert callbacks[0].params["MessagingServiceSid"] == "MG" + "b" * 32
        assert model.fetch_message(ACCOUNT, sid).body["from"] == SENDER  # type: ignore[index]

    def test_no_callback_url_no_callbacks(self, model: TwilioModel, clock: ManualClock) -> None:
        """Without a StatusCallback the status still moves but nothing is queued."""
        sid = send(model, callback=None)
        assert run(model, clock) == []
        assert model.fetch_message(ACCOUNT, sid).body["status"] == "read"  # type: ignore[index]

    def test_set_status(self, model: TwilioModel, clock: ManualClock) -> None:
        """set_status applies now, queues its callback, and progression resumes after it."""
        sid = send(model)
        model.set_status(sid, "sent")
        assert [c.status for c in model.due_callbacks()] == ["sent"]
        assert [c.status for c in run(model, clock)] == ["delivered", "read"]

    def test_set_failure_stops(self, model: TwilioModel, clock: ManualClock) -> None:
        """A forced failure with an error code is final and carries the code."""
        sid = send(model)
        model.set_status(sid, "undelivered", error_code=63016)
        (callback,) = model.due_callbacks()
        assert callback.params["ErrorCode"] == "63016"
        assert "ChannelStatusMessage" in callback.params
        assert run(model, clock) == []

    def test_set_status_misuse(self, model: TwilioModel) -> None:
        """Unknown SIDs and statuses are programming errors."""
        with pytest.raises(KeyError):
            model.set_status("SM" + "0" * 32, "read")
        with pytest.raises(ValueError, match="status"):
            model.set_status(send(model), "teleported")

    def test_callbacks_in_time_order_across_messages(
        self, clock: ManualClock, model: TwilioModel
    ) -> None:
        """Statuses of several messages interleave by time, not message by message."""
        first = send(model)
        clock.advance(0.5)
        second = send(model)
        order = [(c.sid, c.status) for c in run(model, clock, 2.0)]
        assert order == [
            (first, "sending"),
            (second, "sending"),
            (first, "sent"),
            (second, "sent"),
        ]


class TestCallbacks:
    def test_fields(self, model: TwilioModel, clock: ManualClock) -> None:
        """Callbacks carry Twilio's WhatsApp fields; EventType only on read."""
        sid = send(model)
        callbacks = run(model, clock)
        sending, read = callbacks[0], callbacks[-1]
        assert {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": ACCOUNT,
            "From": SENDER,
            "To": RECIPIENT,
            "MessageStatus": "sending",
            "SmsStatus": "sending",
            "ApiVersion": "2010-04-01",
            "ChannelPrefix": "whatsapp",
        }.items() <= sending.params.items()
        assert sending.params["ChannelInstallSid"].startswith("XE")
        assert "EventType" not in sending.params
        assert read.params["EventType"] == "READ"
        assert sending.url == CALLBACK

    def test_signed_like_twilio(self, model: TwilioModel, clock: ManualClock) -> None:
        """Every callback validates with twilio's RequestValidator and the account token."""
        send(model)
        validator = RequestValidator(TOKEN)
        for callback in run(model, clock):
            assert validator.validate(callback.url, dict(callback.params), callback.signature)
            assert callback.headers["X-Twilio-Signature"] == callback.signature
            assert callback.headers["User-Agent"] == "TwilioProxy/1.1"
            tampered = {**callback.params, "MessageStatus": "failed"}
            assert not validator.validate(callback.url, tampered, callback.signature)

    def test_idempotency_tokens_unique(self, model: TwilioModel, clock: ManualClock) -> None:
        """Each callback has its own idempotency token."""
        send(model)
        send(model)
        tokens = [c.idempotency_token for c in run(model, clock)]
        assert len(set(tokens)) == len(tokens) == 8

    def test_status_callback_form_decodes(self, model: TwilioModel) -> None:
        """The connector's codec reads the model's callback form."""
        sid = send(model)
        form = model.status_callback_form(sid, "undelivered", 63016)
        update = wire.decode_status_callback({k: [v] for k, v in form.items()}, ManualClock().now())
        assert not isinstance(update, ConnectorError)
        assert (update.message_id, update.error_code) == (sid, 63016)


class TestInbound:
    def test_text_fields(self, model: TwilioModel) -> None:
        """An inbound text carries Twilio's fields, WaId digits and a received status."""
        form = model.inbound_message(RECIPIENT, SENDER, body="Hola", profile_name="Zoë")
        assert form["MessageSid"] == form["SmsSid"] == form["SmsMessageSid"]
        assert form["MessageSid"].startswith("SM")
        assert {
            "AccountSid": ACCOUNT,
            "From": RECIPIENT,
            "To": SENDER,
            "Body": "Hola",
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsStatus": "received",
            "ApiVersion": "2010-04-01",
            "ProfileName": "Zoë",
            "WaId": "15550002222",
            "MessageType": "text",
        }.items() <= form.items()
        stored = model.message(form["MessageSid"])
        assert stored is not None
        assert stored.direction == "inbound"

    def test_media_location_button_reply(self, model: TwilioModel) -> None:
        """Media, location, button and quoted-reply fields appear as Twilio names them."""
        original = send(model)
        form = model.inbound_message(
            RECIPIENT,
            SENDER,
            media=[("https://e.com/a.jpg", "image/jpeg")],
            location=(52.52, 13.405),
            button=("Yes", "confirm-1"),
            reply_to_sid=original,
        )
        assert form["MessageSid"].startswith("MM")
        assert (form["MediaUrl0"], form["MediaContentType0"]) == (
            "https://e.com/a.jpg",
            "image/jpeg",
        )
        assert (form["Latitude"], form["Longitude"]) == ("52.52", "13.405")
        assert (form["ButtonText"], form["ButtonPayload"], form["Body"]) == (
            "Yes",
            "confirm-1",
            "Yes",
        )
        assert form["OriginalRepliedMessageSid"] == original
        assert form["OriginalRepliedMessageSender"] == SENDER

    def test_signed_and_decodable(self, model: TwilioModel) -> None:
        """sign() matches twilio's validator and the codec reads the form."""
        url = "https://example.com/twilio/whatsapp/inbound"
        form = model.inbound_message(RECIPIENT, SENDER, body="Hola! ¿qué tal? 👋")
        assert RequestValidator(TOKEN).validate(url, form, model.sign(url, form))
        message = wire.decode_inbound({k: [v] for k, v in form.items()})
        assert not isinstance(message, ConnectorError)
        assert message.id == form["MessageSid"]

    def test_window_enforced(self, clock: ManualClock) -> None:
        """With enforce_window, free-form outside 24 h ends 63016; an inbound message opens it."""
        model = make_model(clock, enforce_window=True)
        outside = send(model)
        model.inbound_message(RECIPIENT, SENDER, body="hi")
        inside = send(model)
        template = send(model, ContentSid=stable_content_sid(ACCOUNT, "order_confirmed"))
        clock.advance(hours=25)
        expired = send(model)
        run(model, clock)
        statuses = {
            sid: model.fetch_message(ACCOUNT, sid).body
            for sid in (outside, inside, template, expired)
        }
        assert statuses[outside]["error_code"] == 63016  # type: ignore[index]
        assert statuses[inside]["status"] == "read"  # type: ignore[index]
        assert statuses[template]["status"] == "read"  # type: ignore[index]
        assert statuses[expired]["status"] == "undelivered"  # type: ignore[index]

    def test_unapproved_template_fails(self, model: TwilioModel, clock: ManualClock) -> None:
        """A template WhatsApp has not approved ends undelivered (63027)."""
        sid = send(model, Body="", ContentSid=stable_content_sid(ACCOUNT, "pending_promo"))
        assert run(model, clock)[-1].params["ErrorCode"] == "63027"
        assert model.fetch_message(ACCOUNT, sid).body["status"] == "undelivered"  # type: ignore[index]


class TestFaults:
    def test_fail_next(self, model: TwilioModel) -> None:
        """fail_next answers that error once, stores nothing, then creates work again."""
        model.fail_next(20429, status=429, message="Too many", retry_after=3)
        model.fail_next(21610)
        throttled = model.create_message(ACCOUNT, [("To", RECIPIENT)])
        assert throttled.status == 429
        assert throttled.headers["Retry-After"] == "3"
        assert throttled.body == {
            "code": 20429,
            "message": "Too many",
            "more_info": "https://www.twilio.com/docs/errors/20429",
            "status": 429,
        }
        assert model.create_message(ACCOUNT, [("To", RECIPIENT)]).status == 400
        assert model.stored_count == 0
        send(model)
        assert model.stored_count == 1

    def test_fail_next_times(self, model: TwilioModel) -> None:
        """fail_next(times=n) answers the error to the next n creates, then creates work."""
        model.fail_next(20429, status=429, times=3)
        form = [("To", RECIPIENT), ("From", SENDER), ("Body", "hi")]
        assert [model.create_message(ACCOUNT, form).status for _ in range(4)] == [429] * 3 + [201]
        assert [a.fault for a in model.attempts] == ["scripted"] * 3 + [None]
        with pytest.raises(ValueError, match="at least 1"):
            model.fail_next(20429, status=429, times=0)

    def test_fail_all_until_cleared(self, model: TwilioModel) -> None:
        """fail_all fails every create after the queued scripts; clear_failures ends both."""
        form = [("To", RECIPIENT), ("From", SENDER), ("Body", "hi")]
        model.fail_all(20429, status=429, retry_after=0)
        model.fail_next(21610)
        codes = [(model.create_message(ACCOUNT, form).body or {})["code"] for _ in range(5)]
        assert codes == [21610] + [20429] * 4
        model.fail_next(21211)
        model.clear_failures()
        assert model.create_message(ACCOUNT, form).status == 201
        assert model.stored_count == 1

    @pytest.mark.parametrize(("after", "stored"), [(False, 0), (True, 1)])
    def test_reset_next(self, model: TwilioModel, after: bool, stored: int) -> None:
        """A scripted reset is a Reply flag; after_store stores the message first."""
        model.reset_next(after_store=after)
        reply = model.create_message(ACCOUNT, [("To", RECIPIENT), ("From", SENDER), ("Body", "hi")])
        assert reply.reset is (ResetKind.AFTER_STORE if after else ResetKind.BEFORE_STORE)
        assert not reply.ok
        assert model.stored_count == stored

    @pytest.mark.parametrize(
        ("plan", "status", "stored"),
        [
            (FaultPlan(throttle=1.0, retry_after=2), 429, 0),
            (FaultPlan(unavailable=1.0), 503, 0),
            (FaultPlan(server_error=1.0), 500, 1),
            (FaultPlan(slow=1.0, slow_seconds=0.5), 201, 1),
        ],
    )
    def test_plan_outcomes(
        self, clock: ManualClock, plan: FaultPlan, status: int, stored: int
    ) -> None:
        """Each fault kind answers as documented and stores only when it says so."""
        model = make_model(clock, faults=plan)
        reply = model.create_message(ACCOUNT, [("To", RECIPIENT), ("From", SENDER), ("Body", "x")])
        assert reply.status == status
        assert model.stored_count == stored
        if status == 429:
            assert reply.headers["Retry-After"] == "2"
            assert reply.body is not None
            assert reply.body["code"] == 20429
        if status == 201:
            assert reply.delay == 0.5

    def test_plan_is_deterministic(self, clock: ManualClock) -> None:
        """The same seed gives the same fault sequence; duplicates are countable."""
        plan = FaultPlan(throttle=0.2, server_error=0.2, reset_after_store=0.2, slow=0.1)

        def outcomes() -> tuple[list[tuple[int, ResetKind | None]], int, int]:
            model = make_model(clock, faults=plan)
            replies: list[Reply] = [
                model.create_message(
                    ACCOUNT, [("To", RECIPIENT), ("From", SENDER), ("Body", "same")]
                )
                for _ in range(40)
            ]
            return (
                [(r.status, r.reset) for r in replies],
                model.count_identical(RECIPIENT, SENDER, "same"),
                model.duplicate_count(),
            )

        first, second = outcomes(), outcomes()
        assert first == second
        kinds = {status for status, _ in first[0]}
        assert {201, 429, 500} <= kinds
        assert first[1] == first[2] + 1  # one original, the rest duplicates

    def test_draw_covers_kinds(self) -> None:
        """Draws follow the rates: with rates summing to 1 every draw is a fault."""
        plan = FaultPlan(throttle=0.5, reset_before_store=0.5)
        rng = random.Random(1)
        drawn = {plan.draw(rng) for _ in range(50)}
        assert drawn == {FaultKind.THROTTLE, FaultKind.RESET_BEFORE_STORE}
        assert FaultPlan().draw(rng) is None

    @pytest.mark.parametrize(
        "rates", [{"throttle": 1.5}, {"slow": -0.1}, {"throttle": 0.6, "server_error": 0.6}]
    )
    def test_plan_refuses_bad_rates(self, rates: dict[str, float]) -> None:
        """Rates are probabilities that sum to at most 1."""
        with pytest.raises(ValueError, match=r"rate|must"):
            FaultPlan(**rates)


def check_content(spec: Any, path: str, reply: Reply, query: dict[str, str] | None = None) -> None:
    from openapi_core.testing import MockRequest, MockResponse

    request = MockRequest(
        "https://content.twilio.com",
        "get",
        path,
        args=dict(query or {}),
        headers={"Authorization": "Basic eDp5"},
    )
    spec.validate_request(request)
    assert reply.status == 200, reply.body
    spec.validate_response(request, MockResponse(json.dumps(reply.body).encode(), status_code=200))


class TestContent:
    def test_seeded_templates(self, model: TwilioModel) -> None:
        """order_confirmed is approved with declared samples; pending_promo awaits review."""
        order = model.template_by_name("order_confirmed")
        promo = model.template_by_name("pending_promo")
        assert order is not None
        assert promo is not None
        assert order.sid == stable_content_sid(ACCOUNT, "order_confirmed")
        assert len(order.sid) == 34
        assert order.sid.startswith("HX")
        assert dict(order.variables) == {"order_id": "ORD-0", "delivery_date": "2026-01-01"}
        assert (order.language, order.whatsapp_status, promo.whatsapp_status) == (
            "en",
            "approved",
            "pending",
        )
        assert "twilio/text" in order.types

    def test_endpoints_match_contract(self, model: TwilioModel, content_spec: Any) -> None:
        """List, fetch, approvals and ContentAndApprovals answer the contract's shapes."""
        sid = stable_content_sid(ACCOUNT, "order_confirmed")
        check_content(content_spec, "/v1/Content", model.list_content())
        check_content(content_spec, "/v1/ContentAndApprovals", model.list_content_and_approvals())
        check_content(content_spec, f"/v1/Content/{sid}", model.fetch_content(sid))
        check_content(
            content_spec, f"/v1/Content/{sid}/ApprovalRequests", model.fetch_approval(sid)
        )

    def test_approvals_shape(self, model: TwilioModel) -> None:
        """ContentAndApprovals nests WhatsApp's approval under approval_requests.whatsapp."""
        body = model.list_content_and_approvals().body
        assert body is not None
        by_name = {c["friendly_name"]: c for c in body["contents"]}
        whatsapp = by_name["pending_promo"]["approval_requests"]["whatsapp"]
        assert (whatsapp["status"], whatsapp["name"], whatsapp["category"]) == (
            "pending",
            "pending_promo",
            "MARKETING",
        )
        approval = model.fetch_approval(stable_content_sid(ACCOUNT, "order_confirmed")).body
        assert approval is not None
        assert approval["whatsapp"]["status"] == "approved"

    def test_paging_and_unknown(self, model: TwilioModel, content_spec: Any) -> None:
        """Content pages with PageToken; an unknown SID is 404 / 20404."""
        model.add_template("shipping_update", "Shipped {{1}}", {"1": "ORD-1"})
        first = model.list_content(page_size=2)
        check_content(content_spec, "/v1/Content", first, {"PageSize": "2"})
        assert first.body is not None
        next_url = first.body["meta"]["next_page_url"]
        assert next_url is not None
        assert "PageToken=PA" in next_url
        token = next_url.split("PageToken=")[1]
        second = model.list_content(page_size=2, page_token=token, page=1)
        assert second.body is not None
        names = [c["friendly_name"] for c in first.body["contents"] + second.body["contents"]]
        assert sorted(names) == ["order_confirmed", "pending_promo", "shipping_update"]
        missing = model.fetch_content("HX" + "0" * 32)
        assert missing.status == 404
        assert missing.body is not None
        assert missing.body["code"] == 20404

    def test_accounts_do_not_share_templates(self, model: TwilioModel) -> None:
        """Templates belong to their account."""
        other = model.add_account()
        mine = stable_content_sid(ACCOUNT, "order_confirmed")
        assert model.fetch_content(mine, account_sid=other.sid).status == 404
        assert model.template_by_name("order_confirmed", other.sid) is not None

    def test_add_template_validates_status(self, model: TwilioModel) -> None:
        with pytest.raises(ValueError, match="approval"):
            model.add_template("x", "y", whatsapp_status="maybe")

    def test_urls_use_base(self, model: TwilioModel) -> None:
        """Content URLs point at the face serving them."""
        sid = stable_content_sid(ACCOUNT, "order_confirmed")
        body = model.fetch_content(sid, base_url="http://127.0.0.1:9").body
        assert body is not None
        assert body["url"] == f"http://127.0.0.1:9/v1/Content/{sid}"
        assert body["links"]["approval_fetch"].endswith(f"/v1/Content/{sid}/ApprovalRequests")


def test_encoded_form_roundtrip(model: TwilioModel) -> None:
    """Repeated MediaUrl keys survive the model and come back in order in its form record."""
    form = [("To", RECIPIENT), ("From", SENDER), ("MediaUrl", "https://e.com/1.jpg"),
            ("MediaUrl", "https://e.com/2.jpg")]  # fmt: skip
    sid = model.create_message(ACCOUNT, form).body["sid"]  # type: ignore[index]
    stored = model.message(sid)
    assert stored is not None
    assert stored.media_urls == ("https://e.com/1.jpg", "https://e.com/2.jpg")
    assert stored.form == tuple(form)
    assert urlencode(stored.form).count("MediaUrl=") == 2
