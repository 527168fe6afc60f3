"""Channel schemas and the pure validation that uses them (domain layer).

A schema declares what a channel can do (capabilities, content types,
endpoints), which settings it needs and which message properties it
understands. Validation here is *total*: any input, however odd, yields a
tuple of :class:`FieldError` (empty when fine) and never raises, and it
reports every bad field at once rather than the first one (the cattrs habit).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from .content import ContentType, TemplateContent
from .endpoint import EndpointType
from .settings import ConnectionSettings, Secret


class Capability(enum.Flag):
    """What a connector can be asked to do."""

    NONE = 0
    SEND_MESSAGES = enum.auto()
    RECEIVE_MESSAGES = enum.auto()
    MESSAGE_STATUS_QUERY = enum.auto()
    HANDLE_MESSAGE_STATE = enum.auto()
    MEDIA_ATTACHMENTS = enum.auto()
    TEMPLATES = enum.auto()
    BULK_MESSAGING = enum.auto()
    HEALTH_CHECK = enum.auto()
    INTERACTIVE_CONTENT = enum.auto()


class DataType(enum.Enum):
    STRING = "string"
    INTEGER = "int"
    BOOLEAN = "bool"
    URL = "url"
    TEMPLATE = "template"  #: a ``TemplateContent`` value


class AuthenticationType(enum.Enum):
    NONE = "None"
    BASIC = "Basic"
    TOKEN = "Token"  # noqa: S105 - an auth scheme name, not a secret


@attrs.frozen(kw_only=True)
class ParameterSpec:
    """One connection parameter: its type, whether it is required or secret, its rules."""

    name: str
    type: DataType = DataType.STRING
    required: bool = False
    sensitive: bool = False
    default: Any = None
    description: str = ""
    pattern: str | None = None


@attrs.frozen(kw_only=True)
class PropertySpec:
    """One message property a channel understands (``caption``, ``ValidityPeriod``)."""

    name: str
    type: DataType = DataType.STRING
    required: bool = False
    minimum: int | None = None
    maximum: int | None = None
    description: str = ""


@attrs.frozen(kw_only=True)
class EndpointSpec:
    type: EndpointType
    can_send: bool = True
    can_receive: bool = True


@attrs.frozen(kw_only=True)
class AuthenticationSpec:
    """How the channel authenticates: for Twilio, Basic with the SID as principal."""

    type: AuthenticationType
    principal: str | None = None
    credential: str | None = None


@attrs.frozen(kw_only=True)
class ChannelSchema:
    """Everything a caller can know about a channel without talking to it."""

    provider: str
    channel_type: str
    version: str
    display_name: str
    capabilities: Capability
    content_types: frozenset[ContentType]
    endpoints: tuple[EndpointSpec, ...]
    parameters: tuple[ParameterSpec, ...]
    authentication: AuthenticationSpec
    message_properties: tuple[PropertySpec, ...] = ()

    @property
    def channel(self) -> str:
        return f"{self.provider}/{self.channel_type}"

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def parameter(self, name: str) -> ParameterSpec | None:
        return next((p for p in self.parameters if p.name == name), None)

    def without_capabilities(self, capabilities: Capability) -> ChannelSchema:
        """A narrower schema, e.g. a send-only deployment refusing status queries."""
        return attrs.evolve(self, capabilities=self.capabilities & ~capabilities)

    def without_content_types(self, *types: ContentType) -> ChannelSchema:
        return attrs.evolve(self, content_types=self.content_types - set(types))


@attrs.frozen
class FieldError:
    """One thing wrong with one field: safe to show (no values of secrets)."""

    field: str
    message: str


def validate_settings(
    schema: ChannelSchema, settings: ConnectionSettings
) -> tuple[FieldError, ...]:
    """Check every declared parameter; report all problems, never a secret value."""
    errors: list[FieldError] = []
    for spec in schema.parameters:
        value = settings.get(spec.name) if isinstance(settings, Mapping) else None
        errors.extend(_check_parameter(spec, value))
    return tuple(errors)


def _check_parameter(spec: ParameterSpec, value: Any) -> list[FieldError]:
    text: str | None
    # Validate what the connector will read: a secret only from get_secret (str or
    # Secret), everything else only from get_string, which never returns a Secret.
    if spec.sensitive and value is not None and not isinstance(value, str | Secret):
        return [FieldError(spec.name, "must be a string")]
    if not spec.sensitive and isinstance(value, Secret):
        return [FieldError(spec.name, "is not a secret parameter: give it as plain text")]
    if isinstance(value, Secret):
        text = value.reveal()
    elif value is None:
        text = None
    elif isinstance(value, str):
        text = value
    elif isinstance(value, bool) and spec.type is DataType.BOOLEAN:
        text = str(value)  # a Python bool is a fine boolean ("True"/"False" pass below)
    elif isinstance(value, bool) or not isinstance(value, int | float):
        return [FieldError(spec.name, f"must be a {spec.type.value}")]
    else:
        try:
            text = str(value)
        except ValueError:  # an int past CPython's int -> str digit limit
            return [FieldError(spec.name, f"is too large for a {spec.type.value}")]
    if text is None or not text.strip():
        return [FieldError(spec.name, "is required")] if spec.required else []
    if spec.sensitive and not _is_utf8(text):
        # A lone surrogate (an environment variable whose bytes were not UTF-8): no
        # HMAC key or Basic credentials can be made from it, so every webhook would fail.
        return [FieldError(spec.name, "is not valid UTF-8 text")]
    if spec.type is DataType.URL and _has_user_info(text):
        # Never shown: the part before "@" may be the token. Credentials in the URL
        # would also clash with the Basic credentials the adapters send.
        return [FieldError(spec.name, "must not carry credentials (user:password@) in the URL")]
    secret = spec.sensitive or isinstance(value, Secret) or "@" in text
    shown = "the value" if secret else repr(text)
    text = text.strip()
    if spec.type is DataType.INTEGER and not re.fullmatch(r"[+-]?\d+", text):
        return [FieldError(spec.name, f"{shown} is not an integer")]
    if spec.type is DataType.BOOLEAN and text.lower() not in {"true", "false", "1", "0"}:
        return [FieldError(spec.name, f"{shown} is not a boolean")]
    if spec.type is DataType.URL and not is_absolute_http_url(text):
        return [FieldError(spec.name, f"{shown} is not an absolute http(s) URL")]
    if spec.pattern is not None and not re.fullmatch(spec.pattern, text):
        return [FieldError(spec.name, f"{shown} does not match {spec.pattern}")]
    return []


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _has_user_info(text: str) -> bool:
    """``user:password@`` before the host (or an ``@`` in text that is no URL at all)."""
    if "@" not in text:
        return False
    try:
        return "://" not in text or "@" in urlsplit(text.strip()).netloc
    except ValueError:
        return True


def is_absolute_http_url(text: str) -> bool:
    """True for ``http://host/...`` and ``https://host/...`` with a host and no spaces."""
    if not isinstance(text, str) or any(ch.isspace() for ch in text):
        return False
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises on a bad port
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.hostname)


