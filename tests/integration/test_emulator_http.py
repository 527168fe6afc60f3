"""The emulator over real HTTP on loopback: auth, routes, contract, faults, callbacks, inbound.

Every Twilio-path answer is checked against the OpenAPI contracts with
openapi-core (request and response); the official ``twilio`` client sends,
fetches and lists through the emulator; status callbacks and inbound
messages reach real aiohttp servers and validate with twilio's
RequestValidator. No internet, no timing assertions (only generous guards).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from ratatosk.emulator.app import RunningEmulator, start_emulator
from ratatosk.emulator.model import FaultPlan

ACCOUNT = "AC" + "4" * 32
TOKEN = "http-test-token-0011223344556677"
SENDER = "whatsapp:+14155238886"
RECIPIENT = "whatsapp:+15550002222"
MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
GUARD = 10.0  # seconds: a hang guard, never a timing assertion

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


@pytest.fixture(scope="module")
def specs(messaging_spec: Any, content_spec: Any) -> dict[str, Any]:
    return {"api": messaging_spec, "content": content_spec}


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    running = await start_emulator(
        account_sid=ACCOUNT, auth_token=TOKEN, step_delay=0.01, seed=5, callback_delay=0.005
    )
    yield running
    await running.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


AUTH = {"Authorization": aiohttp.encode_basic_auth(ACCOUNT, TOKEN)}


async def call(
    http: aiohttp.ClientSession,
    emulator: RunningEmulator,
    specs: dict[str, Any],
    method: str,
    path: str,
    *,
    form: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """One request; 2xx answers are validated against the contract, errors by shape."""
    from openapi_core.testing import MockRequest, MockResponse

    body = urlencode(form).encode() if form is not None else None
    sent_headers = dict(AUTH if headers is None else headers)
    if body is not None:
        sent_headers["Content-Type"] = "application/x-www-form-urlencoded"
    async with http.request(
        method, emulator.url + path, data=body, headers=sent_headers
    ) as response:
        raw = await response.read()
        status, answer_headers = response.status, dict(response.headers)
    assert answer_headers["Content-Type"].startswith("application/json")
    data = json.loads(raw)
    if status >= 300:
        assert set(data) == {"code", "message", "more_info", "status"}
        assert data["status"] == status
        assert data["more_info"] == f"https://www.twilio.com/docs/errors/{data['code']}"
        return status, data, answer_headers
    target = urlsplit(path)
    content = target.path.startswith("/v1/")
    spec = specs["content" if content else "api"]
    request = MockRequest(
        "https://content.twilio.com" if content else "https://api.twilio.com",
        method,
        target.path,
        args=dict(parse_qsl(target.query)),
        headers=sent_headers,
        data=body,
        content_type=sent_headers.get("Content-Type", ""),
    )
    spec.validate_request(request)
    spec.validate_response(request, MockResponse(raw, status_code=status, headers=answer_headers))
    return status, data, answer_headers


def text_form(body: str = "hi", **extra: str) -> list[tuple[str, str]]:
    return [("To", RECIPIENT), ("From", SENDER), ("Body", body), *extra.items()]


class TestEdge:
    async def test_basic_auth_required(
        self, emulator: RunningEmulator, http: aiohttp.ClientSession, specs: dict[str, Any]
    ) -> None:
        """No or wrong credentials are 401 / 20003 on Twilio and Content paths."""
        wrong = {"Authorization": aiohttp.encode_basic_auth(ACCOUNT, "nope")}
        other = {"Authorization": aiohttp.encode_basic_auth("AC" + "5" * 32, TOKEN)}
        for headers in ({}, wrong, other):
            for path in (MESSAGES, "/v1/Content", f"/2010-04-01/Accounts/{ACCOUNT}.json"):
                status, data, answer = await call(
                    http, emulator, specs, "GET", path, headers=headers
                )
                assert (status, data["code"]) == (401, 20003)
                assert data["message"] == "Authentication Error - invalid username"
                assert answer["WWW-Authenticate"].startswith("Basic")

    async def test_unknown_paths(
        self, emulator: RunningEmulator, http: aiohttp.ClientSession, specs: dict[str, Any]
    ) -> None:
        """Unknown paths are 404 / 20404 naming the path; wrong methods 405."""
        path = f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
        status, data, _ = await call(http, emulator, specs, "GET", path)
        assert (status, data["code"]) == (404, 20404)
        assert data["message"] == f"The requested resource {path} was not found"
        status, data, _ = await call(http, emulator, specs, "PUT", MESSAGES)
        assert (status, data["code"]) == (405, 20004)


class TestMessages:
    async def test_create_fetch_list(
        self, emulator: RunningEmulator, http: aiohttp.ClientSession, specs: dict[str, Any]
    ) -> None:
        """Create (form with '+' and repeated MediaUrl), fetch and page, all per contract."""
        media = [("MediaUrl", "https://e.com/a.jpg"), ("MediaUrl", "https://e.com/b.jpg")]
        status, created, _ = await call(
            http, emulator, specs, "POST", MESSAGES, form=text_form("hi + bye é", *[]) + media
        )
        assert status == 201
        assert (created["body"], created["num_media"], created["sid"][:2]) == (
            "hi + bye é",
            "2",
            "MM",
        )
        sid = created["sid"]
        status, fetched, _ = await call(
            http, emulator, specs, "GET", f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json"
        )
        assert (status, fetched["sid"]) == (200, sid)
        for index in range(3):
            await call(http, emulator, specs, "POST", MESSAGES, form=text_form(f"m{index}"))
        seen: list[str] = []
        path: str | None = f"{MESSAGES}?PageSize=2"
        while path is not None:
            status, page, _ = await call(http, emulator, specs, "GET", path)
            assert status == 200
            seen += [m["sid"] for m in page["messages"]]
            path = page["next_page_uri"]
        assert len(seen) == len(set(seen)) == 4
        assert seen[-1] == sid

    async def test_validation_error(
        self, emulator: RunningEmulator, http: aiohttp.ClientSession, specs: dict[str, Any]
    ) -> None:
        """Twilio's validation codes come back over HTTP in the legacy shape."""
        status, data, _ = await call(
            http, emulator, specs, "POST", MESSAGES, form=[("To", "whatsapp:+1"), ("Body", "x")]
        )
        assert (status, data["code"]) == (400, 21211)

    async def test_account(
        self, emulator: RunningEmulator, http: aiohttp.ClientSession, specs: dict[str, Any]
    ) -> None:
        status, data, _ = await call(
            http, emulator, specs, "GET", f"/2010-04-01/Accounts/{ACCOUNT}.json"
        )
        assert (status, data["sid"], data["status"]) == (200, ACCOUNT, "active")
        assert TOKEN not in json.dumps(data)

    async def test_content_api(
        self, emulator: RunningEmulator, http: aiohttp.ClientSession, specs: dict[str, Any]
    ) -> None:
        """Content, ContentAndApprovals, a template and its approval, per the contract."""
        _, listing, _ = await call(http, emulator, specs, "GET", "/v1/Content?PageSize=1")
        assert listing["meta"]["next_page_url"].startswith(emulator.url)
        _, approvals, _ = await call(http, emulator, specs, "GET", "/v1/ContentAndApprovals")
        by_name = {c["friendly_name"]: c for c in approvals["contents"]}
        sid = by_name["order_confirmed"]["sid"]
        assert by_name["pending_promo"]["approval_requests"]["whatsapp"]["status"] == "pending"
        _, template, _ = await call(http, emulator, specs, "GET", f"/v1/Content/{sid}")
        assert template["variables"] == {"order_id": "ORD-0", "delivery_date": "2026-01-01"}
        _, approval, _ = await call(
            http, emulator, specs, "GET", f"/v1/Content/{sid}/ApprovalRequests"
        )
        assert approval["whatsapp"]["status"] == "approved"
        status, missing, _ = await call(http, emulator, specs, "GET", f"/v1/Content/HX{'0' * 32}")
        assert (status, missing["code"]) == (404, 20404)


