"""Every Redis key Warmline uses, under one prefix, so a shared Redis stays tidy
and a test or an operator can find (or flush) exactly what belongs to us."""

PREFIX = "wl:"

EVENTS = PREFIX + "events"
"""Stream: the durable event log every dashboard reads."""

AGENTS = PREFIX + "agents"
"""Hash: username -> agent presence record (JSON)."""

QUEUE = PREFIX + "queue"
"""List: conference names of waiting customers, head = next to route."""

QUEUE_INFO = PREFIX + "queue:info"
"""Hash: conference name -> queued record (JSON) of each waiting customer."""

QUEUE_ANNOUNCED = PREFIX + "queue:announced"
"""Hash: ``at`` (ms) of the last queue.updated, ``stale`` = 1 when one is held back
(see console/domain/waiting_line.py)."""

VERSION = PREFIX + "version"
"""Hash: ``agents``, ``queue`` -> a random token, new with every unit of work's commit
that writes them (console/domain/unit_state.py)."""

LINE_VERSION = PREFIX + "line-version"
"""String: a random token, new with every commit that changes the line other than by
callers joining its back (console/domain/unit_state.py, console/domain/positions.py)."""

COMMITS = PREFIX + "commits"
"""Pub/sub channel: the conferences and agents each unit's commit wrote, so that other
processes' copies of the state stay current (console/domain/unit_state.py)."""

UNIT_CONFLICTS = PREFIX + "unit-conflicts"
"""Counter: commits refused because what their unit started from had changed."""

LIVE = PREFIX + "live"
"""Set: names of conferences not yet ended."""

SOCKETS = PREFIX + "sockets"
"""Hash: agent username -> last time (ms) one of their dashboard sockets was alive."""

COUNTERS = PREFIX + "counters"
"""Hash: lifetime counters shared by every process (e.g. events published)."""

TRANSFERS = PREFIX + "transfers"
"""Hash: transfer id -> conference name, to find a transfer's aggregate."""

USERS = PREFIX + "users"
"""Hash: username -> user record (JSON: role and password hash)."""

WEBHOOK_HEALTH = PREFIX + "webhooks"
"""Hash: webhook route -> time (ms) Twilio last reached it."""

REVOCATIONS = PREFIX + "revocations"
"""Stream: sessions ended (logout, expiry, a user removed or their password changed),
read by every process's hub to close the sockets they opened (console.domain.sessions)."""

SIGNATURE_FAILURES = PREFIX + "signature-failures"
"""List: recent signature failures (JSON: route, the URL checked, time), newest first."""

VOICEMAILS = PREFIX + "voicemails"
"""Hash: voicemail id (the CallSid that left it) -> open voicemail (JSON; SPEC §9)."""

DIRECTORY = PREFIX + "directory"
"""Hash: directory entry id -> {id, name, number} (JSON): external transfer targets."""

HELP = PREFIX + "help"
"""Hash: help request id -> the conference it is about (SPEC §10), for DELETE by id."""

ALERTS = PREFIX + "alerts"
"""Hash: alert kind -> the supervisor alert up now (JSON; SPEC §10)."""


def conference(name: str) -> str:
    """String: one conference aggregate (JSON), with its participants, dials and transfers."""
    return f"{PREFIX}conf:{name}"


def folded_callbacks(name: str) -> str:
    """List: conference ``name``'s callbacks already folded into its record (JSON), in
    the order they arrived (console.domain.folding); read only for a late callback."""
    return f"{PREFIX}conf:{name}:folded"


def ended_call(name: str) -> str:
    """String (TTL ``unit.ENDED_CALL_RETENTION_SECONDS``): the ended-at ms of a customer's
    call, written when its conference ends and outliving its record, so a replay of the
    CallSid never queues it again (until history, §8, answers that)."""
    return f"{PREFIX}ended:{name}"


def unit_poison(process: str) -> str:
    """String (a minute's TTL): set when a process's commit check fails, to abort that
    commit's EXEC, which WATCHes it (console/domain/unit_state.py)."""
    return f"{PREFIX}unit-poison:{process}"


def session(token_digest: str) -> str:
    """String: a login session, keyed by a digest of the cookie token."""
    return f"{PREFIX}session:{token_digest}"


def login_throttle(subject: str) -> str:
    """Hash (``n`` failures, ``until`` ms): one login throttle bucket, for a username at
    a client address, a client address or a device (console.domain.login_throttle)."""
    return f"{PREFIX}login-throttle:{subject}"


def login_device(token_digest: str) -> str:
    """String: the casefolded username a device cookie token (by its digest) vouches for."""
    return f"{PREFIX}login-device:{token_digest}"


def timeline(name: str) -> str:
    """List: one conference's timeline entries (JSON), in commit order (console.domain.timeline)."""
    return f"{PREFIX}timeline:{name}"


def figures(day: str) -> str:
    """Hash: one day's (in CENTER_TIMEZONE) queue and transfer counters
    (console.domain.figures)."""
    return f"{PREFIX}figures:{day}"


def figures_contributions(day: str) -> str:
    """Hash: what each call or transfer currently adds to that day's counters, so a
    corrected outcome replaces its old contribution instead of adding to it."""
    return f"{PREFIX}figures:{day}:contributions"


def user_sockets(username: str) -> str:
    """Sorted set: one user's open ``/ws`` sockets in every process, socket id -> the
    last time (ms) its process stamped it alive (console.domain.sockets)."""
    return f"{PREFIX}user-sockets:{username}"


def voicemail_caller(call_sid: str) -> str:
    """String (TTL a day): the number, arrival and reason of a caller sent to leave a
    message, for the voicemail their recording callback creates."""
    return f"{PREFIX}voicemail:caller:{call_sid}"


def voicemail_closed(voicemail_id: str) -> str:
    """String (TTL a week): a voicemail was closed; its recording callback repeated
    does not bring it back."""
    return f"{PREFIX}voicemail:closed:{voicemail_id}"
