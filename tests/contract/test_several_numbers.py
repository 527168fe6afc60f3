"""Several business numbers, one deployment: fallback templates, per-sender settings, routing.

Run on the fake and over HTTP to the emulator (the ``backend`` fixture).
"""

from __future__ import annotations

import json

from ratatosk import MessageBuilder, TemplateContent
from ratatosk.twilio import TwilioErrorCodes

from .conftest import OTHER_SENDER, RECIPIENT, SENDER, Backend

ORDER = {"order_id": "ORD-9", "delivery_date": "soon"}


def _hello(fallback: object = None, sender: str = SENDER) -> object:
    builder = MessageBuilder().from_phone(sender).to_phone(RECIPIENT).with_text("Hello again")
    if fallback is not None:
        builder = builder.with_property("FallbackTemplate", fallback)
    return builder.build()


async def test_a_closed_window_falls_back_to_the_named_template(backend: Backend) -> None:
    async with backend.connector(ConversationWindowGuard="true") as connector:
        refused = await connector.send_message(_hello())  # type: ignore[arg-type]
        sent = await connector.send_message(
            _hello(TemplateContent("order_confirmed", ORDER))  # type: ignore[arg-type]
        )
    assert refused.error is not None
    assert refused.error.code == TwilioErrorCodes.OUTSIDE_CONVERSATION_WINDOW
    result = sent.unwrap()
    assert result.data["fallback_template"] == "order_confirmed"
    assert result.data["fallback_because"] == TwilioErrorCodes.OUTSIDE_CONVERSATION_WINDOW
    [stored] = backend.model.outbound
    form = dict(stored.form)
    assert form["ContentSid"].startswith("HX")
    assert "Body" not in form
    assert json.loads(form["ContentVariables"]) == ORDER


async def test_a_fallback_is_checked_like_any_template(backend: Backend) -> None:
    async with backend.connector(ConversationWindowGuard="true") as connector:
        not_a_template = await connector.send_message(_hello("order_confirmed"))  # type: ignore[arg-type]
        missing_variable = await connector.send_message(
            _hello(TemplateContent("order_confirmed", {"order_id": "x"}))  # type: ignore[arg-type]
        )
    assert not_a_template.error is not None
    assert not_a_template.error.code == TwilioErrorCodes.INVALID_MESSAGE
    assert missing_variable.error is not None
    assert missing_variable.error.code == TwilioErrorCodes.INVALID_MESSAGE
    assert missing_variable.error.details["fallback_template"] == "order_confirmed"
    assert backend.model.outbound == []


async def test_an_open_window_sends_the_free_form_message(backend: Backend) -> None:
    async with backend.connector() as connector:  # no guard: nothing to fall back from
        sent = await connector.send_message(
            _hello(TemplateContent("order_confirmed", ORDER))  # type: ignore[arg-type]
        )
    assert "fallback_template" not in sent.unwrap().data
    assert dict(backend.model.outbound[0].form)["Body"] == "Hello again"


async def test_each_sender_has_its_own_rate(backend: Backend) -> None:
    slow = f"{OTHER_SENDER}=4"
    async with backend.connector(SenderRates=slow) as connector:
        results = await connector.send_batch(
            [_hello(sender=s) for s in [OTHER_SENDER] * 10 + [SENDER] * 10]  # type: ignore[misc]
        )
    paced = dict.fromkeys((SENDER, OTHER_SENDER), 0.0)
    for result in results:
        value = result.unwrap()
        paced[value.data["from"]] += value.data["paced_seconds"]
    assert paced[SENDER] == 0.0  # within the default burst of 80
    assert paced[OTHER_SENDER] > 1.0  # 10 sends at 4 a second, burst 4: 6 wait a quarter


async def test_each_sender_has_its_own_template_language(backend: Backend) -> None:
    spanish_template = backend.model.add_template(
        "order_confirmed", "Pedido {{order_id}}, {{delivery_date}}", ORDER, language="es"
    )
    languages = f"{OTHER_SENDER}=es, {SENDER}=en"
    async with backend.connector(SenderTemplateLanguages=languages) as connector:
        spanish = await connector.send_message(
            MessageBuilder()
            .from_phone(OTHER_SENDER)
            .to_phone(RECIPIENT)
            .with_content(TemplateContent("order_confirmed", ORDER))
            .build()
        )
        english = await connector.send_message(
            MessageBuilder()
            .from_phone(SENDER)
            .to_phone(RECIPIENT)
            .with_content(TemplateContent("order_confirmed", ORDER))
            .build()
        )
    sids = [dict(m.form)["ContentSid"] for m in backend.model.outbound]
    assert spanish.successful
    assert english.successful
    assert sids[0] == spanish_template.sid  # the Spanish template for the Spanish number
    assert sids[1] != spanish_template.sid


async def test_bad_sender_settings_are_refused_at_initialize(backend: Backend) -> None:
    connector = backend.connector(
        SenderRates="whatsapp:+14155550100=fast", SenderTemplateLanguages="x"
    )
    result = await connector.initialize()
    assert result.error is not None
    assert result.error.code == TwilioErrorCodes.INVALID_CONNECTION_SETTINGS
    assert set(result.error.details["fields"]) == {"SenderRates", "SenderTemplateLanguages"}
