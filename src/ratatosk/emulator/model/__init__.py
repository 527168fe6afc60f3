"""The pure behaviour model of Twilio that the emulator and the fake share (emulator layer).

No I/O here (an import-linter contract forbids aiohttp, asyncio and sockets
in this package): :class:`TwilioModel` takes a clock callable and a
``random.Random`` and answers :class:`Reply` values. Its pieces:

* ``validation`` Create Message checks with Twilio's codes;
* ``messages`` stored Message resources, their JSON and list paging;
* ``progress`` status progression and signed status callbacks;
* ``webhooks`` inbound-message and status-callback form fields;
* ``faults`` scripted and random faults (429, 5xx, resets, slow answers);
* ``content`` Content API templates and WhatsApp approvals;
* ``media`` inbound media Twilio stores, its Media URL and CDN redirect;
* ``records`` the value types (Reply, StatusCallback, Account, SIDs).
"""

from .content import ContentTemplate, stable_content_sid
from .core import MAX_ATTEMPTS, WINDOW, Clock, TwilioModel
from .faults import FaultKind, FaultPlan, ScriptedError
from .media import MEDIA_CDN_BASE, HostedMedia, InboundMedia
from .messages import StoredMessage
from .progress import STATUSES
from .records import (
    API_BASE,
    API_VERSION,
    CONTENT_BASE,
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    SANDBOX_SENDER,
    Account,
    CreateAttempt,
    Reply,
    ResetKind,
    StatusCallback,
    error_body,
)
from .validation import CreateParams, is_geo_action, is_whatsapp_address, validate_create
from .webhooks import Location, inbound_form, status_callback_params

__all__ = [
    "API_BASE",
    "API_VERSION",
    "CONTENT_BASE",
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_AUTH_TOKEN",
    "MAX_ATTEMPTS",
    "MEDIA_CDN_BASE",
    "SANDBOX_SENDER",
    "STATUSES",
    "WINDOW",
    "Account",
    "Clock",
    "ContentTemplate",
    "CreateAttempt",
    "CreateParams",
    "FaultKind",
    "FaultPlan",
    "HostedMedia",
    "InboundMedia",
    "Location",
    "Reply",
    "ResetKind",
    "ScriptedError",
    "StatusCallback",
    "StoredMessage",
    "TwilioModel",
    "error_body",
    "inbound_form",
    "is_geo_action",
    "is_whatsapp_address",
    "stable_content_sid",
    "status_callback_params",
    "validate_create",
]
