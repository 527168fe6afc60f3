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
import re
from collections.abc import Callable

import attrs
import phonenumbers

WHATSAPP_PREFIX = "whatsapp:"
_VISUAL_SEPARATORS = str.maketrans("", "", " -().")


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
    cleaned = digits.translate(_VISUAL_SEPARATORS)
    if not cleaned.isascii() or not cleaned.isdigit() or not 2 <= len(cleaned) <= 15:
        return ParsedNumber(None, NumberProblem.NOT_E164, had_prefix)
    parts = _plain_e164_parts(cleaned)
    if parts is not None and not strict:
        # The shortcut (adr/0014) without phonenumbers objects: "possible" is a length
        # check per country code, and the E.164 form of a number with no leading zero
        # is its own digits (see _possible_length).
        code, national = parts
        if not _possible_length(code, len(national)):
            return ParsedNumber(None, NumberProblem.NOT_POSSIBLE, had_prefix)
        return ParsedNumber(WHATSAPP_PREFIX + "+" + cleaned, None, had_prefix)
    number = None if parts is None else _number(*parts)
    if number is None:
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


def _parse_plain_e164(digits: str) -> phonenumbers.PhoneNumber | None:
    """``phonenumbers.parse("+" + digits, None)`` where that is provably the same, else None.

    For plain ASCII digits, ``parse`` only splits off the country calling code
    (the first 1-3 digits that name one) and may then strip a national prefix;
    it leaves leading zeros flagged. This does the split itself and hands back
    every case where anything else could happen: no country code, a national
    number under two digits or starting with 0, or one that the region's
    national-prefix pattern matches (parse would consider stripping it). A
    test compares it with ``parse`` over every country code and region
    (adr/0014). A never-seen recipient costs about 3 µs instead of 13.
    """
    parts = _plain_e164_parts(digits)
    return None if parts is None else _number(*parts)


def _number(code: int, national: str) -> phonenumbers.PhoneNumber:
    return phonenumbers.PhoneNumber(country_code=code, national_number=int(national))


def _plain_e164_parts(digits: str) -> tuple[int, str] | None:
    """(country code, national number) where :func:`_parse_plain_e164` takes its shortcut."""
    if len(digits) < 4 or digits[0] == "0" or not digits.isdigit() or not digits.isascii():
        return None
    for size in (1, 2, 3):
        code = int(digits[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    national = digits[size:]
    if len(national) < 2 or national[0] == "0":
        return None
    matches_prefix = _national_prefix_for_parsing(code)
    if matches_prefix is None or matches_prefix(national):
        return None
    return code, national


@functools.lru_cache(maxsize=512)
def _national_prefix_for_parsing(code: int) -> Callable[[str], object] | None:
    """The country's national-prefix pattern, matched as ``re.match`` would (no pattern: never).

    None when phonenumbers has no metadata for the code. Cached per country
    code (a few hundred), which is what ``re.match`` re-derives on every call.
    """
    region = phonenumbers.region_code_for_country_code(code)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region)
    if metadata is None:
        return None
    prefix = metadata.national_prefix_for_parsing
    return re.compile(prefix).match if prefix else _never


def _never(_: str) -> None:
    return None


@functools.lru_cache(maxsize=4096)
def _possible_length(code: int, length: int) -> bool:
    """Whether a national number of ``length`` digits is possible under ``code``.

    ``is_possible_number`` checks only the length for the number's country
    code (phonenumbers documents it so: "it only checks the length of phone
    numbers"), so one answer serves every number of that shape, and the
    number asked about here (all ones) stands for all of them. At most a few
    thousand (code, length) pairs exist. A test compares it with
    ``is_possible_number_with_reason`` on numbers of every country code.
    """
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int("1" * length))
    reason = phonenumbers.is_possible_number_with_reason(number)
    return bool(reason == phonenumbers.ValidationResult.IS_POSSIBLE)


def _is_fixed_point(e164: str) -> bool:
    """Whether parsing ``e164`` again formats to itself (keeps parsing idempotent)."""
    try:
        again = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.format_number(again, phonenumbers.PhoneNumberFormat.E164) == e164
