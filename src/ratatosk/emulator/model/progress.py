"""Status progression and signed status callbacks (emulator layer, pure).

The half of :class:`~ratatosk.emulator.model.TwilioModel` that moves stored
messages along ``queued -> sending -> sent -> delivered -> read`` (or to
``undelivered`` with an error code), one step per ``step_seconds`` of the
injected clock, in time order across messages (a heap), and queues one
:class:`StatusCallback` per change for messages with a StatusCallback URL.
No callback is queued for the initial status, as Twilio sends none.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

from ...twilio.signature import compute_signature
from .messages import StoredMessage
from .records import Account, SidFactory, StatusCallback, async_error_message
from .webhooks import status_callback_params

#: Every status of Twilio's ``message_enum_status``.
STATUSES: Final = frozenset(
    {
        "accepted", "scheduled", "canceled", "queued", "sending", "sent", "delivered",
        "undelivered", "failed", "read", "receiving", "received", "partially_delivered",
    }
)  # fmt: skip
SUCCESS_PATH: Final = ("accepted", "queued", "sending", "sent", "delivered", "read")
FINAL_CHOICES: Final = ("sent", "delivered", "read")


class ProgressionMixin:
    """Advances statuses and queues callbacks; needs the model's stores below."""

    _messages: dict[str, StoredMessage]
    _accounts: dict[str, Account]
    _heap: list[tuple[dt.datetime, int, str]]
    _callbacks: deque[StatusCallback]
    _sids: SidFactory
    main_account: Account
    clock: Callable[[], dt.datetime]
    step: dt.timedelta
    final_status: str
    service_sender: str

    def path_after(self, status: str, failure: int | None) -> list[tuple[str, int | None]]:
        """The statuses still to come after ``status``, ending ``undelivered`` on failure."""
        if status not in SUCCESS_PATH:
            return []
        end = SUCCESS_PATH.index("sent" if failure is not None else self.final_status)
        start = SUCCESS_PATH.index(status) + 1
        path: list[tuple[str, int | None]] = [(s, None) for s in SUCCESS_PATH[start : end + 1]]
        if failure is not None:
            path.append(("undelivered", failure))
        return path

    def schedule(self, message: StoredMessage, when: dt.datetime) -> None:
        if message.plan:
            message.next_at = when
            heapq.heappush(self._heap, (when, message.seq, message.sid))
        else:
            message.next_at = None

    def advance(self, now: dt.datetime | None = None) -> int:
        """Move every message forward to ``now`` (default: the clock); returns status changes.

        Changes happen in time order, one ``step_seconds`` apart per message;
        each queues a callback when the message has a StatusCallback URL.
        """
        now = now or self.clock()
        changes = 0
        while self._heap and self._heap[0][0] <= now:
            when, _, sid = heapq.heappop(self._heap)
            message = self._messages[sid]
            if message.next_at != when or not message.plan:
                continue  # superseded by set_status
            status, code = message.plan.pop(0)
            self._apply(message, status, code, when)
            self.schedule(message, when + self.step)
            changes += 1
        return changes

    def due_callbacks(self) -> list[StatusCallback]:
        """Drain the callbacks queued so far, oldest first."""
        drained = list(self._callbacks)
        self._callbacks.clear()
        return drained

    @property
    def pending_callbacks(self) -> tuple[StatusCallback, ...]:
        return tuple(self._callbacks)

    def set_status(self, sid: str, status: str, error_code: int | None = None) -> None:
        """Force a status now (and queue its callback); progression resumes after it.

        Raises KeyError for an unknown SID and ValueError for an unknown status.
        """
        message = self._messages.get(sid)
        if message is None:
            raise KeyError(f"no message {sid!r} in the model")
        if status not in STATUSES:
            raise ValueError(f"{status!r} is not a Twilio message status")
        now = self.clock()
        self._apply(message, status, error_code, now)
        message.plan = [] if error_code is not None else self.path_after(status, None)
        self.schedule(message, now + self.step)

    def queue_callbacks(self, sid: str, statuses: Sequence[str]) -> None:
        """Queue status callbacks for ``sid`` in exactly this order, the message unchanged.

        Twilio's callbacks arrive out of order and twice; this scripts that
        (``["read", "sent", "delivered", "delivered"]``). Each is a distinct
        delivery with its own idempotency token. Raises KeyError for an unknown
        SID or one without a StatusCallback, ValueError for an unknown status.
        """
        message = self._messages.get(sid)
        if message is None or not message.status_callback:
            raise KeyError(f"no message {sid!r} with a StatusCallback in the model")
        unknown = [s for s in statuses if s not in STATUSES]
        if unknown:
            raise ValueError(f"not Twilio message statuses: {unknown!r}")
        for status in statuses:
            saved = message.status
            message.status = status
            self._callbacks.append(self._callback(message))
            message.status = saved

    def _apply(
        self, message: StoredMessage, status: str, code: int | None, when: dt.datetime
    ) -> None:
        message.status = status
        message.date_updated = when
        message.error_code = code
        message.error_message = async_error_message(code) if code is not None else None
        if message.from_ is None and status not in ("accepted", "scheduled"):
            message.from_ = self.service_sender
            message.num_segments = 1
        if status in ("sent", "delivered", "read") and message.price is None:
            message.price = "-0.00500"
        if message.status_callback:
            self._callbacks.append(self._callback(message))

    def _callback(self, message: StoredMessage) -> StatusCallback:
        assert message.status_callback is not None
        params = self.status_callback_form(message.sid, message.status, message.error_code)
        account = self._accounts[message.account_sid]
        return StatusCallback(
            url=message.status_callback,
            params=params,
            idempotency_token=self._sids.token(),
            signature=compute_signature(account.auth_token, message.status_callback, params),
        )

    def status_callback_form(
        self, sid: str, status: str, error_code: int | None = None
    ) -> dict[str, str]:
        """The callback fields for a message (placeholders when the SID is unknown)."""
        message = self._messages.get(sid)
        account = self._accounts[message.account_sid] if message else self.main_account
        return status_callback_params(
            sid=sid,
            account_sid=account.sid,
            from_=(message.from_ if message else None) or self.service_sender,
            to=message.to if message else "whatsapp:+15550001111",
            status=status,
            channel_install_sid=account.channel_install_sid,
            error_code=error_code,
            error_message=async_error_message(error_code) if error_code is not None else None,
            messaging_service_sid=message.messaging_service_sid if message else None,
        )


__all__ = ["FINAL_CHOICES", "STATUSES", "SUCCESS_PATH", "ProgressionMixin"]