class TestFaults:
    async def test_throttle_with_retry_after(
        self, emulator: RunningEmulator, http: aiohttp.ClientSession, specs: dict[str, Any]
    ) -> None:
        """A scripted 429 (via the control endpoint) carries Retry-After and stores nothing."""
        script = {"code": 20429, "status": 429, "retry_after": 3}
        async with http.post(f"{emulator.url}/_emulator/fail_next", json=script) as answer:
            assert answer.status == 200
        status, data, headers = await call(
            http, emulator, specs, "POST", MESSAGES, form=text_form()
        )
        assert (status, data["code"], headers["Retry-After"]) == (429, 20429, "3")
        assert emulator.model.stored_count == 0

    async def test_fail_all_until_cleared_and_fail_next_times(
        self, emulator: RunningEmulator, http: aiohttp.ClientSession, specs: dict[str, Any]
    ) -> None:
        """The control API scripts every create (fail_all), n creates (times) and clears them."""

        async def control(path: str, script: dict[str, Any] | None = None) -> int:
            async with http.post(f"{emulator.url}/_emulator/{path}", json=script or {}) as answer:
                return answer.status

        async def create() -> int:
            status, _, _ = await call(http, emulator, specs, "POST", MESSAGES, form=text_form())
            return status

        assert await control("fail_all", {"code": 20429, "status": 429, "retry_after": 0}) == 200
        assert [await create() for _ in range(3)] == [429, 429, 429]
        assert await control("clear_failures") == 200
        assert await create() == 201
        assert await control("fail_next", {"code": 20503, "status": 503, "times": 2}) == 200
        assert [await create() for _ in range(3)] == [503, 503, 201]
        assert await control("fail_next", {"code": 20503, "times": "2"}) == 400
        assert await control("fail_all", {"code": 21610, "after_store": "yes"}) == 400
        assert emulator.model.stored_count == 2

    @pytest.mark.parametrize(("after", "stored"), [(False, 0), (True, 1)])
    async def test_reset_drops_connection(
        self, emulator: RunningEmulator, http: aiohttp.ClientSession, after: bool, stored: int
    ) -> None:
        """A reset fault closes the connection; after_store keeps the message."""
        emulator.model.reset_next(after_store=after)
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.post(
                emulator.url + MESSAGES, data=urlencode(text_form()).encode(), headers=AUTH
            ) as response:
                await response.read()
        assert emulator.model.stored_count == stored

    async def test_server_error_and_slow(
        self, emulator: RunningEmulator, http: aiohttp.ClientSession, specs: dict[str, Any]
    ) -> None:
        """500 / 20500 stores the message (ambiguous); a slow answer still answers 201."""
        emulator.model.faults = FaultPlan(server_error=1.0)
        status, data, _ = await call(http, emulator, specs, "POST", MESSAGES, form=text_form())
        assert (status, data["code"], emulator.model.stored_count) == (500, 20500, 1)
        emulator.model.faults = FaultPlan(slow=1.0, slow_seconds=0.01)
        status, _, _ = await call(http, emulator, specs, "POST", MESSAGES, form=text_form())
        assert (status, emulator.model.duplicate_count()) == (201, 1)


