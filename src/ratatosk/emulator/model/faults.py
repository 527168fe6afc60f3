"""Faults the model decides and its faces act out (emulator layer, pure).

Two sources: a queue of scripted faults (``fail_next``, ``reset_next``) that
apply to the next creates in order, and a :class:`FaultPlan` of rates drawn
from the model's injected ``random.Random``, so a seeded run is repeatable.

What each fault means for the message (this is what makes duplicates
measurable when a client retries):

* ``THROTTLE`` 429 / 20429 with ``Retry-After``: not processed, nothing stored.
* ``UNAVAILABLE`` 503 / 20503 with ``Retry-After``: not processed.
* ``SERVER_ERROR`` 500 / 20500: the message **was stored** before the error,
  Twilio's ambiguous 5xx (twilio-facts §5, class A).
* ``RESET_BEFORE_STORE`` / ``RESET_AFTER_STORE``: the connection drops; the
  message is stored only in the second case.
* ``SLOW``: a normal answer, delivered after ``slow_seconds``.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import attrs

from .records import Reply, ResetKind, error_reply


class FaultKind(enum.Enum):
    THROTTLE = "429"
    SERVER_ERROR = "500"
    UNAVAILABLE = "503"
    RESET_BEFORE_STORE = "reset-before-store"
    RESET_AFTER_STORE = "reset-after-store"
    SLOW = "slow"


#: Twilio's wording for codes tests often script; others get a generic text.
SCRIPTED_MESSAGES: Final[Mapping[int, str]] = MappingProxyType(
    {
        20001: "Invalid parameter",
        20003: "Authentication Error - invalid username",
        20429: "Too Many Requests",
        20500: "An internal server error has occurred",
        20503: "Service Unavailable",
        21211: "Invalid 'To' Phone Number",
        21408: "Permission to send an SMS has not been enabled for the region indicated",
        21610: "Attempt to send to unsubscribed recipient",
        21614: "'To' number is not a valid mobile number",
        63007: "Twilio could not find a Channel with the specified From address",
        63018: "Rate limit exceeded for Channel",
    }
)


@attrs.frozen(kw_only=True)
class ScriptedError:
    """An error answer scripted with ``fail_next``; stored first only when ``after_store``.

    ``after_store`` is the ambiguous 5xx: Twilio created the message, then
    answered an error.
    """

    code: int
    status: int = 400
    message: str | None = None
    retry_after: float | None = None
    after_store: bool = False

    def reply(self) -> Reply:
        text = self.message or SCRIPTED_MESSAGES.get(self.code, f"Twilio error {self.code}")
        return error_reply(self.code, text, self.status, retry_after=self.retry_after)


def _rate(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be within 0..1, not {value!r}")


@attrs.frozen(kw_only=True)
class FaultPlan:
    """Probabilities (0..1, summing to at most 1) of each fault on a create call."""

    throttle: float = attrs.field(default=0.0, validator=_rate)
    server_error: float = attrs.field(default=0.0, validator=_rate)
    unavailable: float = attrs.field(default=0.0, validator=_rate)
    reset_before_store: float = attrs.field(default=0.0, validator=_rate)
    reset_after_store: float = attrs.field(default=0.0, validator=_rate)
    slow: float = attrs.field(default=0.0, validator=_rate)
    retry_after: float | None = 1.0
    slow_seconds: float = 2.0

    def __attrs_post_init__(self) -> None:
        if sum(rate for _, rate in self._rates()) > 1.0 + 1e-9:
            raise ValueError("fault rates must sum to at most 1")

    def _rates(self) -> tuple[tuple[FaultKind, float], ...]:
        return (
            (FaultKind.THROTTLE, self.throttle),
            (FaultKind.SERVER_ERROR, self.server_error),
            (FaultKind.UNAVAILABLE, self.unavailable),
            (FaultKind.RESET_BEFORE_STORE, self.reset_before_store),
            (FaultKind.RESET_AFTER_STORE, self.reset_after_store),
            (FaultKind.SLOW, self.slow),
        )

    @property
    def active(self) -> bool:
        return any(rate > 0 for _, rate in self._rates())

    def draw(self, rng: random.Random) -> FaultKind | None:
        """One fault (or None) for one create; draws nothing when the plan is idle."""
        if not self.active:
            return None
        roll = rng.random()
        for kind, rate in self._rates():
            if roll < rate:
                return kind
            roll -= rate
        return None


def fault_reply(kind: FaultKind, plan: FaultPlan) -> Reply | None:
    """The answer for a fault decided before storing (None: go on and store)."""
    if kind is FaultKind.THROTTLE:
        return error_reply(20429, "Too Many Requests", 429, retry_after=plan.retry_after)
    if kind is FaultKind.UNAVAILABLE:
        return error_reply(20503, "Service Unavailable", 503, retry_after=plan.retry_after)
    if kind is FaultKind.RESET_BEFORE_STORE:
        return Reply(status=0, reset=ResetKind.BEFORE_STORE)
    return None


def after_store(kind: FaultKind | None, plan: FaultPlan, success: Reply) -> Reply:
    """The answer once the message is stored, given the fault drawn for this call."""
    if kind is FaultKind.SERVER_ERROR:
        return error_reply(20500, "An internal server error has occurred", 500)
    if kind is FaultKind.RESET_AFTER_STORE:
        return attrs.evolve(success, reset=ResetKind.AFTER_STORE)
    if kind is FaultKind.SLOW:
        return attrs.evolve(success, delay=plan.slow_seconds)
    return success


__all__ = ["FaultKind", "FaultPlan", "ScriptedError", "after_store", "fault_reply"]
