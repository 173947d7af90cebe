"""Numbers a callback may dial (console/domain/dialable.py): only ordinary numbers of
the caller ID's own region."""

from __future__ import annotations

import pytest

from console.domain.dialable import callback_number

US_CALLER_ID = "+15550001111"  # made up, as in the tests' settings: still the US


@pytest.mark.parametrize(
    ("number", "dialable"),
    [
        ("+12125551234", "+12125551234"),  # New York
        ("+14155552671", "+14155552671"),  # San Francisco
        ("+18765551234", None),  # Jamaica: +1, but not the caller ID's region
        ("+19005551234", None),  # premium-rate
        ("+442071838750", None),  # another country
        ("+15557654321", None),  # not a valid number (555-xxxx)
        ("anonymous", None),
        ("restricted", None),
        ("+266696687", None),  # Twilio's "anonymous" caller
        ("", None),
        (None, None),
        ("+1 212 555 1234", "+12125551234"),  # written with spaces: normalised
        ("12125551234", None),  # not E.164
        ("+1212555123412345", None),
        ("client:alice", None),
    ],
)
def test_only_ordinary_numbers_of_the_caller_ids_region(number, dialable):
    assert callback_number(number, US_CALLER_ID) == dialable


def test_the_region_is_the_caller_ids():
    assert callback_number("+442071838750", "+442079460000") == "+442071838750"
    assert callback_number("+12125551234", "+442079460000") is None
