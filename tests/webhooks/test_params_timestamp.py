"""Twilio's Timestamp, parsed once per text (webhooks/params.py keeps a second's
worth): the cache never changes an answer, a malformed one included."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhooks.params import BadParams, timestamp_ms

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=0))


@given(moment=moments)
def test_a_timestamp_reads_the_same_each_time(moment):
    text = format_datetime(moment)
    expected = int(moment.timestamp() * 1000)
    assert timestamp_ms({"Timestamp": text}) == expected
    assert timestamp_ms({"Timestamp": text}) == expected


@pytest.mark.parametrize("text", ["yesterday", "Wed, 99 Nov 2026 12:00:00 +0000", "x" * 200])
def test_a_malformed_timestamp_is_refused_each_time(text):
    for _ in range(2):
        with pytest.raises(BadParams):
            timestamp_ms({"Timestamp": text})
