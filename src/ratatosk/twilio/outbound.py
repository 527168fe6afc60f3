"""Turning a kernel ``Message`` into Twilio's Create Message request (connector layer, pure).

Everything that can be decided without I/O is decided here, before any port
is called: capabilities, content type, numbers, sender fallback, properties,
WhatsApp's limits and template variables. A refused message therefore costs
nothing and reaches Twilio never (a property test checks zero port calls).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Final

import attrs

from ..domain.content import (
    ContentType,
    LocationContent,
    MediaContent,
    TemplateContent,
    TextContent,
)
from ..domain.endpoint import EndpointType, NumberProblem, parse_whatsapp_number
from ..domain.errors import MessagingErrorCodes
from ..domain.message import Message
from ..domain.result import ConnectorError
from ..domain.schema import (
    Capability,
    ChannelSchema,
    check_content_type,
    coerce_int,
    is_absolute_http_url,
    validate_properties,
)
from ..domain.settings import ConnectionSettings
from ..ports import CreateMessageRequest, TemplateInfo
from .errors import TwilioErrorCodes, error
from .schema import CONTENT_SID_PATTERN, MAX_BODY_LENGTH

_CONTENT_SID: Final = re.compile(CONTENT_SID_PATTERN)
_VARIABLE_KEY: Final = re.compile(r"[A-Za-z0-9_]{1,16}")
MAX_TEMPLATE_VARIABLES: Final = 100


@attrs.frozen(kw_only=True)
class SendConfig:
    """The settings that shape every send, read once at ``initialize``."""

    default_from: str | None = None
    messaging_service_sid: str | None = None
    status_callback: str | None = None
    strict_numbers: bool = False

    @classmethod
    def from_settings(cls, settings: ConnectionSettings) -> SendConfig:
        """One reading of the settings, so a plan made ahead of a send (``ratatosk
        send-batch --dry-run``) is the plan the connector makes."""
        return cls(
            default_from=settings.get_string("FromNumber"),
            messaging_service_sid=settings.get_string("MessagingServiceSid"),
            status_callback=settings.get_string("StatusCallback"),
            strict_numbers=settings.get_bool("StrictNumbers"),
        )


@attrs.frozen(kw_only=True)
class SendPlan:
    """A validated request; ``template`` is set when a friendly name must still be resolved."""

    request: CreateMessageRequest
    template: TemplateContent | None = None


def plan_send(
    schema: ChannelSchema, config: SendConfig, message: Message
) -> SendPlan | ConnectorError:
    """Validate ``message`` and build its request, or say precisely what is wrong."""
    plan = _plan(schema, config, message)
    if isinstance(plan, ConnectorError):
        return plan
    return _check_encodable(plan.request) or plan


def _check_encodable(request: CreateMessageRequest) -> ConnectorError | None:
    """Refuse text that has no UTF-8 form (lone surrogates): it cannot go on the wire."""
    for field, value in request.to_form():
        if value.isascii():  # ASCII always has a UTF-8 form: the usual case, checked fast
            continue
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return error(
                TwilioErrorCodes.INVALID_MESSAGE,
                f"{field} holds a lone surrogate code point, which has no UTF-8 form",
                field=field,
            )
    return None


def _plan(schema: ChannelSchema, config: SendConfig, message: Message) -> SendPlan | ConnectorError:
    if not isinstance(message, Message):
        raise TypeError(f"send_message takes a Message, not {type(message).__name__}")
    content = message.content
    if content is None:
        return error(
            TwilioErrorCodes.INVALID_MESSAGE, "the message has no content", field="content"
        )
    refused = _check_content(schema, content.content_type)
    if refused is not None:
        return refused
    receiver = _recipient(schema, message, config.strict_numbers)
    if isinstance(receiver, ConnectorError):
        return receiver
    sender = _sender(schema, message, config)
    if isinstance(sender, ConnectorError):
        return sender
    from_, service = sender
    problems = validate_properties(schema, message.properties)
    if problems:
        return error(
            TwilioErrorCodes.INVALID_MESSAGE,
            "; ".join(f"{p.field} {p.message}" for p in problems),
            fields=[p.field for p in problems],
        )
    validity = coerce_int(message.properties.get("ValidityPeriod"))
    caption = message.properties.get("caption")
    text = content.text if isinstance(content, TextContent) else None
    if text is not None:
        if caption is not None:
            return _caption_misuse()
        body_error = _check_body(text, "Body")
        if body_error is not None:
            return body_error
    # One construction for every kind; a text send (the common one) is then complete.
    base = CreateMessageRequest(
        to=receiver,
        from_=from_,
        messaging_service_sid=service,
        status_callback=config.status_callback,
        validity_period=validity,
        body=text,
    )
    if text is not None:
        return SendPlan(request=base)
    if isinstance(content, MediaContent):
        return _plan_media(base, content, caption)
    if caption is not None:
        return _caption_misuse()
    if isinstance(content, LocationContent):
        return _plan_location(base, content)
    assert isinstance(content, TemplateContent)
    return _plan_template(base, content)


_NEEDS: Final = {
    ContentType.MEDIA: Capability.MEDIA_ATTACHMENTS,
    ContentType.TEMPLATE: Capability.TEMPLATES,
}


def _check_content(schema: ChannelSchema, content_type: ContentType) -> ConnectorError | None:
    problem = check_content_type(schema, content_type)
    needs = _NEEDS.get(content_type, Capability.SEND_MESSAGES)
    if problem is None and schema.supports(needs):
        return None
    return error(
        MessagingErrorCodes.UNSUPPORTED_CONTENT_TYPE,
        problem.message if problem else f"{content_type.value} needs capability {needs.name}",
        content_type=content_type.value,
    )


def _recipient(schema: ChannelSchema, message: Message, strict: bool) -> str | ConnectorError:
    endpoint = message.receiver
    if endpoint is None:
        return error(MessagingErrorCodes.INVALID_RECIPIENT, "the message has no recipient")
    if endpoint.type is not EndpointType.PHONE_NUMBER:
        return error(
            MessagingErrorCodes.INVALID_RECIPIENT,
            f"{endpoint.type.value} recipients are not supported; use a phone number",
        )
    parsed = parse_whatsapp_number(endpoint.address, strict=strict)
    if parsed.ok:
        assert parsed.address is not None
        return parsed.address
    if parsed.had_prefix:
        return error(
            TwilioErrorCodes.INVALID_WHATSAPP_NUMBER,
            f"recipient {endpoint.address[:40]!r} is not whatsapp:+E164 ({_why(parsed.problem)})",
            field="to",
            problem=parsed.problem.value if parsed.problem else None,
        )
    return error(
        MessagingErrorCodes.INVALID_RECIPIENT,
        f"recipient {endpoint.address[:40]!r} must be whatsapp:+E164 ({_why(parsed.problem)})",
        field="to",
        problem=parsed.problem.value if parsed.problem else None,
    )


def _sender(
    schema: ChannelSchema, message: Message, config: SendConfig
) -> tuple[str | None, str | None] | ConnectorError:
    endpoint = message.sender
    if endpoint is not None and endpoint.type is not EndpointType.PHONE_NUMBER:
        return error(
            TwilioErrorCodes.INVALID_SENDER,
            f"{endpoint.type.value} senders are not supported; use a WhatsApp number",
        )
    address = endpoint.address if endpoint is not None else config.default_from
    if address is None or not address.strip():
        if config.messaging_service_sid:
            return None, config.messaging_service_sid
        return error(
            TwilioErrorCodes.MISSING_FROM_NUMBER,
            "no sender: set one on the message, or FromNumber or MessagingServiceSid in settings",
        )
    parsed = parse_whatsapp_number(address, strict=config.strict_numbers)
    if not parsed.ok:
        return error(
            TwilioErrorCodes.INVALID_SENDER,
            f"sender {address[:40]!r} is not whatsapp:+E164 ({_why(parsed.problem)})",
            field="from",
            problem=parsed.problem.value if parsed.problem else None,
        )
    return parsed.address, None


def _why(problem: NumberProblem | None) -> str:
    return (
        {
            NumberProblem.EMPTY: "empty",
            NumberProblem.WRONG_SCHEME: "only the whatsapp: scheme is allowed",
            NumberProblem.NOT_E164: "not an E.164 number with a leading +",
            NumberProblem.NOT_POSSIBLE: "not a possible number for its country",
            NumberProblem.NOT_VALID: "not a valid number in its numbering plan",
        }.get(problem, "invalid")
        if problem
        else "invalid"
    )


def _check_body(text: str, field: str) -> ConnectorError | None:
    if not text.strip():
        return error(TwilioErrorCodes.INVALID_MESSAGE, f"{field} is empty", field=field)
    if len(text) > MAX_BODY_LENGTH:
        return error(
            TwilioErrorCodes.INVALID_MESSAGE,
            f"{field} has {len(text)} characters; Twilio accepts at most {MAX_BODY_LENGTH}",
            field=field,
            length=len(text),
            limit=MAX_BODY_LENGTH,
        )
    return None


def _caption_misuse() -> ConnectorError:
    return error(
        TwilioErrorCodes.INVALID_MESSAGE,
        "caption applies to media messages only; it would be dropped",
        fields=["caption"],
    )


def _plan_media(
    base: CreateMessageRequest, media: MediaContent, caption: object
) -> SendPlan | ConnectorError:
    if not is_absolute_http_url(media.url):
        return error(
            TwilioErrorCodes.INVALID_MESSAGE,
            f"media URL {media.url[:80]!r} is not an absolute http(s) URL",
            field="MediaUrl",
        )
    body: str | None = None
    if isinstance(caption, str) and caption:
        problem = _check_body(caption, "caption")
        if problem is not None:
            return problem
        body = caption
    return SendPlan(request=attrs.evolve(base, media_urls=(media.url,), body=body))


def _plan_location(
    base: CreateMessageRequest, location: LocationContent
) -> SendPlan | ConnectorError:
    """A WhatsApp location: ``PersistentAction=geo:LAT,LONG|LABEL`` plus a Body.

    Twilio sends no location without a Body, so the address (else the label)
    becomes the Body; a location with neither is refused here rather than by
    Twilio (21602) after a round trip.
    """
    problems: list[tuple[str, str]] = []
    for field, limit in (("latitude", 90), ("longitude", 180)):
        value = getattr(location, field)
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append((field, f"{field} must be a number, not {type(value).__name__}"))
        elif not (math.isfinite(value) and -limit <= value <= limit):
            problems.append((field, f"{field} {value!r} is outside -{limit}..{limit}"))
    for field in ("address", "label"):
        value = getattr(location, field)
        if value is None:
            continue
        if not isinstance(value, str):
            problems.append((field, f"{field} must be text, not {type(value).__name__}"))
        elif (problem := _check_body(value, field)) is not None:
            problems.append((field, problem.message))
    if problems:
        return error(
            TwilioErrorCodes.INVALID_MESSAGE,
            "; ".join(message for _, message in problems),
            fields=[field for field, _ in problems],
        )
    body = location.address or location.label
    if body is None:
        return error(
            TwilioErrorCodes.INVALID_MESSAGE,
            "Twilio sends a WhatsApp location with a Body: give the location an address or a label",
            fields=["address", "label"],
        )
    action = f"geo:{_decimal(location.latitude)},{_decimal(location.longitude)}"
    if location.label is not None:
        action += f"|{location.label}"
    return SendPlan(request=attrs.evolve(base, body=body, persistent_action=(action,)))


def _decimal(value: float) -> str:
    """Plain decimal notation (a geo URI has no exponent), to about a millimetre."""
    text = f"{value:.8f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _plan_template(
    base: CreateMessageRequest, template: TemplateContent
) -> SendPlan | ConnectorError:
    template_id = template.template_id.strip()
    if not template_id:
        return error(
            TwilioErrorCodes.MISSING_CONTENT_SID,
            "the template has no id: give a Content SID (HX...) or a template name",
        )
    variables = encode_variables(template.parameters)
    if isinstance(variables, ConnectorError):
        return variables
    request = attrs.evolve(base, content_variables=variables)
    if _CONTENT_SID.fullmatch(template_id):
        return SendPlan(request=attrs.evolve(request, content_sid=template_id))
    return SendPlan(request=request, template=template)


def encode_variables(parameters: Mapping[str, object]) -> str | ConnectorError | None:
    """Template parameters as Twilio's ContentVariables: a JSON object of strings.

    Refuses what Twilio would refuse later (21656) or silently mangle: None
    values, nested values, non-finite numbers, keys with spaces or over 16
    characters, more than 100 pairs.
    """
    if not parameters:
        return None
    if len(parameters) > MAX_TEMPLATE_VARIABLES:
        return error(
            TwilioErrorCodes.INVALID_MESSAGE,
            f"{len(parameters)} template variables; at most {MAX_TEMPLATE_VARIABLES}",
        )
    encoded: dict[str, str] = {}
    bad: list[str] = []
    for key, value in parameters.items():
        name = str(key)
        text = _variable_text(value)
        if not _VARIABLE_KEY.fullmatch(name) or text is None or len(text) > MAX_BODY_LENGTH:
            bad.append(name)
            continue
        encoded[name] = text
    if bad:
        return error(
            TwilioErrorCodes.INVALID_MESSAGE,
            "template variables must have names of 1-16 letters, digits or _ and "
            f"non-empty text values: {', '.join(sorted(bad)[:10])}",
            fields=sorted(bad),
        )
    return json.dumps(encoded, ensure_ascii=False, separators=(",", ":"))


def _variable_text(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return None


def check_template(info: TemplateInfo, template: TemplateContent) -> ConnectorError | None:
    """Refuse a template WhatsApp would reject: not approved, or variables that do not match."""
    status = (info.whatsapp_status or "approved").lower()
    if status != "approved":
        return error(
            TwilioErrorCodes.TEMPLATE_NOT_APPROVED,
            f"template {info.friendly_name!r} is {status!r} for WhatsApp, not approved",
            template=info.friendly_name,
            content_sid=info.sid,
            whatsapp_status=status,
        )
    if not info.variables:
        return None
    declared, given = set(info.variables), {str(k) for k in template.parameters}
    missing, unknown = sorted(declared - given), sorted(given - declared)
    if missing or unknown:
        parts = [
            f"missing {', '.join(missing)}" if missing else "",
            f"unknown {', '.join(unknown)}" if unknown else "",
        ]
        return error(
            TwilioErrorCodes.INVALID_MESSAGE,
            f"template {info.friendly_name!r} variables: {'; '.join(p for p in parts if p)}",
            missing=missing,
            unknown=unknown,
        )
    return None
