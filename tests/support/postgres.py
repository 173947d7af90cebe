"""A throwaway PostgreSQL for the tests: one server per session holding a migrated
template database, and a fresh copy of it per test (CREATE DATABASE … TEMPLATE is a
file copy, much faster than migrating each time)."""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from console.history.migrate import upgrade
from warmline.embedded_postgres import EmbeddedPostgres, start_postgres, url_for

TEMPLATE = "warmline_template"


def start_test_postgres() -> EmbeddedPostgres:
    """A fast (fsync off), throwaway server with the migrated template database."""
    server = start_postgres(durable=False)
    try:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
        upgrade(url_for(server.port, TEMPLATE))
    except BaseException:
        server.stop()
        raise
    return server


def create_database(server: EmbeddedPostgres) -> str:
    """A new database copied from the template; its URL."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(TEMPLATE)
            )
        )
    return url_for(server.port, name)


def create_empty_database(server: EmbeddedPostgres) -> str:
    """A new database without any schema (not copied from the template); its URL."""
    name = f"empty_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return url_for(server.port, name)


def drop_database(server: EmbeddedPostgres, url: str) -> None:
    """Drop the database of ``url``, closing any connection a test left open."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def start_durable_postgres(directory: Path, port: int | None = None) -> EmbeddedPostgres:
    """A durable server (fsync and synchronous commit on, as in production) on the
    cluster in ``directory`` (created the first time), Warmline's schema migrated.
    Started again with the same ``directory`` and ``port`` it recovers the same data;
    ``remove_cluster`` deletes it."""
    server = start_postgres(directory, port=port, durable=True)
    try:
        upgrade(server.url)
    except BaseException:
        server.stop()
        raise
    return server


def crash_postgres(server: EmbeddedPostgres) -> None:
    """Kill ``server`` as a crash would: SIGKILL to the postmaster and every backend at
    once (its process group: the server starts in a session of its own), no shutdown.
    The next start on its data directory runs crash recovery."""
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()


def remove_cluster(server: EmbeddedPostgres) -> None:
    """Stop ``server`` if it runs and delete its data (a durable server keeps it)."""
    server.stop()
    shutil.rmtree(server.home, ignore_errors=True)
