"""Properties of WhatsApp number normalisation (``parse_whatsapp_number``) and ``Endpoint``.

Valid input comes from ``phonenumbers``' own example numbers for every
supported region; arbitrary input from Hypothesis. Whatever the input, the
parser answers an address or a :class:`NumberProblem`, never an exception, and
every address it gives is a fixed point.
"""

from __future__ import annotations

import re

import attrs
import phonenumbers
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ratatosk.domain.endpoint import (
    Endpoint,
    EndpointType,
    NumberProblem,
    ParsedNumber,
    parse_whatsapp_number,
)
from ratatosk.testing import invalid_whatsapp_numbers, whatsapp_numbers

_PNT = phonenumbers.PhoneNumberType
_FMT = phonenumbers.PhoneNumberFormat
REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
ADDRESS = re.compile(r"whatsapp:\+[1-9][0-9]{1,14}")
SEPARATORS = " -()."


def _examples(region: str) -> list[phonenumbers.PhoneNumber]:
    found = (
        phonenumbers.example_number_for_type(region, kind)
        for kind in (_PNT.MOBILE, _PNT.FIXED_LINE)
    )
    return [number for number in found if number is not None]


EXAMPLE_DIGITS = sorted(
    {phonenumbers.format_number(n, _FMT.E164)[1:] for r in REGIONS for n in _examples(r)}
)


def _assert_fixed_point(parsed: ParsedNumber, strict: bool = False) -> None:
    """An accepted address parses to itself (in the same mode), prefixed."""
    if not parsed.ok:
        assert parsed.address is None
        assert isinstance(parsed.problem, NumberProblem)
        return
    assert parsed.problem is None
    assert parsed.address is not None
    assert ADDRESS.fullmatch(parsed.address), parsed.address
    again = parse_whatsapp_number(parsed.address, strict=strict)
    assert again == ParsedNumber(parsed.address, None, had_prefix=True)


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isascii() and ch.isdigit())


def _is_subsequence(small: str, big: str) -> bool:
    remaining = iter(big)
    return all(ch in remaining for ch in small)


class TestEveryRegion:
    """Each region's example mobile and fixed-line numbers, in the forms people type."""

    @pytest.mark.parametrize("region", REGIONS)
    def test_example_numbers_normalise_to_whatsapp_e164(self, region: str) -> None:
        """E.164, international with spaces or dashes, with or without the prefix: one address."""
        examples = _examples(region)
        assert examples, f"phonenumbers has no example number for {region}"
        for number in examples:
            e164 = phonenumbers.format_number(number, _FMT.E164)
            spaced = phonenumbers.format_number(number, _FMT.INTERNATIONAL)
            dashed = spaced.replace(" ", "-")
            expected = "whatsapp:" + e164
            for text in (e164, spaced, dashed, f" {e164} "):
                for prefix in ("", "whatsapp:", "WhatsApp: "):
                    for strict in (False, True):
                        parsed = parse_whatsapp_number(prefix + text, strict=strict)
                        assert parsed.address == expected, (region, prefix + text, strict, parsed)
                        assert parsed.had_prefix is bool(prefix)
                        _assert_fixed_point(parsed, strict)

    def test_regions_cover_the_world(self) -> None:
        """The loop above really runs over every region phonenumbers supports."""
        assert len(REGIONS) > 200
        assert {"US", "DE", "IN", "BR", "NG", "GB", "JP"} <= set(REGIONS)


@st.composite
def separated_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """(text, its digits): a plus, up to 17 digits, random separators, maybe a prefix."""
    known = st.sampled_from(EXAMPLE_DIGITS)
    digits = draw(
        st.one_of(
            st.text("0123456789", min_size=1, max_size=17),
            known,
            st.tuples(known, st.integers(1, 4)).map(lambda d: d[0][: d[1]] + "0" + d[0][d[1] :]),
        )
    )
    pieces = [draw(st.text(SEPARATORS, max_size=2)) + digit for digit in digits]
    prefix = draw(st.sampled_from(["", "whatsapp:", "WHATSAPP:", " whatsapp: "]))
    return prefix + "+" + "".join(pieces) + draw(st.text(" ", max_size=2)), digits


@st.composite
def example_numbers_with_separators(draw: st.DrawFn) -> tuple[str, str]:
    """(text, expected address): a region's example number with separators sprinkled in."""
    region = draw(st.sampled_from(REGIONS))
    number = draw(st.sampled_from(_examples(region)))
    e164 = phonenumbers.format_number(number, _FMT.E164)
    pieces = [draw(st.sampled_from(["", "", " ", "-", ".", "(", ")"])) + d for d in e164[1:]]
    prefix = draw(st.sampled_from(["", "whatsapp:"]))
    return prefix + "+" + "".join(pieces), "whatsapp:" + e164


