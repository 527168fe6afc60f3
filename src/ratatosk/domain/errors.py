"""Standard error codes of the messaging kernel (domain layer).

Codes are plain strings rather than an enum so that provider-specific catalogs
(``TwilioErrorCodes``) can extend the vocabulary without subclassing, and so a
code survives JSON round trips unchanged.
"""

from __future__ import annotations

from typing import Final


class MessagingErrorCodes:
    """Codes every connector may return, whatever its provider.

    ``RATE_LIMIT_EXCEEDED`` is kept as an alias of ``RATE_LIMITED``: the
    reference kernel spells it one way, its documentation the other.
    """

    DOMAIN: Final = "Messaging"

    MESSAGING_ERROR: Final = "MESSAGING_ERROR"
    MESSAGE_ROUTING_FAILED: Final = "MESSAGE_ROUTING_FAILED"
    MESSAGE_SERIALIZATION_FAILED: Final = "MESSAGE_SERIALIZATION_FAILED"
    MESSAGE_DESERIALIZATION_FAILED: Final = "MESSAGE_DESERIALIZATION_FAILED"
    INVALID_CONFIGURATION: Final = "INVALID_CONFIGURATION"
    UNSUPPORTED_CONTENT_TYPE: Final = "UNSUPPORTED_CONTENT_TYPE"
    UNSUPPORTED_OPERATION: Final = "UNSUPPORTED_OPERATION"
    CONNECTOR_NOT_FOUND: Final = "CONNECTOR_NOT_FOUND"
    INVALID_WEBHOOK_DATA: Final = "INVALID_WEBHOOK_DATA"
    INVALID_RECIPIENT: Final = "INVALID_RECIPIENT"
    MISSING_CREDENTIALS: Final = "MISSING_CREDENTIALS"
    INVALID_CREDENTIALS: Final = "INVALID_CREDENTIALS"
    MISSING_SENDER: Final = "MISSING_SENDER"
    MESSAGE_TOO_LONG: Final = "MESSAGE_TOO_LONG"
    CONNECTION_FAILED: Final = "CONNECTION_FAILED"
    SEND_MESSAGE_FAILED: Final = "SEND_MESSAGE_FAILED"
    RATE_LIMITED: Final = "RATE_LIMITED"
    RATE_LIMIT_EXCEEDED: Final = RATE_LIMITED
    INVALID_MESSAGE: Final = "INVALID_MESSAGE"
    INVALID_SENDER: Final = "INVALID_SENDER"
    TIMEOUT: Final = "TIMEOUT"


def catalog(cls: type) -> frozenset[str]:
    """Every code a catalog class defines (its upper-case string constants but ``DOMAIN``)."""
    return frozenset(
        value
        for name, value in vars(cls).items()
        if name.isupper() and name != "DOMAIN" and isinstance(value, str)
    )
