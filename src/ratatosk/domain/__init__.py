"""The pure messaging kernel: values, schemas, validation and results.

Nothing in this package does I/O or imports anything outside itself (and the
three runtime libraries for values and phone numbers); import-linter checks it.
"""

from .content import (
    ButtonReplyContent,
    Content,
    ContentType,
    LocationContent,
    MediaContent,
    MediaType,
    MultipartContent,
    TemplateContent,
    TextContent,
)
from .endpoint import Endpoint, EndpointType, NumberProblem, ParsedNumber, parse_whatsapp_number
from .errors import MessagingErrorCodes
from .message import Message, MessageBuilder
from .result import (
    ConnectorError,
    ConnectorException,
    ConnectorResult,
    ConnectorStatus,
    HealthReport,
    ReceiveResult,
    SendResult,
    StatusUpdate,
)
from .schema import (
    AuthenticationSpec,
    AuthenticationType,
    Capability,
    ChannelSchema,
    DataType,
    EndpointSpec,
    FieldError,
    ParameterSpec,
    PropertySpec,
    validate_properties,
    validate_settings,
)
from .settings import ConnectionSettings, Secret
from .source import MessageSource, SourceFormat
from .status import ConnectorState, MessageStatus

__all__ = [
    "AuthenticationSpec",
    "AuthenticationType",
    "ButtonReplyContent",
    "Capability",
    "ChannelSchema",
    "ConnectionSettings",
    "ConnectorError",
    "ConnectorException",
    "ConnectorResult",
    "ConnectorState",
    "ConnectorStatus",
    "Content",
    "ContentType",
    "DataType",
    "Endpoint",
    "EndpointSpec",
    "EndpointType",
    "FieldError",
    "HealthReport",
    "LocationContent",
    "MediaContent",
    "MediaType",
    "Message",
    "MessageBuilder",
    "MessageSource",
    "MessageStatus",
    "MessagingErrorCodes",
    "MultipartContent",
    "NumberProblem",
    "ParameterSpec",
    "ParsedNumber",
    "PropertySpec",
    "ReceiveResult",
    "Secret",
    "SendResult",
    "SourceFormat",
    "StatusUpdate",
    "TemplateContent",
    "TextContent",
    "parse_whatsapp_number",
    "validate_properties",
    "validate_settings",
]
