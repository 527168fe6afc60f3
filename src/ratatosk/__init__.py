"""ratatosk: a messaging kernel with a WhatsApp-over-Twilio connector.

The top-level package re-exports the pure kernel; the connector lives in
``ratatosk.twilio`` and test doubles in ``ratatosk.testing``.
"""

__version__ = "0.1.0"

from .domain.content import (
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
from .domain.endpoint import (
    Endpoint,
    EndpointType,
    NumberProblem,
    ParsedNumber,
    parse_whatsapp_number,
)
from .domain.errors import MessagingErrorCodes
from .domain.message import Message, MessageBuilder
from .domain.result import (
    ConnectorError,
    ConnectorException,
    ConnectorResult,
    ConnectorStatus,
    HealthReport,
    ReceiveResult,
    SendResult,
    StatusUpdate,
)
from .domain.schema import (
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
from .domain.settings import ConnectionSettings, Secret
from .domain.source import MessageSource, SourceFormat
from .domain.status import ConnectorState, MessageStatus

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
