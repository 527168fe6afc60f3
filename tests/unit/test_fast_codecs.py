"""The codecs made faster for issue 6 give exactly what the stdlib functions they replace give.

``wire.parse_form`` is ``parse_qs(..., keep_blank_values=True,
max_num_fields=10_000)``, ``wire.encode_form`` is ``urlencode`` for str
pairs, message ids are ``uuid4().hex``, and the signature validator agrees
with ``compute_signature`` for every URL variant (adr/0013); plain E.164
numbers parsed without ``phonenumbers.parse`` are what it would give (adr/0014).
"""

from __future__ import annotations

import random
import uuid
from urllib.parse import parse_qs, urlencode

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratatosk.domain.endpoint import (
    _parse_plain_e164,
    _possible_length,
    parse_whatsapp_number,
)
from ratatosk.domain.message import _new_id
from ratatosk.twilio import wire
from ratatosk.twilio.signature import TwilioSignatureValidator, compute_signature, url_variants

#: Characters that exercise the form grammar: separators, escapes (good and broken), UTF-8.
_ESCAPES = ["%2", "%41", "%zz", "%C3%A9", "%C3", "%A9", "%F0", "%9F", "%E2%82", "%AC", "%FF"]
_ESCAPED_SEPARATORS = ["%26", "%3D", "%3d", "%2B", "%2b", "%25", "%20", "%0A"]
_FORM_ALPHABET = st.sampled_from([*"ab=&+% ~-._:/?#é😀\x00", *_ESCAPES, *_ESCAPED_SEPARATORS])
forms = st.one_of(st.lists(_FORM_ALPHABET, max_size=30).map("".join), st.text(max_size=40))


@settings(max_examples=max(2_000, settings().max_examples))
@given(forms)
def test_parse_form_is_parse_qs(body: str) -> None:
    expected = parse_qs(body, keep_blank_values=True, max_num_fields=10_000)
    assert wire.parse_form(body) == expected
    assert wire.parse_form(body) == expected  # the second answer comes from the cache


def test_parse_form_answers_are_fresh_lists() -> None:
    first = wire.parse_form("a=1&a=2")
    first["a"].append("x")
    first["b"] = ["y"]
    assert wire.parse_form("a=1&a=2") == {"a": ["1", "2"]}


def test_parse_form_keeps_the_field_limit() -> None:
    assert wire.parse_form("&".join(["a=1"] * 10_000))["a"] == ["1"] * 10_000
    with pytest.raises(ValueError, match="Max number of fields exceeded"):
        wire.parse_form("&".join(["a=1"] * 10_001))


def test_parse_form_of_a_large_body_is_not_cached_but_equal() -> None:
    body = "&".join(f"k{i}=v%20{i}" for i in range(9_000))
    assert len(body) > 64 * 1024
    assert wire.parse_form(body) == parse_qs(body, keep_blank_values=True)


@given(st.lists(st.tuples(st.text(), st.text()), max_size=5))
def test_encode_form_is_urlencode(pairs: list[tuple[str, str]]) -> None:
    try:
        expected = urlencode(pairs)
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            wire.encode_form(pairs)
        return
    assert wire.encode_form(pairs) == expected


def test_message_ids_are_uuid4_hex() -> None:
    for _ in range(1_000):
        text = _new_id()
        parsed = uuid.UUID(hex=text)
        assert parsed.hex == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.one_of(st.text(max_size=8), st.lists(st.text(max_size=8), min_size=1, max_size=3)),
        max_size=6,
    ),
    st.sampled_from(
        ["https://hooks.example.com/wa", "https://h.example.com:443/wa?x=1", "http://h:8080/s"]
    ),
)
def test_validator_agrees_with_compute_signature(
    params: dict[str, str | list[str]], url: str
) -> None:
    validator = TwilioSignatureValidator("token-123")
    for variant in url_variants(url):
        assert validator.validate(url, params, compute_signature("token-123", variant, params))
    assert not validator.validate(url, params, compute_signature("other", url, params))


# --- plain E.164 numbers without phonenumbers.parse (adr/0014) -----------------------------


def _slow(digits: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return None


def _agrees(digits: str) -> bool:
    fast = _parse_plain_e164(digits)
    return fast is None or fast == _slow(digits)


def _nationals_for(code: int, rng: random.Random) -> list[str]:
    """National numbers of every length, random and shaped like each region's own."""
    room = 15 - len(str(code))
    nationals = [
        "".join(rng.choice("0123456789") for _ in range(length))
        for length in range(1, room + 1)
        for _ in range(12)
    ]
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region)
        prefix = (metadata.national_prefix if metadata else None) or ""
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                national = str(example.national_number)
                nationals += [national, prefix + national, national[:-1], national + "1"]
        nationals += [prefix + "".join(rng.choice("0123456789") for _ in range(8))]
    return [n for n in nationals if n and len(str(code)) + len(n) <= 15]


def test_plain_e164_agrees_with_parse_for_every_country_code() -> None:
    rng = random.Random(6)
    taken = 0
    for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
        for national in _nationals_for(code, rng):
            digits = str(code) + national
            assert _agrees(digits), digits
            taken += _parse_plain_e164(digits) is not None
    assert taken > 10_000  # the shortcut is the usual path, not a rare one


@pytest.mark.parametrize(
    "digits", ["15550001234", "447700900123", "4915123456789", "5511987654321", "919876543210"]
)
def test_plain_e164_takes_the_shortcut_for_ordinary_mobiles(digits: str) -> None:
    fast = _parse_plain_e164(digits)
    assert fast is not None
    assert fast == _slow(digits)


@given(st.text("0123456789", min_size=1, max_size=15))
def test_plain_e164_agrees_with_parse_on_any_digits(digits: str) -> None:
    assert _agrees(digits)


def _reference_address(digits: str) -> str | None:
    """What parse_whatsapp_number gave for ``+digits`` before its shortcut skipped phonenumbers."""
    try:
        number = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return None
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if e164 != "+" + digits:
        again = phonenumbers.format_number(
            phonenumbers.parse(e164, None), phonenumbers.PhoneNumberFormat.E164
        )
        if again != e164:
            return None
    return "whatsapp:" + e164


def test_possible_length_is_is_possible_number_for_every_country_code() -> None:
    rng = random.Random(14)
    for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
        for national in _nationals_for(code, rng):
            if national[0] == "0":
                continue  # a leading zero is kept apart from the length (never the shortcut)
            number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
            reason = phonenumbers.is_possible_number_with_reason(number)
            expected = reason == phonenumbers.ValidationResult.IS_POSSIBLE
            assert _possible_length(code, len(national)) is expected, (code, national)


def test_parsed_addresses_are_what_phonenumbers_gives_for_every_country_code() -> None:
    rng = random.Random(15)
    for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
        for national in _nationals_for(code, rng):
            digits = str(code) + national
            assert parse_whatsapp_number("+" + digits).address == _reference_address(digits), digits


@given(st.text("0123456789", min_size=2, max_size=15))
def test_parsed_addresses_are_what_phonenumbers_gives_on_any_digits(digits: str) -> None:
    assert parse_whatsapp_number("whatsapp:+" + digits).address == _reference_address(digits)