class EmulatorHttpClient(TwilioHttpClient):  # type: ignore[misc]  # untyped SDK
    """The official sync client, pointed at the emulator instead of *.twilio.com."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url
        assert self.session is not None
        self.session.trust_env = False  # never a proxy for loopback

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        for host in ("https://api.twilio.com", "https://content.twilio.com"):
            if url.startswith(host):
                url = self.base_url + url[len(host) :]
        return super().request(method, url, *args, **kwargs)


class TestOfficialClient:
    async def test_send_fetch_list_templates(self, emulator: RunningEmulator) -> None:
        """twilio.rest.Client creates, fetches and lists messages and lists templates."""
        transport = EmulatorHttpClient(emulator.url)
        client = Client(ACCOUNT, TOKEN, http_client=transport, environment={})

        def work() -> tuple[Any, Any, list[Any], list[Any]]:
            message = client.messages.create(
                to=RECIPIENT,
                from_=SENDER,
                body="hi from twilio-python",
                media_url=["https://e.com/a.jpg"],
            )
            fetched = client.messages(message.sid).fetch()
            listed = client.messages.list(to=RECIPIENT, limit=5)
            templates = client.content.v1.content_and_approvals.list()
            return message, fetched, listed, templates

        try:
            message, fetched, listed, templates = await asyncio.to_thread(work)
        finally:
            assert transport.session is not None
            transport.session.close()
        assert message.sid.startswith("MM")
        assert (message.status, message.num_media, message.body) == (
            "queued",
            "1",
            "hi from twilio-python",
        )
        assert message.date_created is not None
        assert fetched.sid == message.sid
        assert [m.sid for m in listed] == [message.sid]
        assert {t.friendly_name for t in templates} >= {"order_confirmed", "pending_promo"}


async def recording_server(
    aiohttp_server: ServerFactory, *, drop_first: bool = False
) -> tuple[TestServer, list[tuple[str, dict[str, str], dict[str, str]]], asyncio.Queue[str]]:
    """A webhook server recording (path, form, headers); optionally dropping the first call."""
    seen: list[tuple[str, dict[str, str], dict[str, str]]] = []
    arrivals: asyncio.Queue[str] = asyncio.Queue()
    calls = 0

    async def hook(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        form = dict(parse_qsl(await request.text(), keep_blank_values=True))
        seen.append((request.path, form, dict(request.headers)))
        if drop_first and calls == 1:
            assert request.transport is not None
            request.transport.close()
        else:
            await arrivals.put(form.get("MessageStatus", "inbound"))
        return web.Response(text="<Response/>", content_type="text/xml")

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    return await aiohttp_server(app), seen, arrivals


async def wait_for(arrivals: asyncio.Queue[str], wanted: str) -> None:
    async def loop() -> None:
        while await arrivals.get() != wanted:
            pass

    await asyncio.wait_for(loop(), timeout=GUARD)


async def wait_for_all(arrivals: asyncio.Queue[str], wanted: set[str]) -> None:
    async def loop() -> None:
        missing = set(wanted)
        while missing:
            missing.discard(await arrivals.get())

    await asyncio.wait_for(loop(), timeout=GUARD)


class TestWebhooks:
    async def test_status_callbacks_signed(
        self,
        emulator: RunningEmulator,
        http: aiohttp.ClientSession,
        specs: dict[str, Any],
        aiohttp_server: ServerFactory,
    ) -> None:
        """Callbacks reach a real server, signed (twilio's validator agrees), Twilio headers."""
        server, seen, arrivals = await recording_server(aiohttp_server)
        url = str(server.make_url("/twilio/status?tenant=acme"))
        _, created, _ = await call(
            http, emulator, specs, "POST", MESSAGES, form=text_form(StatusCallback=url)
        )
        await wait_for(arrivals, "read")
        validator = RequestValidator(TOKEN)
        statuses = [form["MessageStatus"] for _, form, _ in seen]
        assert sorted(statuses) == sorted(["sending", "sent", "delivered", "read"])
        for _, form, headers in seen:
            assert form["MessageSid"] == created["sid"]
            assert validator.validate(url, form, headers["X-Twilio-Signature"])
            assert headers["User-Agent"] == "TwilioProxy/1.1"
            assert headers["Content-Type"] == "application/x-www-form-urlencoded"
        tokens = {headers["I-Twilio-Idempotency-Token"] for _, _, headers in seen}
        assert len(tokens) == 4

    async def test_connection_failure_retried_with_same_token(
        self,
        emulator: RunningEmulator,
        http: aiohttp.ClientSession,
        specs: dict[str, Any],
        aiohttp_server: ServerFactory,
    ) -> None:
        """A dropped callback is retried once with the same idempotency token."""
        server, seen, arrivals = await recording_server(aiohttp_server, drop_first=True)
        emulator.model.final_status = "sent"
        url = str(server.make_url("/status"))
        await call(http, emulator, specs, "POST", MESSAGES, form=text_form(StatusCallback=url))
        await wait_for_all(arrivals, {"sending", "sent"})  # the retried one, and the next
        token = "I-Twilio-Idempotency-Token"
        first = seen[0]
        # Callbacks are not ordered across statuses (nor are Twilio's): find the retry by token.
        [retry] = [s for s in seen[1:] if s[2][token] == first[2][token]]
        assert first[1]["MessageStatus"] == retry[1]["MessageStatus"] == "sending"
        [delivery] = [d for d in emulator.deliveries if d.attempts > 1]
        assert (delivery.attempts, delivery.http_status) == (2, 200)

    async def test_inbound_via_control_endpoint(
        self, emulator: RunningEmulator, http: aiohttp.ClientSession, aiohttp_server: ServerFactory
    ) -> None:
        """POST /_emulator/inbound delivers a signed inbound message and returns the answer."""
        server, seen, _ = await recording_server(aiohttp_server)
        url = str(server.make_url("/twilio/whatsapp"))
        request = {
            "url": url,
            "from": RECIPIENT,
            "to": SENDER,
            "body": "Where is my order?",
            "media": [["https://e.com/a.jpg", "image/jpeg"]],
            "location": {"latitude": 52.5, "longitude": 13.4, "label": "Office"},
            "button": {"text": "Yes", "payload": "yes-1"},
            "profile_name": "Zoë",
        }
        async with http.post(f"{emulator.url}/_emulator/inbound", json=request) as response:
            answer = await response.json()
        assert (answer["status"], answer["body"]) == (200, "<Response/>")
        ((_, form, headers),) = seen
        assert RequestValidator(TOKEN).validate(url, form, headers["X-Twilio-Signature"])
        assert (form["MessageSid"], form["Body"], form["ProfileName"]) == (
            answer["message_sid"],
            "Where is my order?",
            "Zoë",
        )
        assert (form["Label"], form["ButtonPayload"], form["MediaUrl0"]) == (
            "Office",
            "yes-1",
            "https://e.com/a.jpg",
        )
        async with http.post(f"{emulator.url}/_emulator/inbound", json={"url": url}) as bad:
            assert bad.status == 400

    async def test_inject_inbound_and_dump(
        self, emulator: RunningEmulator, http: aiohttp.ClientSession, aiohttp_server: ServerFactory
    ) -> None:
        """RunningEmulator.inject_inbound is the same path; the dump shows the stored message."""
        server, seen, _ = await recording_server(aiohttp_server)
        answer = await emulator.inject_inbound(
            str(server.make_url("/in")), from_=RECIPIENT, to=SENDER, body="hola"
        )
        assert answer["status"] == 200
        assert seen[0][1]["Body"] == "hola"
        async with http.get(f"{emulator.url}/_emulator/messages") as response:
            dump = await response.json()
        assert [m["direction"] for m in dump] == ["inbound"]


async def test_control_status_and_deliveries(
    emulator: RunningEmulator, http: aiohttp.ClientSession, specs: dict[str, Any]
) -> None:
    """POST /_emulator/status forces a status; bad input is a 400; deliveries list as JSON."""
    _, created, _ = await call(http, emulator, specs, "POST", MESSAGES, form=text_form())
    change = {"sid": created["sid"], "status": "failed", "error_code": 63016}
    async with http.post(f"{emulator.url}/_emulator/status", json=change) as answer:
        assert answer.status == 200
    path = f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{created['sid']}.json"
    _, fetched, _ = await call(http, emulator, specs, "GET", path)
    assert (fetched["status"], fetched["error_code"]) == ("failed", 63016)
    async with http.post(f"{emulator.url}/_emulator/status", json={"sid": "x"}) as bad:
        assert bad.status == 400
    async with http.get(f"{emulator.url}/_emulator/deliveries") as listing:
        assert await listing.json() == []


async def test_start_emulator_refuses_model_and_options() -> None:
    """A model and model options together are a programming error."""
    from ratatosk.emulator.model import TwilioModel

    with pytest.raises(TypeError, match="either"):
        await start_emulator(model=TwilioModel(), step_delay=1)
