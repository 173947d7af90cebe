"""The webhook signature check (webhooks/signature.py) accepts exactly what the twilio
package's ``RequestValidator.validate`` accepts: its shortcut for a request signed
over the URL as it is must never widen or narrow that."""

from __future__ import annotations

import base64
import hmac
from hashlib import sha1
from urllib.parse import urlparse

from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator, add_port, remove_port
from werkzeug.datastructures import MultiDict

from webhooks.signature import signed

TOKEN = "12345"
VALIDATOR = RequestValidator(TOKEN)


def test_twilio_documented_example_passes_and_a_changed_value_does_not() -> None:
    url = "https://example.com/myapp.php?foo=1&bar=2"
    params = MultiDict(
        {
            "CallSid": "CA1234567890ABCDE",
            "Caller": "+14158675310",
            "Digits": "1234",
            "From": "+14158675310",
            "To": "+18005551212",
        }
    )
    assert signed(VALIDATOR, url, params, "L/OH5YylLD5NRKLltdqwSvS0BnU=")
    params = params.copy()
    params["Digits"] = "1235"
    assert not signed(VALIDATOR, url, params, "L/OH5YylLD5NRKLltdqwSvS0BnU=")


def test_https_voice_signed_without_the_port_passes_at_an_url_with_one() -> None:
    """Twilio drops the port of an https Voice URL when it signs (docs/twilio.md)."""
    params = MultiDict([("CallSid", "CA1"), ("AccountSid", "AC1")])
    url = "https://warmline.example:8443/voice/incoming"
    signature = VALIDATOR.compute_signature("https://warmline.example/voice/incoming", params)
    assert signed(VALIDATOR, url, params, signature)
    with_default_port = VALIDATOR.compute_signature("https://warmline.example:443/v", params)
    assert signed(VALIDATOR, "https://warmline.example/v", params, with_default_port)


def test_repeated_parameters_are_signed_sorted_and_once_each() -> None:
    params = MultiDict([("Event", "b"), ("Event", "a"), ("Event", "b"), ("AccountSid", "AC1")])
    url = "https://warmline.example/conference/status"
    signed_text = url + "AccountSidAC1" + "Eventa" + "Eventb"
    expected = base64.b64encode(hmac.new(TOKEN.encode(), signed_text.encode(), sha1).digest())
    assert signed(VALIDATOR, url, params, expected.decode())


@settings(max_examples=300, deadline=None)
@given(
    host=st.sampled_from(["warmline.example", "warmline.example:8443", "localhost:5000"]),
    scheme=st.sampled_from(["http", "https"]),
    query=st.sampled_from(["", "?conference=CA1&dial=d-1", "?a=%20b"]),
    pairs=st.lists(
        st.tuples(st.sampled_from(["CallSid", "Hold", "From", "Event"]), st.text(max_size=8)),
        max_size=6,
    ),
    signed_over=st.sampled_from(["as is", "no port", "default port", "other url", "garbage"]),
    garbage=st.text(max_size=30),
)
def test_the_shortcut_accepts_exactly_what_validate_accepts(
    host, scheme, query, pairs, signed_over, garbage
) -> None:
    url = f"{scheme}://{host}/conference/status{query}"
    params = MultiDict(pairs)
    over = {
        "as is": url,
        "no port": remove_port(urlparse(url)),
        "default port": add_port(urlparse(url)),
        "other url": url.replace("/conference/", "/call/"),
    }.get(signed_over)
    signature = garbage if over is None else VALIDATOR.compute_signature(over, params)
    assert signed(VALIDATOR, url, params, signature) == VALIDATOR.validate(url, params, signature)
