"""Places in the line that only Redis knows: a caller who joins the back of the line
while other processes' callers join too learns their position at EXEC time.

A unit whose only change to the line is to append callers (console/domain/unit.py,
``Unit.joins_commute``) commits without checking that the line is as it last saw it,
so other processes' joins commute with its own. Its ``call.queued`` events and their
timeline entries then carry a token where the position goes, and the commit's
scripts (``events.append_events``, ``timeline.project``) put the position in, from
the line's length once the unit's RPUSH ran inside the same MULTI.
"""

from __future__ import annotations

import secrets

# Lua: ``places(pairs, line)`` reads the line's length once (KEYS[n] ``line``) and turns
# 'token offset' pairs into each token's position: the caller named by a token stands
# ``offset`` places before the tail. ``positioned(text, found)`` replaces each token in
# ``text`` with its position as a JSON number (in quotes: a value) or bare (inside a
# sentence); ``positioned_args(first, pairs, line)`` does so to ARGV[first..]. Tokens
# are letters and digits, so they match themselves as patterns.
SUBSTITUTE = """
local function places(pairs, line)
    local found = {}
    if pairs == '' then return found end
    local length = redis.call('LLEN', line)
    for token, offset in string.gmatch(pairs, '(%w+) (%d+)') do
        found[#found + 1] = {token, tostring(length - tonumber(offset))}
    end
    return found
end
local function positioned(text, found)
    for _, place in ipairs(found) do
        text = string.gsub(text, '"' .. place[1] .. '"', place[2])
        text = string.gsub(text, place[1], place[2])
    end
    return text
end
local function positioned_args(first, pairs, line)
    local found, out = places(pairs, line), {}
    for i = first, #ARGV do
        out[#out + 1] = positioned(ARGV[i], found)
    end
    return out
end
"""


class Positions:
    """The tokens of one commit's joining callers: for each, how many of the callers
    it appends join after it."""

    def __init__(self) -> None:
        self._prefix = "WLPOS" + secrets.token_hex(8)
        self._offsets: dict[str, int] = {}

    def token(self, offset: int) -> str:
        """The token of the caller ``offset`` places before the tail once appended."""
        token = f"{self._prefix}N{offset}Z"  # Z: N1 is not part of N10
        self._offsets[token] = offset
        return token

    def pairs(self, text: str) -> str:
        """SUBSTITUTE's 'token offset' pairs for the tokens ``text`` holds ('' for none)."""
        if self._prefix not in text:
            return ""
        return " ".join(f"{t} {o}" for t, o in self._offsets.items() if t in text)
