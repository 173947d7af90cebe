"""The schema's migrations: ``migrations/NNNN_name.sql``, applied in order, each once.

Every process that upgrades (the release phase, the demo, a test) takes the same
advisory lock first, so two upgrades at once apply each migration once and both
succeed. Applied versions are rows of ``schema_migrations``.
"""

from __future__ import annotations

from importlib import resources

import psycopg

# pg_advisory_lock's key for "the schema is being upgraded" (any constant bigint).
LOCK_KEY = 0x5741524D4C494E45 & 0x7FFFFFFFFFFFFFFF  # "WARMLINE"
CONNECT_TIMEOUT_SECONDS = 5

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
  version text PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def migrations() -> list[tuple[str, str]]:
    """(version, SQL) of every migration shipped, in order; the version is the file's
    name without ``.sql``."""
    folder = resources.files("console.history") / "migrations"
    found = [
        (entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found)


def latest_version() -> str:
    return migrations()[-1][0]


def upgrade(conninfo: str) -> list[str]:
    """Apply the migrations ``conninfo``'s database lacks; return their versions (empty
    when it is up to date). Raises psycopg.Error when the database cannot be reached."""
    with psycopg.connect(
        conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
    ) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            conn.execute(CREATE_TABLE)
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            applied = []
            for version, text in migrations():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(text.encode())  # several statements: no parameters
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied.append(version)
            return applied
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def applied_versions(conninfo: str) -> list[str]:
    """The versions ``conninfo``'s database has, in order (empty before the first
    upgrade). Raises psycopg.Error when the database cannot be reached."""
    with psycopg.connect(
        conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
    ) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
        if exists is None or exists[0] is None:
            return []
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        return [row[0] for row in rows]


def pending(conninfo: str) -> list[str]:
    """The shipped versions ``conninfo``'s database still lacks."""
    have = set(applied_versions(conninfo))
    return [version for version, _ in migrations() if version not in have]
