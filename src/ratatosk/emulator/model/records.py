"""Value types of the Twilio behaviour model (emulator layer, pure).

What the model hands to its two faces: a :class:`Reply` (status, JSON body,
headers and the fault the face must act out), :class:`StatusCallback`
records to deliver, accounts, and the error JSON Twilio uses. Also the SID
generator, so every identifier comes from the injected ``random.Random``.
"""

from __future__ import annotations

import datetime as dt
import enum
import random
import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import attrs

from ...domain._frozen import frozen_mapping
from ...twilio.wire import format_rfc2822

API_VERSION: Final = "2010-04-01"
API_BASE: Final = "https://api.twilio.com"
CONTENT_BASE: Final = "https://content.twilio.com"
#: The default account of a fresh model (and of ``FakeTwilio``): clearly fake, valid shape.
DEFAULT_ACCOUNT_SID: Final = "AC" + "0123456789abcdef" * 2
DEFAULT_AUTH_TOKEN: Final = "emulator-auth-token-0123456789ab"  # noqa: S105 - a test token
#: Twilio's WhatsApp sandbox sender, the default sender of Messaging Service sends.
SANDBOX_SENDER: Final = "whatsapp:+14155238886"

Json = dict[str, Any]


class ResetKind(enum.Enum):
    """A connection reset the HTTP face acts out (and the fake turns into TransportError)."""

    BEFORE_STORE = "before-store"
    AFTER_STORE = "after-store"


@attrs.frozen(kw_only=True)
class Reply:
    """One answer of the model: what the HTTP face serialises, or the fake decodes.

    ``reset`` set means: drop the connection instead of answering (the
    message was stored when it is ``AFTER_STORE``). ``delay`` is how long a
    "slow" answer should take, in seconds; the in-process fake ignores it.
    """

    status: int
    body: Json | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_mapping)
    reset: ResetKind | None = None
    delay: float = 0.0

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and self.reset is None


def error_body(code: int, message: str, status: int) -> Json:
    """Twilio's legacy error JSON."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def error_reply(
    code: int,
    message: str,
    status: int = 400,
    *,
    retry_after: float | None = None,
) -> Reply:
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["Retry-After"] = _seconds_text(retry_after)
    return Reply(status=status, body=error_body(code, message, status), headers=headers)


def not_found(path: str) -> Reply:
    """404 / 20404 with the message Twilio uses."""
    return error_reply(20404, f"The requested resource {path} was not found", 404)


def _seconds_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


@attrs.frozen(kw_only=True)
class Account:
    """A Twilio account the model knows; the token is the test's own, never shown."""

    sid: str
    auth_token: str = attrs.field(repr=False)
    friendly_name: str = "ratatosk emulator"
    status: str = "active"
    type: str = "Full"
    date_created: dt.datetime
    channel_install_sid: str

    def to_json(self) -> Json:
        base = f"/{API_VERSION}/Accounts/{self.sid}"
        return {
            # Twilio returns the token here; the emulator never does.
            "auth_token": None,
            "date_created": format_rfc2822(self.date_created),
            "date_updated": format_rfc2822(self.date_created),
            "friendly_name": self.friendly_name,
            "owner_account_sid": self.sid,
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"messages": f"{base}/Messages.json"},
            "type": self.type,
            "uri": f"{base}.json",
        }


@attrs.frozen(kw_only=True)
class StatusCallback:
    """A status callback due for delivery, exactly as Twilio would POST it.

    ``params`` are the form fields (one value each); ``signature`` is the
    ``X-Twilio-Signature`` over ``url`` + ``params`` with the account token;
    a retry must reuse ``idempotency_token``.
    """

    url: str
    params: Mapping[str, str] = attrs.field(converter=frozen_mapping)
    idempotency_token: str
    signature: str

    @property
    def sid(self) -> str:
        return self.params["MessageSid"]

    @property
    def status(self) -> str:
        return self.params["MessageStatus"]

    @property
    def headers(self) -> dict[str, str]:
        return {
            "User-Agent": "TwilioProxy/1.1",
            "Accept": "*/*",
            "Content-Type": "application/x-www-form-urlencoded",
            "I-Twilio-Idempotency-Token": self.idempotency_token,
            "X-Twilio-Signature": self.signature,
        }


@attrs.frozen(kw_only=True)
class CreateAttempt:
    """One Create Message call as the model saw it: when, for whom, what it answered.

    ``fault`` is the injected fault (a ``FaultKind`` value, or ``scripted`` for
    a ``fail_next`` error), ``status`` the HTTP status answered (0 when the
    connection was dropped) and ``sid`` the message stored by this call, if
    any. Lets a load test measure duplicates and ``Retry-After`` compliance.
    """

    at: dt.datetime
    to: str | None
    body: str | None
    fault: str | None
    status: int
    sid: str | None
    retry_after: str | None = None


class SidFactory:
    """Twilio-shaped identifiers (prefix + 32 lowercase hex) from one seeded Random."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def sid(self, prefix: str) -> str:
        return f"{prefix}{self._rng.getrandbits(128):032x}"

    def token(self) -> str:
        """A UUID4-shaped idempotency token."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


#: Text Twilio puts in ``error_message`` for the asynchronous codes the model produces.
ASYNC_ERROR_MESSAGES: Final[Mapping[int, str]] = MappingProxyType(
    {
        30008: "Unknown error",
        63003: "Channel could not find To address",
        63012: "Channel provider returned an internal service error",
        63016: (
            "Failed to send freeform message because you are outside the allowed window. "
            "If you are using WhatsApp, please use a Message Template."
        ),
        63018: "Rate limit exceeded for Channel",
        63024: "Invalid message recipient",
        63027: "Template does not exist for a language and locale",
        63032: "User's number is part of an experiment",
    }
)


def async_error_message(code: int) -> str:
    return ASYNC_ERROR_MESSAGES.get(code, f"Message delivery failed ({code})")


__all__ = [
    "API_BASE",
    "API_VERSION",
    "ASYNC_ERROR_MESSAGES",
    "CONTENT_BASE",
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_AUTH_TOKEN",
    "SANDBOX_SENDER",
    "Account",
    "CreateAttempt",
    "Json",
    "Reply",
    "ResetKind",
    "SidFactory",
    "StatusCallback",
    "async_error_message",
    "error_body",
    "error_reply",
    "not_found",
]
