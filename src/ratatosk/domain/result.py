"""Results of connector operations (domain layer).

Expected failures (bad input, the provider said no, the network gave up) are
values, not exceptions: a batch is then simply a tuple of results, results
serialise to JSON with their codes, and mypy sees every failure path.
``unwrap()`` is there for callers who would rather have an exception.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import attrs

from ._frozen import frozen_mapping
from .message import Message
from .status import ConnectorState, MessageStatus

T = TypeVar("T")
U = TypeVar("U")

_EMPTY: Mapping[str, Any] = frozen_mapping(None)


@attrs.frozen(kw_only=True)
class ConnectorError:
    """Why an operation failed: a stable ``code`` to branch on, never a secret.

    ``provider_code`` keeps Twilio's own numeric code (21211, 20429 ...) when
    Twilio gave one, so callers can be more precise than the mapped ``code``.
    """

    code: str
    message: str
    domain: str = "Messaging"
    provider_code: int | None = None
    details: Mapping[str, Any] = attrs.field(default=_EMPTY, converter=frozen_mapping)

    def with_details(self, **extra: Any) -> ConnectorError:
        """The same error with more structured details (later keys win)."""
        return attrs.evolve(self, details={**self.details, **extra})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, for CLIs and logs."""
        return {
            "code": self.code,
            "domain": self.domain,
            "message": self.message,
            "provider_code": self.provider_code,
            "details": _jsonable(self.details),
        }


class ConnectorException(Exception):
    """Raised by :meth:`ConnectorResult.unwrap` on a failed result."""

    def __init__(self, error: ConnectorError) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error


@attrs.frozen
class ConnectorResult(Generic[T]):
    """Either a value or a :class:`ConnectorError`; never both, never neither."""

    value: T | None = None
    error: ConnectorError | None = None

    def __attrs_post_init__(self) -> None:
        if self.error is not None and self.value is not None:
            raise ValueError("a result holds a value or an error, not both")

    @classmethod
    def success(cls, value: T) -> ConnectorResult[T]:
        return cls(value, None)

    @classmethod
    def failure(cls, error: ConnectorError) -> ConnectorResult[T]:
        return cls(None, error)

    @classmethod
    def fail(
        cls,
        code: str,
        message: str,
        *,
        domain: str = "Messaging",
        provider_code: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> ConnectorResult[T]:
        """Shorthand for ``failure(ConnectorError(...))``."""
        error = ConnectorError(
            code=code,
            message=message,
            domain=domain,
            provider_code=provider_code,
            details=details or {},
        )
        return cls(None, error)

    @property
    def successful(self) -> bool:
        return self.error is None

    def unwrap(self) -> T:
        """The value, or :class:`ConnectorException` carrying the error."""
        if self.error is not None:
            raise ConnectorException(self.error)
        return self.value  # type: ignore[return-value]


@attrs.frozen(kw_only=True)
class SendResult:
    """What the provider said when it accepted a message."""

    message_id: str
    provider_message_id: str
    status: MessageStatus
    timestamp: dt.datetime
    data: Mapping[str, Any] = attrs.field(default=_EMPTY, converter=frozen_mapping)


@attrs.frozen(kw_only=True)
class StatusUpdate:
    """One status report for a message: from a query or a status callback.

    ``message_id`` is the provider's id (Twilio's SM/MM SID).
    """

    message_id: str
    status: MessageStatus
    timestamp: dt.datetime
    error_code: int | None = None
    error_message: str | None = None
    data: Mapping[str, Any] = attrs.field(default=_EMPTY, converter=frozen_mapping)


@attrs.frozen(kw_only=True)
class ReceiveResult:
    """Inbound messages parsed out of one webhook delivery."""

    messages: tuple[Message, ...]
    data: Mapping[str, Any] = attrs.field(default=_EMPTY, converter=frozen_mapping)


@attrs.frozen(kw_only=True)
class ConnectorStatus:
    """A snapshot of a connector, for dashboards."""

    state: ConnectorState
    channel: str
    uptime: dt.timedelta
    data: Mapping[str, Any] = attrs.field(default=_EMPTY, converter=frozen_mapping)


@attrs.frozen(kw_only=True)
class HealthReport:
    """Whether a connector can do its job now, and what is wrong if not."""

    healthy: bool
    state: ConnectorState
    checked_at: dt.datetime
    issues: tuple[str, ...] = ()
    data: Mapping[str, Any] = attrs.field(default=_EMPTY, converter=frozen_mapping)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
