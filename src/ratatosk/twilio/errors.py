"""Twilio's error-code catalog and the Twilio -> framework code map (connector layer).

Pure tables, table-tested. The map keeps Twilio's own code as
``provider_code`` on every error, so callers can branch on either.
"""

from __future__ import annotations

from typing import Any, Final

from ..domain.errors import MessagingErrorCodes, catalog
from ..domain.result import ConnectorError


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


_M = MessagingErrorCodes

#: Twilio REST error code -> framework code. Anything absent -> SEND_MESSAGE_FAILED.
PROVIDER_CODE_MAP: Final[dict[int, str]] = {
    21211: _M.INVALID_RECIPIENT,  # invalid To
    21604: _M.INVALID_RECIPIENT,  # To missing
    21610: _M.INVALID_RECIPIENT,  # recipient unsubscribed (STOP)
    63003: _M.INVALID_RECIPIENT,  # To is not on WhatsApp
    63024: _M.INVALID_RECIPIENT,  # invalid message recipient
    21614: _M.INVALID_SENDER,  # not a mobile number
    21408: _M.INVALID_SENDER,  # region not permitted
    21603: _M.INVALID_SENDER,  # no From / MessagingServiceSid
    63007: _M.INVALID_SENDER,  # From is not a WhatsApp sender of the account
    20001: _M.INVALID_MESSAGE,
    21602: _M.INVALID_MESSAGE,  # no Body, MediaUrl or ContentSid
    21617: _M.INVALID_MESSAGE,  # Body over 1600 characters
    21620: _M.INVALID_MESSAGE,  # bad media URL
    21623: _M.INVALID_MESSAGE,  # too many media
    21654: _M.INVALID_MESSAGE,  # ContentVariables without ContentSid
    21655: _M.INVALID_MESSAGE,  # bad ContentSid
    21656: _M.INVALID_MESSAGE,  # bad ContentVariables
    21658: _M.INVALID_MESSAGE,  # a parameter over its limit
    20003: _M.INVALID_CREDENTIALS,  # 401
    20429: _M.RATE_LIMITED,  # too many concurrent requests; safe to retry
    63018: _M.RATE_LIMITED,  # WhatsApp rate or tier limit
    63016: TwilioErrorCodes.OUTSIDE_CONVERSATION_WINDOW,  # free-form outside 24 h
}

#: Codes after which a retry of the *same* request is safe and useful.
RETRYABLE_PROVIDER_CODES: Final = frozenset({20429})


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
