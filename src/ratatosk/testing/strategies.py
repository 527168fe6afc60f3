"""Hypothesis strategies for WhatsApp numbers, texts and inbound webhooks (testing layer).

Valid by construction, as hyperlink's public strategies are, so a property
test about the user's own code starts from inputs Twilio would send. Hypothesis
is a test dependency, not the package's: it is imported inside each function,
so importing ``ratatosk.testing`` works without it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import phonenumbers

from ..emulator.model import DEFAULT_ACCOUNT_SID, inbound_form

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy


@functools.cache
def _example_mobiles() -> tuple[str, ...]:
    numbers = set()
    for region in phonenumbers.SUPPORTED_REGIONS:
        example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        if example is not None:
            numbers.add(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))
    return tuple(sorted(numbers))


def whatsapp_numbers() -> SearchStrategy[str]:
    """Valid ``whatsapp:+E164`` addresses: every region's example mobile, and ``+1555...``."""
    from hypothesis import strategies as st  # noqa: PLC0415 - a dev dependency, lazily

    documented = st.integers(0, 9_999_999).map(lambda n: f"whatsapp:+1555{n:07d}")
    examples = st.sampled_from(_example_mobiles()).map(lambda n: "whatsapp:" + n)
    return st.one_of(documented, examples)


def invalid_whatsapp_numbers() -> SearchStrategy[str]:
    """Near misses no layer accepts: no ``+``, letters, too long, too short, wrong scheme."""
    from hypothesis import strategies as st  # noqa: PLC0415 - a dev dependency, lazily

    digits = st.text("0123456789", min_size=8, max_size=12)
    return st.one_of(
        digits.map(lambda d: "whatsapp:" + d),
        digits.map(lambda d: "whatsapp:+" + d[:4] + "abc" + d[4:]),
        st.text("0123456789", min_size=16, max_size=20).map(lambda d: "whatsapp:+" + d),
        st.text("0123456789", min_size=1, max_size=2).map(lambda d: "whatsapp:+" + d),
        digits.map(lambda d: "sms:+" + d),
        st.just(""),
    )


def message_texts(max_size: int = 1600) -> SearchStrategy[str]:
    """Bodies Twilio accepts: 1..max_size characters, not blank, any Unicode but surrogates."""
    from hypothesis import strategies as st  # noqa: PLC0415 - a dev dependency, lazily

    alphabet = st.characters(exclude_categories=["Cs"])
    return st.text(alphabet, min_size=1, max_size=max_size).filter(lambda s: bool(s.strip()))


def inbound_forms(account_sid: str = DEFAULT_ACCOUNT_SID) -> SearchStrategy[dict[str, str]]:
    """Inbound WhatsApp webhook forms as Twilio sends them (text, media, buttons, replies)."""
    from hypothesis import strategies as st  # noqa: PLC0415 - a dev dependency, lazily

    hex32 = st.integers(0, 2**128 - 1).map(lambda n: f"{n:032x}")
    media = st.lists(
        st.tuples(
            hex32.map(
                lambda h: f"https://api.twilio.com/2010-04-01/Accounts/{account_sid}/Media/ME{h}"
            ),
            st.sampled_from(["image/jpeg", "image/png", "audio/ogg", "application/pdf"]),
        ),
        max_size=2,
    )
    forms = st.builds(
        inbound_form,
        sid=hex32.map(lambda h: "SM" + h),
        account_sid=st.just(account_sid),
        from_=whatsapp_numbers(),
        to=whatsapp_numbers(),
        body=st.one_of(st.just(""), message_texts(max_size=300)),
        media=media,
        button=st.none() | st.tuples(message_texts(20), st.text(min_size=1, max_size=20)),
        profile_name=st.none() | message_texts(40),
        reply_to=st.none() | st.tuples(hex32.map(lambda h: "SM" + h), whatsapp_numbers()),
    )
    return forms.map(_media_sid)


def _media_sid(form: dict[str, str]) -> dict[str, str]:
    if form["NumMedia"] != "0":
        sid = "MM" + form["MessageSid"][2:]
        form.update(MessageSid=sid, SmsSid=sid, SmsMessageSid=sid)
    return form


__all__ = ["inbound_forms", "invalid_whatsapp_numbers", "message_texts", "whatsapp_numbers"]
