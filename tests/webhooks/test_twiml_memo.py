"""The incoming call's answer is built once per deployment and each CallSid put in
(webhooks/twiml.py): it must be exactly what the twilio builder makes for that call,
whatever the settings say, and a notice that happens to hold the stand-in CallSid
must not be rewritten."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from console.ids import CALL_SID
from tests.conftest import make_settings
from webhooks import twiml

SIDS = st.from_regex(CALL_SID, fullmatch=True)
NOTICES = st.one_of(
    st.text(max_size=60),
    st.sampled_from(twiml._STAND_IN_SIDS).map(lambda sid: f"your id is {sid} <&>"),
)


@settings(max_examples=200, deadline=None)
@given(
    sid=SIDS,
    record_calls=st.booleans(),
    notice=st.booleans(),
    announce=st.sampled_from([0, 30]),
    recording_notice=NOTICES,
    base=st.sampled_from(["https://calls.example.com", "https://x.example/base"]),
)
def test_the_memo_answers_what_the_builder_builds(
    sid, record_calls, notice, announce, recording_notice, base
):
    config = make_settings(
        record_calls=record_calls,
        announce_seconds=announce,
        recording_notice=recording_notice,
        public_base_url=base,
    )
    expected = twiml._customer_conference(config, sid, notice)
    assert twiml.customer_conference(config, sid, notice) == expected


def test_a_name_that_is_not_a_call_sid_is_built_as_it_is():
    config = make_settings()
    assert twiml.customer_conference(config, "not-a-sid") == twiml._customer_conference(
        config, "not-a-sid", True
    )
