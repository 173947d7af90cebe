"""Ended sessions, announced to every process of the deployment.

A session ends when its user logs out, when a user is removed or their password
changes (all of that user's sessions), or when it expires. The first three are
written to a stream, ``keys.REVOCATIONS``, in the same step that ends them; each
process's hub reads it and closes the sockets those sessions opened (4401).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from console.domain import keys

ALL_SESSIONS = "*"
"""In place of a session digest: every session of the user."""

MAX_KEPT = 10_000
"""Revocations kept: a hub reading from its last id never needs old ones."""

# Ends one session and announces it in one step, so a logout cannot leave its
# sockets open. KEYS: the session, the revocation stream. ARGV: digest, MAX_KEPT.
_END_SESSION = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
redis.call('DEL', KEYS[1])
local ok, session = pcall(cjson.decode, raw)
if ok and type(session) == 'table' and type(session['username']) == 'string' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
             'username', session['username'], 'session', ARGV[1])
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Revocation:
    """One entry of the revocation stream."""

    username: str
    session: str  # a session's digest, or ALL_SESSIONS

    @classmethod
    def from_stream(cls, fields: dict[str, str]) -> Revocation:
        return cls(fields.get("username", ""), fields.get("session", ALL_SESSIONS))

    def covers(self, username: str, session: str) -> bool:
        """True for a socket of ``username`` opened by ``session`` that this ends."""
        return username == self.username and self.session in (ALL_SESSIONS, session)


async def end_session(redis: Redis, digest: str) -> bool:
    """Delete the session stored under ``digest`` and announce it; False if none was."""
    ended = await redis.eval(
        _END_SESSION, 2, keys.session(digest), keys.REVOCATIONS, digest, MAX_KEPT
    )
    return bool(ended)


def revocation_fields(username: str, session: str = ALL_SESSIONS) -> dict[str, str]:
    """The stream entry announcing that ``session`` (all by default) of ``username`` ended."""
    return {"username": username, "session": session}
