"""Templates by friendly name and the 24-hour window, on FakeTwilio and on the emulator.

The emulator (and the fake over the same model) starts with two templates:
``order_confirmed`` (approved, variables order_id and delivery_date) and
``pending_promo`` (submitted, not approved).
"""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import urlencode

import pytest

from ratatosk import MessageBuilder, MessageSource, TemplateContent
from ratatosk.adapters.templates import ContentApiTemplateCatalog
from ratatosk.emulator.app import start_emulator
from ratatosk.ports import TemplateCatalog, TemplateLookupError
from ratatosk.testing import FakeTemplateCatalog
from ratatosk.twilio import TwilioErrorCodes, TwilioWhatsAppConnector

from .conftest import OTHER_SENDER, RECIPIENT, SENDER, Backend

ORDER = {"order_id": "ORD-123", "delivery_date": "2026-05-15"}


def _template(name: str, parameters: dict[str, str], language: str | None = None) -> object:
    content = TemplateContent(name, parameters, language=language)
    return MessageBuilder().to_phone(RECIPIENT).with_content(content).build()


def _text(body: str = "free-form") -> object:
    return MessageBuilder().to_phone(RECIPIENT).with_text(body).build()


async def _customer_writes(backend: Backend, connector: TwilioWhatsAppConnector) -> None:
    form = backend.model.inbound_message(RECIPIENT, SENDER, body="hi, it's me")
    received = await connector.receive_messages(MessageSource.url_post(urlencode(form)))
    assert received.successful


# --- the catalog ---------------------------------------------------------------------------


async def test_catalog_lists_the_seeded_templates_with_approval_and_variables(
    backend: Backend,
) -> None:
    catalog = backend.template_catalog()
    by_name = {t.friendly_name: t for t in await catalog.list()}
    assert {"order_confirmed", "pending_promo"} <= set(by_name)
    order = by_name["order_confirmed"]
    assert order.sid.startswith("HX")
    assert len(order.sid) == 34
    assert order.whatsapp_status == "approved"
    assert set(order.variables) == {"order_id", "delivery_date"}
    assert by_name["pending_promo"].whatsapp_status != "approved"
    assert await catalog.find("order_confirmed") == order
    assert await catalog.find("no_such_template") is None


async def test_template_by_name_is_sent_with_its_content_sid(backend: Backend) -> None:
    catalog = backend.template_catalog()
    order = await catalog.find("order_confirmed")
    assert order is not None
    async with backend.connector(catalog=catalog) as connector:
        sent = (await connector.send_message(_template("order_confirmed", ORDER))).unwrap()
    stored = backend.model.message(sent.provider_message_id)
    assert stored is not None
    form = dict(stored.form)
    assert form["ContentSid"] == order.sid
    assert json.loads(form["ContentVariables"]) == ORDER
    assert "Body" not in form


@pytest.mark.parametrize(
    ("name", "parameters", "code", "named"),
    [
        ("no_such_template", {}, TwilioErrorCodes.MISSING_CONTENT_SID, "no_such_template"),
        ("pending_promo", {}, TwilioErrorCodes.TEMPLATE_NOT_APPROVED, "pending_promo"),
        ("order_confirmed", {"order_id": "1"}, TwilioErrorCodes.INVALID_MESSAGE, "delivery_date"),
        (
            "order_confirmed",
            {**ORDER, "coupon": "X"},
            TwilioErrorCodes.INVALID_MESSAGE,
            "coupon",
        ),
    ],
    ids=["unknown", "not-approved", "missing-variable", "unknown-variable"],
)
async def test_template_refusals_happen_before_any_message_is_created(
    backend: Backend, name: str, parameters: dict[str, str], code: str, named: str
) -> None:
    async with backend.connector(catalog=backend.template_catalog()) as connector:
        result = await connector.send_message(_template(name, parameters))
    assert result.error is not None
    assert result.error.code == code
    assert named in result.error.message
    assert backend.model.stored_count == 0


async def test_not_approved_names_its_status(backend: Backend) -> None:
    async with backend.connector(catalog=backend.template_catalog()) as connector:
        result = await connector.send_message(_template("pending_promo", {}))
    assert result.error is not None
    status = result.error.details["whatsapp_status"]
    assert status != "approved"
    assert status in result.error.message


