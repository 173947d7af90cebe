"""The name and id patterns every layer checks against: whole-string matches, and the
anchored form the API's schema carries means the same."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from console.ids import CALL_SID, CONFERENCE_SID, NAME, USERNAME, anchored


@pytest.mark.parametrize(
    ("pattern", "good", "bad"),
    [
        (USERNAME, ["alice", "Bob_2", "x" * 121], ["", "x" * 122, "al-ice", "a b", "ålice"]),
        (NAME, ["CA" + "0" * 32, "d-1_x", "x" * 128], ["", "x" * 129, "a/b", "a?b", "a.b"]),
        (CALL_SID, ["CA" + "0123456789abcdef" * 2], ["CA" + "0" * 31, "CF" + "0" * 32]),
        (CONFERENCE_SID, ["CF" + "f" * 32], ["CF" + "F" * 32, "CA" + "0" * 32]),
    ],
)
def test_patterns_match_whole_names_only(pattern, good, bad) -> None:
    for name in good:
        assert pattern.fullmatch(name), name
    for name in bad:
        assert not pattern.fullmatch(name), name
        assert not pattern.fullmatch(name + "\n"), name


# Python's "$" also matches before a final newline; the schema's regex engine does not.
@given(st.text(max_size=140).filter(lambda text: not text.endswith("\n")))
def test_the_anchored_form_agrees_with_fullmatch(text: str) -> None:
    for pattern in (USERNAME, NAME, CALL_SID, CONFERENCE_SID):
        anchored_match = re.search(anchored(pattern), text) is not None
        assert anchored_match == (pattern.fullmatch(text) is not None)
