"""The audit trail: one log line per security-relevant act (logins and their
failures, logouts, user changes, a supervisor's monitoring), saying who, from
where, and what; never a password or a token. Each line reads
``audit <action> actor="…" client="…" …``; values are JSON strings so text a
client chose cannot forge another line or field.
"""

from __future__ import annotations

import json
import logging

log = logging.getLogger("console.audit")


def record(action: str, *, actor: str | None, client: str | None = None, **details: object) -> None:
    """Log ``action`` by ``actor`` (None: not known) from ``client`` (an address, or
    None for the command line) with ``details``."""
    fields = {"actor": actor, "client": client or "cli", **details}
    rendered = " ".join(f"{name}={json.dumps(value)}" for name, value in fields.items())
    log.info("audit %s %s", action, rendered)
