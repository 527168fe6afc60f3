"""The pure Twilio behaviour model: validation codes, JSON shapes, paging, statuses, faults.

No sockets. The model's JSON is checked against Twilio's OpenAPI contract
(openapi-core, request and response) and its signatures against the official
``twilio`` package's RequestValidator, used here only as an oracle.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from hypothesis import given

from ratatosk.emulator.model import (
    Reply,
    TwilioModel,
)
from ratatosk.testing import ManualClock, invalid_whatsapp_numbers, whatsapp_numbers
from ratatosk.twilio import wire

ACCOUNT = "AC" + "1" * 32
TOKEN = "model-test-token-0123456789abcdef"
SENDER = "whatsapp:+14155238886"
RECIPIENT = "whatsapp:+15550002222"
CALLBACK = "https://hooks.example.com:8443/twilio/status?tenant=acme"
SID = re.compile(r"(SM|MM)[0-9a-f]{32}")

Form = list[tuple[str, str]]


def make_form(**fields: Any) -> Form:
    """To/From/Body defaults; ``None`` drops a field, a list repeats the key."""
    values: dict[str, Any] = {"To": RECIPIENT, "From": SENDER, "Body": "hi"}
    values.update(fields)
    pairs: Form = []
    for key, value in values.items():
        if value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, str(item)))
    return pairs


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def model(clock: ManualClock) -> TwilioModel:
    return TwilioModel(ACCOUNT, TOKEN, clock=clock.now, rng=random.Random(7))


def send(model: TwilioModel, **fields: Any) -> Reply:
    return model.create_message(ACCOUNT, make_form(**fields))


def created_sid(reply: Reply) -> str:
    assert reply.status == 201, reply.body
    assert reply.body is not None
    return str(reply.body["sid"])


def check_contract(
    spec: Any, method: str, path: str, reply: Reply, *, form: Form | None = None, host: str = ""
) -> None:
    """The request is valid for the contract and the reply is what the contract answers."""
    from openapi_core.testing import MockRequest, MockResponse

    target = urlsplit(path)
    request = MockRequest(
        host or "https://api.twilio.com",
        method,
        target.path,
        args={k: vs[0] for k, vs in parse_qs(target.query).items()},
        headers={"Authorization": "Basic eDp5"},
        data=urlencode(form).encode() if form is not None else None,
        content_type="application/x-www-form-urlencoded" if form is not None else "",
    )
    spec.validate_request(request)
    spec.validate_response(
        request, MockResponse(json.dumps(reply.body).encode(), status_code=reply.status)
    )


def assert_twilio_error(reply: Reply, code: int, status: int = 400) -> None:
    assert reply.status == status
    assert reply.body == {
        "code": code,
        "message": reply.body["message"] if reply.body else None,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    assert isinstance(reply.body["message"], str)
    assert reply.body["message"]


class TestCreateValidation:
    @pytest.mark.parametrize(
        ("fields", "code"),
        [
            ({"To": None}, 21604),
            ({"To": ""}, 21604),
            ({"To": "+15550002222"}, 21211),
            ({"To": "whatsapp:15550002222"}, 21211),
            ({"To": "whatsapp:+1"}, 21211),
            ({"To": "sms:+15550002222"}, 21211),
            ({"From": None}, 21603),
            ({"From": "whatsapp:+1"}, 63007),
            ({"From": "+14155238886"}, 63007),
            ({"MessagingServiceSid": "MG123"}, 21705),
            ({"Body": None}, 21602),
            ({"Body": ""}, 21602),
            ({"Body": "x" * 1601}, 21617),
            ({"MediaUrl": ["https://e.com/a.jpg"] * 11}, 21623),
            ({"MediaUrl": "ftp://e.com/a.jpg"}, 21620),
            ({"MediaUrl": "/relative.jpg"}, 21620),
            ({"ContentSid": "HX123"}, 21655),
            ({"ContentSid": "MX" + "a" * 32}, 21655),
            ({"ContentVariables": '{"1": "x"}'}, 21654),
            ({"ContentSid": "HX" + "a" * 32, "ContentVariables": "not json"}, 21656),
            ({"ContentSid": "HX" + "a" * 32, "ContentVariables": "[1, 2]"}, 21656),
            ({"ContentSid": "HX" + "a" * 32, "ContentVariables": '{"1": null}'}, 21656),
            ({"ContentSid": "HX" + "a" * 32, "ContentVariables": '{"1": ""}'}, 21656),
            ({"ContentSid": "HX" + "a" * 32, "ContentVariables": '{"1": {"a": 1}}'}, 21656),
            ({"ValidityPeriod": "0"}, 21658),
            ({"ValidityPeriod": "36001"}, 21658),
            ({"ValidityPeriod": "ten"}, 21658),
            ({"StatusCallback": "not a url"}, 21609),
            ({"StatusCallback": "https://bad_host.example.com/cb"}, 21609),
        ],
    )
    def test_refusal_codes(self, model: TwilioModel, fields: dict[str, Any], code: int) -> None:
        """Each invalid create answers Twilio's code in the legacy JSON and stores nothing."""
        reply = send(model, **fields)
        assert_twilio_error(reply, code)
        assert model.stored_count == 0

    @pytest.mark.parametrize(
        "fields",
        [
            {"Body": "x" * 1600},
            {"Body": None, "MediaUrl": ["https://e.com/a.jpg"] * 10},
            {"Body": None, "ContentSid": "HX" + "a" * 32},
            {"ContentSid": "HX" + "A" * 32, "ContentVariables": '{"1": "Ana", "2": 3}'},
            {"ValidityPeriod": "1"},
            {"ValidityPeriod": "36000"},
            {"From": None, "MessagingServiceSid": "MG" + "b" * 32},
            {"StatusCallback": "http://localhost:8080/cb"},
        ],
    )
    def test_limits_accepted(self, model: TwilioModel, fields: dict[str, Any]) -> None:
        """Values at Twilio's limits are accepted."""
        assert send(model, **fields).status == 201

    def test_first_problem_wins(self, model: TwilioModel) -> None:
        """With several problems, Twilio's order decides: To before From before Body."""
        reply = model.create_message(ACCOUNT, [("From", "nope"), ("Body", "")])
        assert_twilio_error(reply, 21604)

    def test_owned_senders(self, clock: ManualClock) -> None:
        """With configured senders, another valid WhatsApp sender is 63007."""
        model = TwilioModel(ACCOUNT, TOKEN, clock=clock.now, senders={SENDER})
        assert send(model).status == 201
        assert_twilio_error(send(model, From="whatsapp:+15550009999"), 63007)

    def test_unknown_account_is_404(self, model: TwilioModel) -> None:
        """Creating under an account the model does not know is 20404."""
        reply = model.create_message("AC" + "9" * 32, make_form())
        assert_twilio_error(reply, 20404, 404)

    def test_strict_content_refuses_unknown_template(self, clock: ManualClock) -> None:
        """strict_content turns an unknown (well-formed) ContentSid into 21655."""
        model = TwilioModel(ACCOUNT, TOKEN, clock=clock.now, strict_content=True)
        assert_twilio_error(send(model, Body=None, ContentSid="HX" + "c" * 32), 21655)

    @given(to=whatsapp_numbers())
    def test_possible_numbers_are_accepted(self, to: str) -> None:
        """Every possible whatsapp:+E164 recipient is accepted."""
        model = TwilioModel(ACCOUNT, TOKEN, rng=random.Random(0))
        assert model.create_message(ACCOUNT, make_form(To=to)).status == 201

    @given(to=invalid_whatsapp_numbers())
    def test_near_misses_are_refused(self, to: str) -> None:
        """Near-miss recipients are 21211 (or 21604 when empty), never a stored message."""
        model = TwilioModel(ACCOUNT, TOKEN, rng=random.Random(0))
        reply = model.create_message(ACCOUNT, make_form(To=to))
        assert reply.body is not None
        assert reply.body["code"] in (21211, 21604)
        assert model.stored_count == 0


