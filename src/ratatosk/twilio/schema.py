"""The Twilio WhatsApp channel schema (connector layer).

Declares exactly what the documentation's Schema table says, plus the
capabilities the sibling implements (receiving, state handling, media, health)
and what this package adds: the parameters FromNumber, MessagingServiceSid,
ApiBaseUrl, StrictNumbers and RedisUrl (the shared state of several processes),
and sending locations (Twilio's PersistentAction).
"""

from __future__ import annotations

import re
from typing import Final

from ..domain.content import ContentType
from ..domain.endpoint import EndpointType, parse_whatsapp_number
from ..domain.errors import MessagingErrorCodes
from ..domain.result import ConnectorError
from ..domain.schema import (
    AuthenticationSpec,
    AuthenticationType,
    Capability,
    ChannelSchema,
    DataType,
    EndpointSpec,
    FieldError,
    ParameterSpec,
    PropertySpec,
    validate_settings,
)
from ..domain.settings import ConnectionSettings
from .errors import TwilioErrorCodes, error

ACCOUNT_SID_PATTERN: Final = r"AC[0-9a-fA-F]{32}"
MESSAGING_SERVICE_SID_PATTERN: Final = r"MG[0-9a-fA-F]{32}"
CONTENT_SID_PATTERN: Final = r"HX[0-9a-fA-F]{32}"
MESSAGE_SID_PATTERN: Final = r"(SM|MM)[0-9a-fA-F]{32}"
#: A positive number of seconds, such as ``5``, ``0.5`` or ``2.25``.
SECONDS_PATTERN: Final = r"0*[1-9]\d{0,5}(\.\d{1,3})?|0*\.(?=\d*[1-9])\d{1,3}"
#: ``redis[s]://[user:password@]host[:port][/db][?options]``, host a name or ``[IPv6]``.
REDIS_URL_PATTERN: Final = (
    r"rediss?://(?:[^\s@/]*@)?(?:\[[0-9a-fA-F:.]+\]|[^\s@/:?#\[\]]+)"
    r"(?::\d{1,5})?(?:/\d{0,5})?(?:\?[^\s#]*)?"
)
DEFAULT_API_BASE_URL: Final = "https://api.twilio.com"
DEFAULT_CONTENT_BASE_URL: Final = "https://content.twilio.com"

#: Twilio refuses a longer Body (21617).
MAX_BODY_LENGTH: Final = 1600
#: WhatsApp delivers one attachment per message and drops the rest silently.
MAX_WHATSAPP_MEDIA: Final = 1
VALIDITY_PERIOD_RANGE: Final = (1, 36000)


def _pairs(value: str) -> str:
    """``key=value`` pairs separated by commas, each value matching ``value``."""
    pair = rf"\s*[^=,\s]+\s*=\s*{value}\s*"
    return rf"{pair}(,{pair})*"


def setting_pairs(settings: ConnectionSettings, name: str) -> dict[str, str]:
    """A ``key=value,key=value`` setting (validated by its pattern) as a dict."""
    text = settings.get_string(name) or ""
    pairs = (item.split("=", 1) for item in text.split(",") if "=" in item)
    return {key.strip(): value.strip() for key, value in pairs}


_PARAMETERS = (
    ParameterSpec(
        name="AccountSid",
        required=True,
        pattern=ACCOUNT_SID_PATTERN,
        description="Twilio account SID (starts with AC)",
    ),
    ParameterSpec(name="AuthToken", required=True, sensitive=True, description="Twilio auth token"),
    ParameterSpec(
        name="WebhookUrl", type=DataType.URL, description="URL for inbound WhatsApp messages"
    ),
    ParameterSpec(
        name="StatusCallback", type=DataType.URL, description="URL for delivery status callbacks"
    ),
    ParameterSpec(
        name="FromNumber",
        description="Default sender, whatsapp:+E164, used when a message has none",
    ),
    ParameterSpec(
        name="MessagingServiceSid",
        pattern=MESSAGING_SERVICE_SID_PATTERN,
        description="Messaging Service that picks the sender when no other sender is given",
    ),
    ParameterSpec(
        name="ApiBaseUrl",
        type=DataType.URL,
        default=DEFAULT_API_BASE_URL,
        description="Base URL of the Messages API (the emulator's URL in tests)",
    ),
    ParameterSpec(
        name="ContentApiBaseUrl",
        type=DataType.URL,
        default=DEFAULT_CONTENT_BASE_URL,
        description="Base URL of the Content API used to resolve template names",
    ),
    *(
        ParameterSpec(
            name=f"Http{phase}Timeout",
            pattern=SECONDS_PATTERN,
            description=f"{phase} timeout of each HTTP call to Twilio, in seconds (default {d})",
        )
        for phase, d in (("Connect", 5), ("Read", 15), ("Total", 30))
    ),
    ParameterSpec(
        name="Templates",
        pattern=_pairs(CONTENT_SID_PATTERN),
        description="A static template catalog, name=HX... pairs separated by commas",
    ),
    ParameterSpec(
        name="SenderRates",
        pattern=_pairs(f"(?:{SECONDS_PATTERN})"),  # a positive decimal, as the timeouts
        description="Sends per second for particular senders, sender=rate pairs, comma-separated",
    ),
    ParameterSpec(
        name="SenderTemplateLanguages",
        pattern=_pairs(r"[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*"),
        description="Default template language per sender, sender=language pairs (en, pt_BR)",
    ),
    ParameterSpec(
        name="StrictNumbers",
        type=DataType.BOOLEAN,
        default=False,
        description="Refuse numbers that are possible but not valid in their numbering plan",
    ),
    ParameterSpec(
        name="RedisUrl",
        sensitive=True,  # it may carry a password: kept as a Secret, never shown
        pattern=REDIS_URL_PATTERN,
        description="redis:// or rediss:// URL of the state every process shares (REDIS_URL)",
    ),
    ParameterSpec(
        name="ConversationWindowGuard",
        type=DataType.BOOLEAN,
        default=False,
        description="Refuse free-form sends outside WhatsApp's 24-hour customer window",
    ),
)

