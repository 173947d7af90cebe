"""Which numbers the app may dial back (SPEC §9): a caller's own number can be spoofed,
withheld or premium-rate, and a callback must never dial a number an attacker chose.
Only a valid E.164 number of TWILIO_CALLER_ID's own region (not merely its country
code: +1 also reaches the Caribbean), of an ordinary type, passes."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

# Fixed, mobile and the numbers that may be either; never premium-rate, shared-cost,
# personal, pager, UAN, voicemail access or unknown.
ORDINARY = frozenset(
    {
        PhoneNumberType.FIXED_LINE,
        PhoneNumberType.MOBILE,
        PhoneNumberType.FIXED_LINE_OR_MOBILE,
        PhoneNumberType.TOLL_FREE,
    }
)


def region_of(number: str) -> str | None:
    """The region (``US``, ``GB``…) of an E.164 number: its own, else its country
    code's main one (a made-up caller ID such as +1555… is still ``US``)."""
    try:
        parsed = phonenumbers.parse(number, None)
    except NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    return region or phonenumbers.region_code_for_country_code(parsed.country_code)


def callback_number(number: str | None, caller_id: str) -> str | None:
    """``number`` in E.164 when a callback may dial it, else None."""
    if not number or not number.startswith("+"):
        return None  # "anonymous", "restricted", a SIP or client address
    try:
        parsed = phonenumbers.parse(number, None)
    except NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    home = region_of(caller_id)
    if home is None or phonenumbers.region_code_for_number(parsed) != home:
        return None
    if phonenumbers.number_type(parsed) not in ORDINARY:
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