def validate_properties(
    schema: ChannelSchema, properties: Mapping[str, Any]
) -> tuple[FieldError, ...]:
    """Check the properties the schema declares; unknown properties pass through."""
    errors: list[FieldError] = []
    for spec in schema.message_properties:
        if spec.name not in properties or properties[spec.name] is None:
            if spec.required:
                errors.append(FieldError(spec.name, "is required"))
            continue
        errors.extend(_check_property(spec, properties[spec.name]))
    return tuple(errors)


def _check_property(spec: PropertySpec, value: Any) -> list[FieldError]:
    if spec.type is DataType.STRING:
        if not isinstance(value, str):
            return [FieldError(spec.name, f"must be a string, not {type(value).__name__}")]
        return []
    if spec.type is DataType.INTEGER:
        number = coerce_int(value)
        if number is None:
            return [FieldError(spec.name, f"must be an integer, not {_preview(value)}")]
        if spec.minimum is not None and number < spec.minimum:
            return [
                FieldError(spec.name, f"must be at least {spec.minimum}, not {_preview(number)}")
            ]
        if spec.maximum is not None and number > spec.maximum:
            return [
                FieldError(spec.name, f"must be at most {spec.maximum}, not {_preview(number)}")
            ]
        return []
    if spec.type is DataType.BOOLEAN and not isinstance(value, bool):
        return [FieldError(spec.name, "must be a boolean")]
    if spec.type is DataType.URL and not (isinstance(value, str) and is_absolute_http_url(value)):
        return [FieldError(spec.name, "must be an absolute http(s) URL")]
    if spec.type is DataType.TEMPLATE and not isinstance(value, TemplateContent):
        return [FieldError(spec.name, f"must be a TemplateContent, not {type(value).__name__}")]
    return []


def _preview(value: Any) -> str:
    """``repr`` cut to 40 characters; an int past CPython's str limit is named, not shown."""
    try:
        return f"{value!r:.40}"
    except ValueError:
        return f"a huge {type(value).__name__}"


def coerce_int(value: Any) -> int | None:
    """An int from an int or a decimal string; None for anything else (bools included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,18}\s*", value):
        return int(value)
    return None


def check_content_type(schema: ChannelSchema, content_type: ContentType) -> FieldError | None:
    if content_type in schema.content_types:
        return None
    allowed = ", ".join(sorted(t.value for t in schema.content_types))
    return FieldError("content", f"{content_type.value} is not supported (use {allowed})")


def check_endpoint(
    schema: ChannelSchema, endpoint_type: EndpointType, *, sending: bool
) -> FieldError | None:
    """Whether the schema lets this endpoint type send (sender) or receive (recipient)."""
    for spec in schema.endpoints:
        if spec.type in {endpoint_type, EndpointType.ANY} and (
            spec.can_send if sending else spec.can_receive
        ):
            return None
    role = "sender" if sending else "receiver"
    return FieldError(role, f"{endpoint_type.value} endpoints are not supported as {role}")