class TestParseProperties:
    """Arbitrary strings: total, idempotent, strict within possible."""

    @given(st.text())
    @example("")
    @example("   ")
    @example("whatsapp:")
    @example("whatsapp:+")
    @example("tel:+15550002222")
    @example("whatsapp:+٤٤٢٠٧٩٤٦٠٠٩٥")  # Arabic-Indic digits are not E.164
    @example("whatsapp:+49 0 0 30 1234567")  # trunk prefix twice: ambiguous
    def test_any_text_gives_an_address_or_a_problem(self, text: str) -> None:
        """Never an exception; an accepted address is a fixed point in both modes."""
        for strict in (False, True):
            _assert_fixed_point(parse_whatsapp_number(text, strict=strict), strict)

    @given(separated_numbers())
    @example(("whatsapp:+1 (555) 000-2222", "15550002222"))
    @example(("+49 030 1234567", "490301234567"))
    def test_digits_with_separators(self, case: tuple[str, str]) -> None:
        """Separators never matter, and an accepted address only keeps digits that were typed."""
        text, digits = case
        parsed = parse_whatsapp_number(text)
        _assert_fixed_point(parsed)
        assert parsed == parse_whatsapp_number(text.replace(" ", "").replace("-", ""))
        if parsed.ok:
            assert parsed.address is not None
            kept = parsed.address.removeprefix("whatsapp:+")
            assert _is_subsequence(kept, digits)
            assert kept[:1] == digits[:1]  # the country code stays
            number = phonenumbers.parse("+" + kept, None)
            assert phonenumbers.is_possible_number(number)

    @given(example_numbers_with_separators())
    def test_separators_inside_example_numbers(self, case: tuple[str, str]) -> None:
        """Any mix of spaces, dashes, dots and brackets inside a real number is tolerated."""
        text, expected = case
        assert parse_whatsapp_number(text).address == expected
        assert parse_whatsapp_number(text, strict=True).address == expected

    @given(st.one_of(st.text(), separated_numbers().map(lambda c: c[0]), whatsapp_numbers()))
    @example("whatsapp:+15550002222")
    def test_strict_accepts_a_subset_of_possible(self, text: str) -> None:
        """Whatever strict mode accepts, possible mode accepts as the same address."""
        strict = parse_whatsapp_number(text, strict=True)
        loose = parse_whatsapp_number(text)
        if strict.ok:
            assert loose == strict
            assert strict.address is not None
            number = phonenumbers.parse(strict.address.removeprefix("whatsapp:"), None)
            assert phonenumbers.is_valid_number(number)
        if not loose.ok:
            assert strict.problem == loose.problem

    def test_documentation_number_is_possible_but_not_valid(self) -> None:
        """``+1555...`` documentation numbers pass by default and fail only in strict mode."""
        assert parse_whatsapp_number("whatsapp:+15550002222").address == "whatsapp:+15550002222"
        strict = parse_whatsapp_number("whatsapp:+15550002222", strict=True)
        assert strict.problem is NumberProblem.NOT_VALID
        assert strict.had_prefix

    @given(whatsapp_numbers())
    def test_strategy_numbers_are_accepted_unchanged(self, address: str) -> None:
        """The public ``whatsapp_numbers`` strategy only yields normalised addresses."""
        assert parse_whatsapp_number(address) == ParsedNumber(address, None, had_prefix=True)

    @given(invalid_whatsapp_numbers())
    def test_strategy_near_misses_are_refused(self, text: str) -> None:
        """The public ``invalid_whatsapp_numbers`` strategy yields only refused texts."""
        for strict in (False, True):
            assert not parse_whatsapp_number(text, strict=strict).ok

    @pytest.mark.parametrize(
        ("text", "problem", "had_prefix"),
        [
            ("", NumberProblem.EMPTY, False),
            (" \t\n", NumberProblem.EMPTY, False),
            ("sms:+15550002222", NumberProblem.WRONG_SCHEME, False),
            ("whatsapp:15550002222", NumberProblem.NOT_E164, True),
            ("15550002222", NumberProblem.NOT_E164, False),
            ("whatsapp:+1555abc0002222", NumberProblem.NOT_E164, True),
            ("whatsapp:+1234567890123456", NumberProblem.NOT_E164, True),
            ("whatsapp:+1", NumberProblem.NOT_E164, True),
            ("whatsapp:+1555", NumberProblem.NOT_POSSIBLE, True),
        ],
    )
    def test_problems_are_named(self, text: str, problem: NumberProblem, had_prefix: bool) -> None:
        """Each kind of refusal has its own problem, and the prefix is reported."""
        parsed = parse_whatsapp_number(text)
        assert parsed == ParsedNumber(None, problem, had_prefix)
        assert not parsed.ok

    @pytest.mark.parametrize("value", [None, 15550002222, b"whatsapp:+15550002222"])
    def test_non_strings_are_a_programming_error(self, value: object) -> None:
        """Only a str is parsed; anything else is a TypeError (documented)."""
        with pytest.raises(TypeError):
            parse_whatsapp_number(value)  # type: ignore[arg-type]


class TestEndpoint:
    """``Endpoint`` keeps what the caller typed; normalising is the parser's job."""

    @given(st.text())
    def test_phone_endpoint_keeps_the_text(self, text: str) -> None:
        """``Endpoint.phone`` stores the address verbatim as a PhoneNumber endpoint."""
        endpoint = Endpoint.phone(text)
        assert endpoint == Endpoint(EndpointType.PHONE_NUMBER, text)
        assert endpoint.address == text
        assert hash(endpoint) == hash(Endpoint.phone(text))

    def test_endpoint_is_frozen_and_typed(self) -> None:
        """Endpoints cannot be changed, and their address must be a str."""
        endpoint = Endpoint.phone("whatsapp:+15550002222")
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            endpoint.address = "whatsapp:+15550003333"  # type: ignore[misc]
        with pytest.raises(TypeError):
            Endpoint(EndpointType.PHONE_NUMBER, 15550002222)  # type: ignore[arg-type]

    @given(example_numbers_with_separators())
    def test_parsing_an_endpoint_address(self, case: tuple[str, str]) -> None:
        """What a builder stored normalises the same as the raw text."""
        text, expected = case
        assert parse_whatsapp_number(Endpoint.phone(text).address).address == expected
