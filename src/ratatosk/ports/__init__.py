"""Ports: what the kernel and the Twilio connector need from the outside world.

Each port is a ``typing.Protocol`` named for its role. Its data types live here
too, so an adapter depends on the port and never the other way round.

One module per concern; every public name is re-exported here, so callers
import from ``ratatosk.ports`` and never need to know which module holds it:

* ``messaging``: Twilio's REST API (``MessagingApi``, its requests and answers,
  ``ApiError``, ``TransportError``, ``Credentials``, ``HasRequestTimeout``);
* ``webhooks``: the webhook gate (``SignatureValidator``, ``Deduplicator``);
* ``templates``: ``TemplateCatalog`` and ``TemplateCache``;
* ``clock``: ``Clock`` (and ``HasClock``);
* ``telemetry``: ``Telemetry`` and what it is told;
* ``sending``: ``RateLimiter`` and ``SendLedger``;
* ``state``: ``StateStoreError``, ``ConversationWindow``, ``StatusTracker``;
* ``outbound_queue``: ``OutboundQueue``;
* ``media``: ``MediaFetcher`` and ``MediaPolicy``.
"""

from __future__ import annotations

from .clock import Clock, HasClock
from .media import (
    TWILIO_MEDIA_HOSTS,
    MediaFailure,
    MediaFetcher,
    MediaFetchError,
    MediaPolicy,
    OpenedMedia,
)
from .messaging import (
    AccountResource,
    ApiError,
    CreateMessageRequest,
    Credentials,
    HasRequestTimeout,
    MessagePage,
    MessageQuery,
    MessageResource,
    MessagingApi,
    TransportError,
)
from .outbound_queue import DeadLetter, OutboundQueue, QueuedSend, QueueStats
from .sending import (
    DEFAULT_SEND_LEASE,
    LaneMember,
    LedgerEntry,
    LedgerState,
    RateLimiter,
    SendLedger,
)
from .state import ConversationWindow, StateStoreError, StatusEvent, StatusTimeline, StatusTracker
from .telemetry import (
    SENT,
    RetryNotice,
    SendEnd,
    SendObservation,
    Telemetry,
    WebhookAnswer,
    WebhookObservation,
)
from .templates import (
    HasTemplateCatalog,
    TemplateCache,
    TemplateCatalog,
    TemplateInfo,
    TemplateLookupError,
)
from .webhooks import Claim, Deduplicator, SignatureValidator

__all__ = [
    "DEFAULT_SEND_LEASE",
    "SENT",
    "TWILIO_MEDIA_HOSTS",
    "AccountResource",
    "ApiError",
    "Claim",
    "Clock",
    "ConversationWindow",
    "CreateMessageRequest",
    "Credentials",
    "DeadLetter",
    "Deduplicator",
    "HasClock",
    "HasRequestTimeout",
    "HasTemplateCatalog",
    "LaneMember",
    "LedgerEntry",
    "LedgerState",
    "MediaFailure",
    "MediaFetchError",
    "MediaFetcher",
    "MediaPolicy",
    "MessagePage",
    "MessageQuery",
    "MessageResource",
    "MessagingApi",
    "OpenedMedia",
    "OutboundQueue",
    "QueueStats",
    "QueuedSend",
    "RateLimiter",
    "RetryNotice",
    "SendEnd",
    "SendLedger",
    "SendObservation",
    "SignatureValidator",
    "StateStoreError",
    "StatusEvent",
    "StatusTimeline",
    "StatusTracker",
    "Telemetry",
    "TemplateCache",
    "TemplateCatalog",
    "TemplateInfo",
    "TemplateLookupError",
    "TransportError",
    "WebhookAnswer",
    "WebhookObservation",
]