_PROPERTIES = (
    PropertySpec(name="caption", type=DataType.STRING, description="Caption for media messages"),
    PropertySpec(
        name="FallbackTemplate",
        type=DataType.TEMPLATE,
        description="Template sent instead when the window guard refuses a free-form message",
    ),
    PropertySpec(
        name="ValidityPeriod",
        type=DataType.INTEGER,
        minimum=VALIDITY_PERIOD_RANGE[0],
        maximum=VALIDITY_PERIOD_RANGE[1],
        description="Message validity in seconds",
    ),
)


class TwilioChannelSchemas:
    """The schemas this connector can run with."""

    TWILIO_WHATSAPP: Final = ChannelSchema(
        provider="Twilio",
        channel_type="WhatsApp",
        version="1.0.0",
        display_name="Twilio WhatsApp Business API Connector",
        capabilities=(
            Capability.SEND_MESSAGES
            | Capability.RECEIVE_MESSAGES
            | Capability.MESSAGE_STATUS_QUERY
            | Capability.HANDLE_MESSAGE_STATE
            | Capability.MEDIA_ATTACHMENTS
            | Capability.TEMPLATES
            | Capability.HEALTH_CHECK
            | Capability.BULK_MESSAGING
        ),
        content_types=frozenset(
            {ContentType.PLAIN_TEXT, ContentType.MEDIA, ContentType.TEMPLATE, ContentType.LOCATION}
        ),
        endpoints=(EndpointSpec(type=EndpointType.PHONE_NUMBER, can_send=True, can_receive=True),),
        parameters=_PARAMETERS,
        authentication=AuthenticationSpec(
            type=AuthenticationType.BASIC, principal="AccountSid", credential="AuthToken"
        ),
        message_properties=_PROPERTIES,
    )


def is_redis_url(text: str) -> bool:
    """Whether ``text`` is a ``redis://`` or ``rediss://`` URL the ``RedisUrl`` setting takes."""
    return isinstance(text, str) and re.fullmatch(REDIS_URL_PATTERN, text.strip()) is not None


def settings_problem(schema: ChannelSchema, settings: ConnectionSettings) -> ConnectorError | None:
    """Every bad setting at once, coded: MISSING_CREDENTIALS when the SID or token is
    blank, else INVALID_CONNECTION_SETTINGS (the schema's checks, plus FromNumber as a number).
    """
    problems = list(validate_settings(schema, settings))
    from_number = settings.get_string("FromNumber")
    strict = settings.get_bool("StrictNumbers")
    if from_number is not None and not parse_whatsapp_number(from_number, strict=strict).ok:
        plan = " valid in its numbering plan" if strict else ""
        problems.append(FieldError("FromNumber", f"is not a whatsapp:+E164 number{plan}"))
    if not problems:
        return None
    fields = {p.field: p.message for p in problems}
    creds = {schema.authentication.principal, schema.authentication.credential}
    missing = [f for f, m in fields.items() if f in creds and m == "is required"]
    code = (
        MessagingErrorCodes.MISSING_CREDENTIALS
        if missing
        else TwilioErrorCodes.INVALID_CONNECTION_SETTINGS
    )
    text = "; ".join(f"{f} {m}" for f, m in fields.items())
    return error(code, f"connection settings are not usable: {text}", fields=fields)