class TestCreatedMessage:
    def test_json_shape(self, model: TwilioModel, clock: ManualClock) -> None:
        """A 201 carries Twilio's full message JSON: string counts, RFC 2822 dates, uris."""
        body = send(model, Body="Hello! 👍").body
        assert body is not None
        sid = body["sid"]
        assert SID.fullmatch(sid)
        assert sid.startswith("SM")
        stamp = wire.format_rfc2822(clock.now())
        assert body == {
            "account_sid": ACCOUNT,
            "api_version": "2010-04-01",
            "body": "Hello! 👍",
            "date_created": stamp,
            "date_sent": stamp,
            "date_updated": stamp,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": SENDER,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}/Media.json"
            },
            "to": RECIPIENT,
            "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json",
        }

    def test_media_gives_mm_sid(self, model: TwilioModel) -> None:
        """Media makes an MM SID and num_media counts the URLs."""
        body = send(model, MediaUrl=["https://e.com/a.jpg", "https://e.com/b.jpg"]).body
        assert body is not None
        assert body["sid"].startswith("MM")
        assert SID.fullmatch(body["sid"])
        assert body["num_media"] == "2"

    def test_matches_contract(self, model: TwilioModel, messaging_spec: Any) -> None:
        """Create request and answer are valid for the v2010 OpenAPI contract."""
        form = make_form(MediaUrl=["https://e.com/a.jpg"], StatusCallback=CALLBACK)
        reply = model.create_message(ACCOUNT, form)
        check_contract(
            messaging_spec,
            "post",
            f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json",
            reply,
            form=form,
        )

    def test_decodes_with_wire_codec(self, model: TwilioModel, clock: ManualClock) -> None:
        """The connector's codec reads the model's JSON without loss."""
        resource = wire.decode_message(send(model).body)
        assert resource.status == "queued"
        assert resource.num_segments == 1
        assert resource.date_created == clock.now().replace(microsecond=0)

    def test_messaging_service_is_accepted(self, model: TwilioModel) -> None:
        """Through a Messaging Service: status accepted, no sender yet, num_segments 0."""
        body = send(model, From=None, MessagingServiceSid="MG" + "b" * 32).body
        assert body is not None
        assert (body["status"], body["from"], body["num_segments"]) == ("accepted", None, "0")

    def test_template_body_is_rendered(self, model: TwilioModel) -> None:
        """A known template's body is rendered with the variables over its samples."""
        template = model.template_by_name("order_confirmed")
        assert template is not None
        body = send(
            model, Body=None, ContentSid=template.sid, ContentVariables='{"order_id": "ORD-7"}'
        ).body
        assert body is not None
        assert body["body"] == "Your order ORD-7 is confirmed. It will arrive on 2026-01-01."

    def test_sids_are_deterministic_per_seed(self, clock: ManualClock) -> None:
        """The same seed and calls give the same SIDs."""
        runs = [
            [send(TwilioModel(ACCOUNT, TOKEN, clock=clock.now, rng=random.Random(3))).body]
            for _ in range(2)
        ]
        assert runs[0] == runs[1]


