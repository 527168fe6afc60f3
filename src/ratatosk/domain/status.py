"""Message and connector states (domain layer).

``MessageStatus`` carries a rank because Twilio sends status callbacks out of
order and never sends one for the first status: a caller that keeps the
highest-ranked status it has seen never regresses from ``DELIVERED`` to
``SENT``.
"""

from __future__ import annotations

import enum


class MessageStatus(enum.Enum):
    """Where a message is in its life, in the kernel's provider-neutral words."""

    UNKNOWN = "Unknown"
    RECEIVING = "Receiving"
    RECEIVED = "Received"
    SCHEDULED = "Scheduled"
    QUEUED = "Queued"
    ROUTED = "Routed"
    SENDING = "Sending"
    SENT = "Sent"
    PARTIALLY_DELIVERED = "PartiallyDelivered"
    DELIVERED = "Delivered"
    READ = "Read"
    ROUTE_FAILED = "RouteFailed"
    DELIVERY_FAILED = "DeliveryFailed"
    CANCELED = "Canceled"
    DELETED = "Deleted"

    @property
    def rank(self) -> int:
        """Position in the lifecycle; later statuses have higher ranks."""
        return _RANK[self]

    @property
    def is_final(self) -> bool:
        """True when no further delivery progress can follow (read counts as final)."""
        return self in _FINAL

    @property
    def is_failure(self) -> bool:
        """True for the statuses that mean the message did not arrive."""
        return self in _FAILURES

    def supersedes(self, previous: MessageStatus) -> bool:
        """Whether a callback reporting ``self`` should replace ``previous``.

        Equal ranks do not supersede each other, so a duplicate or a late
        ``undelivered`` after ``delivered`` is ignored.
        """
        return self.rank > previous.rank


_RANK: dict[MessageStatus, int] = {
    MessageStatus.UNKNOWN: 0,
    MessageStatus.RECEIVING: 1,
    MessageStatus.RECEIVED: 2,
    MessageStatus.SCHEDULED: 1,
    MessageStatus.QUEUED: 2,
    MessageStatus.ROUTED: 3,
    MessageStatus.SENDING: 4,
    MessageStatus.SENT: 5,
    MessageStatus.PARTIALLY_DELIVERED: 6,
    MessageStatus.DELIVERED: 7,
    MessageStatus.READ: 8,
    MessageStatus.ROUTE_FAILED: 7,
    MessageStatus.DELIVERY_FAILED: 7,
    MessageStatus.CANCELED: 7,
    MessageStatus.DELETED: 9,
}
_FAILURES = frozenset(
    {MessageStatus.ROUTE_FAILED, MessageStatus.DELIVERY_FAILED, MessageStatus.CANCELED}
)
_FINAL = _FAILURES | {MessageStatus.READ, MessageStatus.DELETED, MessageStatus.RECEIVED}


class ConnectorState(enum.Enum):
    """Lifecycle of a connector: created, made ready by ``initialize``, shut down."""

    UNINITIALIZED = "Uninitialized"
    INITIALIZING = "Initializing"
    READY = "Ready"
    ERROR = "Error"
    DISCONNECTED = "Disconnected"
    SHUTTING_DOWN = "ShuttingDown"
    SHUTDOWN = "Shutdown"
