"""The pure Twilio wire codec (connector layer): bytes' meaning, no I/O, split by concern.

* :mod:`.rest` - Twilio's JSON answers (messages, pages, accounts, errors,
  templates) and the status and date vocabularies;
* :mod:`.form` - urlencoded bodies, parsed and encoded;
* :mod:`.webhooks` - inbound messages and status callbacks to kernel types.

Adapters move bytes, this package gives them meaning. Everything is
importable from here, as ``wire.decode_message`` and the like.
"""

from __future__ import annotations

from .form import MAX_FORM_FIELDS, Form, encode_form, parse_form
from .rest import (
    TWILIO_STATUS_MAP,
    WireError,
    choose_template,
    decode_account,
    decode_api_error,
    decode_json,
    decode_message,
    decode_message_page,
    decode_template,
    format_rfc2822,
    map_status,
    parse_retry_after,
    parse_rfc2822,
)
from .times import datetime_from_iso
from .webhooks import (
    SINGLE_VALUE_FIELDS,
    decode_inbound,
    decode_receive,
    decode_status,
    decode_status_callback,
)

__all__ = [
    "MAX_FORM_FIELDS",
    "SINGLE_VALUE_FIELDS",
    "TWILIO_STATUS_MAP",
    "Form",
    "WireError",
    "choose_template",
    "datetime_from_iso",
    "decode_account",
    "decode_api_error",
    "decode_inbound",
    "decode_json",
    "decode_message",
    "decode_message_page",
    "decode_receive",
    "decode_status",
    "decode_status_callback",
    "decode_template",
    "encode_form",
    "format_rfc2822",
    "map_status",
    "parse_form",
    "parse_retry_after",
    "parse_rfc2822",
]