class TestFetchAndList:
    def test_fetch(self, model: TwilioModel, messaging_spec: Any) -> None:
        """Fetch returns the stored resource, valid for the contract."""
        sid = created_sid(send(model))
        reply = model.fetch_message(ACCOUNT, sid)
        assert reply.status == 200
        assert reply.body is not None
        assert reply.body["sid"] == sid
        check_contract(
            messaging_spec, "get", f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json", reply
        )

    def test_fetch_unknown(self, model: TwilioModel) -> None:
        """An unknown SID is 404 / 20404 with Twilio's message."""
        sid = "SM" + "f" * 32
        reply = model.fetch_message(ACCOUNT, sid)
        assert_twilio_error(reply, 20404, 404)
        assert reply.body is not None
        path = f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json"
        assert reply.body["message"] == f"The requested resource {path} was not found"

    def test_fetch_other_accounts_message(self, model: TwilioModel) -> None:
        """A message of another account is not found."""
        other = model.add_account()
        sid = created_sid(model.create_message(other.sid, make_form()))
        assert model.fetch_message(ACCOUNT, sid).status == 404
        assert model.fetch_message(other.sid, sid).status == 200

    def test_pages_newest_first_without_gaps(
        self, model: TwilioModel, clock: ManualClock, messaging_spec: Any
    ) -> None:
        """Following next_page_uri visits every message once, newest first."""
        sids = []
        for index in range(7):
            sids.append(created_sid(send(model, Body=f"m{index}")))
            clock.advance(1)
        seen: list[str] = []
        query: dict[str, str] = {"PageSize": "3"}
        path = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json?PageSize=3"
        while True:
            reply = model.list_messages(ACCOUNT, query)
            check_contract(messaging_spec, "get", path, reply)
            assert reply.body is not None
            seen += [m["sid"] for m in reply.body["messages"]]
            if reply.body["next_page_uri"] is None:
                break
            path = reply.body["next_page_uri"]
            assert "PageToken=PA" in path
            query = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
        assert seen == list(reversed(sids))

    def test_page_fields(self, model: TwilioModel) -> None:
        """page, page_size, start, end, uris as Twilio writes them."""
        for _ in range(3):
            send(model)
        body = model.list_messages(ACCOUNT, {"PageSize": "2"}).body
        assert body is not None
        base = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
        assert (body["page"], body["page_size"], body["start"], body["end"]) == (0, 2, 0, 1)
        assert body["first_page_uri"] == f"{base}?PageSize=2&Page=0"
        assert body["uri"] == body["first_page_uri"]
        assert body["previous_page_uri"] is None
        empty = model.list_messages(ACCOUNT, {"To": "whatsapp:+15559999999"}).body
        assert empty is not None
        assert (empty["messages"], empty["next_page_uri"], empty["end"]) == ([], None, 0)

    def test_filters(self, model: TwilioModel, clock: ManualClock) -> None:
        """To, From and DateSent>/DateSent< (dates or SDK datetimes) filter the list."""
        send(model)
        clock.advance(days=2)
        late = created_sid(send(model, To="whatsapp:+15550003333"))

        def sids(**query: str) -> list[str]:
            body = model.list_messages(ACCOUNT, query).body
            assert body is not None
            return [m["sid"] for m in body["messages"]]

        day = clock.now().date()
        assert sids(To="whatsapp:+15550003333") == [late]
        assert len(sids(From=SENDER)) == 2
        assert sids(**{"DateSent>": day.isoformat()}) == [late]
        assert sids(**{"DateSent>": clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")}) == [late]
        assert late not in sids(**{"DateSent<": (day - dt.timedelta(days=1)).isoformat()})
        assert sids(DateSent=day.isoformat()) == [late]

    @pytest.mark.parametrize("query", [{"PageSize": "0"}, {"PageSize": "1001"}, {"Page": "x"}])
    def test_bad_paging(self, model: TwilioModel, query: dict[str, str]) -> None:
        """PageSize outside 1..1000 or a non-numeric Page is a 400."""
        assert model.list_messages(ACCOUNT, query).status == 400


class TestAccounts:
    def test_authenticate(self, model: TwilioModel) -> None:
        """Right credentials pass; a wrong token, user or account is 401 / 20003."""
        assert model.authenticate(ACCOUNT, ACCOUNT, TOKEN) is None
        for args in [
            (ACCOUNT, ACCOUNT, "wrong"),
            (ACCOUNT, "AC" + "2" * 32, TOKEN),
            ("AC" + "2" * 32, ACCOUNT, TOKEN),
            (ACCOUNT, "", ""),
        ]:
            denied = model.authenticate(*args)
            assert denied is not None
            assert_twilio_error(denied, 20003, 401)
            assert denied.body is not None
            assert denied.body["message"] == "Authentication Error - invalid username"

    def test_fetch_account(self, model: TwilioModel, messaging_spec: Any) -> None:
        """The account JSON is valid for the contract and never carries the token."""
        reply = model.fetch_account(ACCOUNT)
        check_contract(messaging_spec, "get", f"/2010-04-01/Accounts/{ACCOUNT}.json", reply)
        assert TOKEN not in json.dumps(reply.body)
        assert wire.decode_account(reply.body).status == "active"
        assert model.fetch_account("AC" + "9" * 32).status == 404

    def test_add_account_validates_sid(self, model: TwilioModel) -> None:
        """An account SID must be AC + 32 hex."""
        with pytest.raises(ValueError, match="AC"):
            model.add_account("ACnope")
