"""Endpoints and WhatsApp phone-number normalisation (domain layer).

A WhatsApp address is ``whatsapp:`` followed by an E.164 number. We accept
what ``phonenumbers`` calls *possible* (right length for the country, not a
local-only form) so that documentation numbers such as ``+15550002222`` work;
full validity against numbering plans is an opt-in (``strict=True``), because
plans lag behind reality and a wrong refusal loses a customer message.
"""

from __future__ import annotations

import enum
import functools

import attrs
import phonenumbers

WHATSAPP_PREFIX = "whatsapp:"


class EndpointType(enum.Enum):
    """Kinds of address the kernel knows; a channel schema says which it accepts."""

    PHONE_NUMBER = "PhoneNumber"
    EMAIL_ADDRESS = "EmailAddress"
    URL = "Url"
    TOPIC = "Topic"
    ID = "Id"
    USER_ID = "UserId"
    APPLICATION_ID = "ApplicationId"
    DEVICE_ID = "DeviceId"
    LABEL = "Label"
    ANY = "Any"


@attrs.frozen
class Endpoint:
    """An address of a given type; phone addresses are kept as the caller gave them.

    Normalisation happens when a connector validates a message, so a builder
    never loses what the caller typed and errors can quote it.
    """

    type: EndpointType
    address: str = attrs.field(validator=attrs.validators.instance_of(str))

    @classmethod
    def phone(cls, address: str) -> Endpoint:
        return cls(EndpointType.PHONE_NUMBER, address)


class NumberProblem(enum.Enum):
    """Why a text is not a usable WhatsApp address."""

    EMPTY = "empty"
    WRONG_SCHEME = "wrong_scheme"
    NOT_E164 = "not_e164"
    NOT_POSSIBLE = "not_possible"
    NOT_VALID = "not_valid"


@attrs.frozen
class ParsedNumber:
    """Outcome of :func:`parse_whatsapp_number`: a normalised address or a problem."""

    address: str | None
    problem: NumberProblem | None = None
    had_prefix: bool = False

    @property
    def ok(self) -> bool:
        return self.problem is None


def parse_whatsapp_number(text: str, *, strict: bool = False) -> ParsedNumber:
    """Normalise ``whatsapp:+E164`` (or a bare ``+E164``) to ``whatsapp:+E164``.

    Idempotent: parsing a result gives the same result. Total: any string
    gives an answer, never an exception. Cached, because parsing costs several
    microseconds and the same few senders appear on every send.
    """
    if not isinstance(text, str):
        raise TypeError(f"a phone address must be a str, not {type(text).__name__}")
    return _parse_cached(text, strict)


@functools.lru_cache(maxsize=8192)
def _parse_cached(text: str, strict: bool) -> ParsedNumber:
    raw = text.strip()
    if not raw:
        return ParsedNumber(None, NumberProblem.EMPTY)
    had_prefix = False
    scheme, sep, rest = raw.partition(":")
    if sep:
        if scheme.strip().lower() != "whatsapp":
            return ParsedNumber(None, NumberProblem.WRONG_SCHEME)
        had_prefix = True
        raw = rest.strip()
    if not raw.startswith("+") or len(raw) > 40:
        return ParsedNumber(None, NumberProblem.NOT_E164, had_prefix)
    digits = raw[1:]
    # E.164 allows only digits; tolerate the usual visual separators.
    cleaned = "".join(ch for ch in digits if ch not in " -().")
    if not cleaned.isascii() or not cleaned.isdigit() or not 2 <= len(cleaned) <= 15:
        return ParsedNumber(None, NumberProblem.NOT_E164, had_prefix)
    try:
        number = phonenumbers.parse("+" + cleaned, None)
    except phonenumbers.NumberParseException:
        return ParsedNumber(None, NumberProblem.NOT_E164, had_prefix)
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        return ParsedNumber(None, NumberProblem.NOT_POSSIBLE, had_prefix)
    if strict and not phonenumbers.is_valid_number(number):
        return ParsedNumber(None, NumberProblem.NOT_VALID, had_prefix)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if e164 != "+" + cleaned and not _is_fixed_point(e164):
        # phonenumbers strips one trunk prefix per parse ("+49 0 0..." -> "+49 0..."):
        # a form that would change again is ambiguous, so refuse it rather than guess.
        return ParsedNumber(None, NumberProblem.NOT_E164, had_prefix)
    return ParsedNumber(WHATSAPP_PREFIX + e164, None, had_prefix)


def _is_fixed_point(e164: str) -> bool:
    """Whether parsing ``e164`` again formats to itself (keeps parsing idempotent)."""
    try:
        again = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.format_number(again, phonenumbers.PhoneNumberFormat.E164) == e164
