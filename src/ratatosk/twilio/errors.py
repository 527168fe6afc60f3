"""Twilio's error-code catalog and the Twilio -> framework code map (connector layer).

Pure tables, table-tested. The map is derived from ``provider_errors``, the
one table of Twilio codes; every error keeps Twilio's own code as
``provider_code``, so callers can branch on either.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from ..domain.errors import MessagingErrorCodes, catalog
from ..domain.result import ConnectorError
from .provider_errors import PROVIDER_ERRORS, Retry


class TwilioErrorCodes:
    """Codes of the Twilio WhatsApp connector, in domain ``"Twilio"``."""

    DOMAIN: Final = "Twilio"

    INVALID_CONNECTION_SETTINGS: Final = "INVALID_CONNECTION_SETTINGS"
    MISSING_FROM_NUMBER: Final = "MISSING_FROM_NUMBER"
    INVALID_SENDER: Final = "INVALID_SENDER"
    INVALID_MESSAGE: Final = "INVALID_MESSAGE"
    MISSING_CONTENT_SID: Final = "MISSING_CONTENT_SID"
    INVALID_WHATSAPP_NUMBER: Final = "INVALID_WHATSAPP_NUMBER"
    SEND_WHATSAPP_MESSAGE_FAILED: Final = "SEND_WHATSAPP_MESSAGE_FAILED"
    WHATSAPP_STATUS_QUERY_FAILED: Final = "WHATSAPP_STATUS_QUERY_FAILED"
    STATUS_QUERY_FAILED: Final = "STATUS_QUERY_FAILED"
    STATUS_ERROR: Final = "STATUS_ERROR"
    RECEIVE_MESSAGE_FAILED: Final = "RECEIVE_MESSAGE_FAILED"
    RECEIVE_STATUS_FAILED: Final = "RECEIVE_STATUS_FAILED"
    # Beyond the sibling's table:
    TEMPLATE_NOT_APPROVED: Final = "TEMPLATE_NOT_APPROVED"
    TEMPLATE_LOOKUP_FAILED: Final = "TEMPLATE_LOOKUP_FAILED"
    OUTSIDE_CONVERSATION_WINDOW: Final = "OUTSIDE_CONVERSATION_WINDOW"
    SEND_OUTCOME_UNKNOWN: Final = "SEND_OUTCOME_UNKNOWN"
    INVALID_SIGNATURE: Final = "INVALID_SIGNATURE"
    SEND_IN_PROGRESS: Final = "SEND_IN_PROGRESS"
    MESSAGE_ID_REUSED: Final = "MESSAGE_ID_REUSED"
    # ``recheck_message`` under at-most-once delivery: Twilio has no such message.
    MESSAGE_NOT_SENT: Final = "MESSAGE_NOT_SENT"
    # Fetching inbound media (``fetch_media``):
    MEDIA_URL_NOT_ALLOWED: Final = "MEDIA_URL_NOT_ALLOWED"
    MEDIA_REDIRECT_NOT_ALLOWED: Final = "MEDIA_REDIRECT_NOT_ALLOWED"
    MEDIA_TOO_LARGE: Final = "MEDIA_TOO_LARGE"
    MEDIA_FETCH_TIMEOUT: Final = "MEDIA_FETCH_TIMEOUT"
    MEDIA_FETCH_FAILED: Final = "MEDIA_FETCH_FAILED"
    STATE_STORE_UNAVAILABLE: Final = "STATE_STORE_UNAVAILABLE"
    # The send queue holds neither the entry nor a result for a ticket (expired, or lost):
    QUEUED_MESSAGE_UNKNOWN: Final = "QUEUED_MESSAGE_UNKNOWN"


_M = MessagingErrorCodes

#: Twilio REST error code -> framework code, from ``provider_errors.PROVIDER_ERRORS``.
#: Anything absent -> SEND_MESSAGE_FAILED.
PROVIDER_CODE_MAP: Final[Mapping[int, str]] = MappingProxyType(
    {row.code: row.kernel_code for row in PROVIDER_ERRORS}
)

#: Codes after which a retry of the *same* request is safe and useful (retry class "now").
RETRYABLE_PROVIDER_CODES: Final = frozenset(
    row.code for row in PROVIDER_ERRORS if row.retry is Retry.NOW
)


def map_provider_code(code: int | None, http_status: int | None = None) -> str:
    """The framework code for a Twilio error code (and HTTP status when code is absent)."""
    if code is not None and code in PROVIDER_CODE_MAP:
        return PROVIDER_CODE_MAP[code]
    if http_status == 429:
        return _M.RATE_LIMITED
    if http_status == 401:
        return _M.INVALID_CREDENTIALS
    return _M.SEND_MESSAGE_FAILED


_TWILIO_CODES: Final = catalog(TwilioErrorCodes)


def error(
    code: str, message: str, *, provider_code: int | None = None, **details: Any
) -> ConnectorError:
    """The one way to build a coded error: its domain follows from its code.

    A code in :class:`TwilioErrorCodes` belongs to domain ``"Twilio"``, any
    other to the kernel's, so a caller can never pair a code with the wrong domain.
    """
    domain = TwilioErrorCodes.DOMAIN if code in _TWILIO_CODES else MessagingErrorCodes.DOMAIN
    return ConnectorError(
        code=code, message=message, domain=domain, provider_code=provider_code, details=details
    )
