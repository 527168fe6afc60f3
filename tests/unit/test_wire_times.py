"""``wire.datetime_from_iso`` reads back exactly what ``isoformat`` wrote."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratatosk.twilio.wire import datetime_from_iso

ZONES = st.builds(
    dt.timezone,
    st.timedeltas(
        min_value=dt.timedelta(hours=-23, minutes=-59), max_value=dt.timedelta(hours=23, minutes=59)
    ),
)


@given(st.datetimes(timezones=ZONES))
def test_an_aware_time_comes_back_equal_in_its_own_zone(moment: dt.datetime) -> None:
    back = datetime_from_iso(moment.isoformat())
    assert back == moment
    assert back.utcoffset() == moment.utcoffset()


@given(st.datetimes())
def test_a_naive_time_comes_back_naive(moment: dt.datetime) -> None:
    assert datetime_from_iso(moment.isoformat()) == moment


@pytest.mark.parametrize("micros", [1, -1, 999_999, -999_999])
def test_an_offset_under_a_second_is_kept(micros: int) -> None:
    zone = dt.timezone(dt.timedelta(microseconds=micros))
    moment = dt.datetime(2026, 12, 3, 8, 30, tzinfo=zone)
    assert datetime_from_iso(moment.isoformat()) == moment


def test_text_that_is_not_a_time_is_refused() -> None:
    with pytest.raises(ValueError, match="Invalid isoformat"):
        datetime_from_iso("yesterday")