async def test_the_default_catalog_resolves_names_and_refuses_unknown_ones(
    backend: Backend,
) -> None:
    """No catalog passed: the transport's own (Content API, or the fake's) resolves names."""
    async with backend.connector() as connector:
        known = await connector.send_message(_template("order_confirmed", ORDER))
        unknown = await connector.send_message(_template("no_such_template", {}))
    assert known.successful, known.error
    assert dict(backend.model.outbound[-1].form)["ContentSid"].startswith("HX")
    assert unknown.error is not None
    assert unknown.error.code == TwilioErrorCodes.MISSING_CONTENT_SID


async def test_catalog_outage_is_template_lookup_failed(
    backend: Backend, unused_tcp_port: int
) -> None:
    catalog: TemplateCatalog
    if backend.base_url is None:
        fake = FakeTemplateCatalog(backend.model, backend.model.main_account.sid)
        fake.unavailable = True
        catalog = fake
    else:  # nothing listens there: the Content API is down
        catalog = ContentApiTemplateCatalog(
            backend.model.main_account.sid, "t", base_url=f"http://127.0.0.1:{unused_tcp_port}"
        )
    async with backend.connector(catalog=catalog) as connector:
        outage = await connector.send_message(_template("order_confirmed", ORDER))
    assert outage.error is not None
    assert outage.error.code == TwilioErrorCodes.TEMPLATE_LOOKUP_FAILED
    assert backend.model.stored_count == 0


async def test_http_catalog_with_a_wrong_token_raises_lookup_error() -> None:
    """Only the HTTP catalog holds credentials to get wrong, so this one runs on HTTP alone."""
    emulator = await start_emulator()
    try:
        wrong = ContentApiTemplateCatalog(
            emulator.account_sid, "wrong-token-00000000", base_url=emulator.url
        )
        with pytest.raises(TemplateLookupError) as raised:
            await wrong.list()
    finally:
        await emulator.close()
    assert "401" in str(raised.value)
    assert "wrong-token" not in str(raised.value)


# --- the 24-hour window -------------------------------------------------------------------


async def test_guard_off_by_default_lets_twilio_decide(backend: Backend) -> None:
    backend.model.enforce_window = True
    async with backend.connector() as connector:
        result = await connector.send_message(_text())
    # Twilio accepts, then fails the message with 63016; the guard was not asked.
    assert result.successful
    assert backend.model.stored_count == 1


async def test_guard_refuses_free_form_to_a_customer_who_never_wrote(backend: Backend) -> None:
    async with backend.connector(ConversationWindowGuard="true") as connector:
        result = await connector.send_message(_text())
    assert result.error is not None
    assert result.error.code == TwilioErrorCodes.OUTSIDE_CONVERSATION_WINDOW
    assert result.error.details["customer"] == RECIPIENT
    assert backend.model.stored_count == 0


async def test_guard_opens_with_an_inbound_message_and_closes_after_24_hours(
    backend: Backend,
) -> None:
    backend.model.enforce_window = True  # Twilio itself agrees with the guard
    async with backend.connector(ConversationWindowGuard="true") as connector:
        await _customer_writes(backend, connector)
        backend.clock.advance(23 * 3600)
        inside = await connector.send_message(_text("within the window"))
        assert inside.successful
        backend.clock.advance(3600)
        outside = await connector.send_message(_text("too late"))
        assert outside.error is not None
        assert outside.error.code == TwilioErrorCodes.OUTSIDE_CONVERSATION_WINDOW
        closed_at = dt.datetime.fromisoformat(outside.error.details["closed_at"])
        assert closed_at == backend.clock.now()
        assert backend.model.stored_count == 1  # outbound only: the one inside the window


async def test_templates_always_pass_the_guard(backend: Backend) -> None:
    async with backend.connector(
        catalog=backend.template_catalog(), ConversationWindowGuard="true"
    ) as connector:
        sent = await connector.send_message(_template("order_confirmed", ORDER))
    assert sent.successful


async def test_window_is_per_business_number(backend: Backend) -> None:
    async with backend.connector(ConversationWindowGuard="true") as connector:
        await _customer_writes(backend, connector)
        other = MessageBuilder().from_phone(OTHER_SENDER).to_phone(RECIPIENT).with_text("x")
        result = await connector.send_message(other.build())
    assert result.error is not None
    assert result.error.code == TwilioErrorCodes.OUTSIDE_CONVERSATION_WINDOW


async def test_twilio_63016_maps_to_the_same_code_when_the_guard_is_off(backend: Backend) -> None:
    backend.model.enforce_window = True
    async with backend.connector() as connector:
        sent = (await connector.send_message(_text())).unwrap()
        backend.model.advance(backend.clock.now() + dt.timedelta(seconds=30))
        status = (await connector.get_message_status(sent.provider_message_id)).unwrap()
    assert status.error_code == 63016
