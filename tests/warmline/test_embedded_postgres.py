"""warmline.embedded_postgres: which binaries run, a real server started, reused by a
second command on the same folder, and run as an unprivileged user when we are root."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from warmline.embedded_postgres import (
    EmbeddedPostgresError,
    find_postgres_bin,
    running_postgres,
    start_or_reuse,
    start_postgres,
)


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder an unprivileged server may reach (pytest's own temp folder is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="warmline-test-pg-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def fake_install(root: Path, version: str) -> Path:
    folder = root / version / "bin"
    folder.mkdir(parents=True)
    for name in ("initdb", "postgres"):
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(stat.S_IRWXU)
    return folder


def test_the_newest_system_version_is_chosen(tmp_path: Path) -> None:
    fake_install(tmp_path, "9")
    newest = fake_install(tmp_path, "16")
    fake_install(tmp_path, "15")
    (tmp_path / "16beta").mkdir()
    assert find_postgres_bin(path="", system_root=tmp_path, wheel=False) == newest


def test_path_comes_before_the_system_folders(tmp_path: Path) -> None:
    on_path = fake_install(tmp_path / "path", "1")
    fake_install(tmp_path / "system", "16")
    found = find_postgres_bin(path=str(on_path), system_root=tmp_path / "system", wheel=False)
    assert found == on_path


def test_nothing_found_is_none_and_starting_says_so_in_one_line(folder: Path) -> None:
    assert find_postgres_bin(path="", system_root=None, wheel=False) is None
    with pytest.raises(EmbeddedPostgresError) as caught:
        start_postgres(folder, binaries=folder / "nowhere")
    assert "\n" not in str(caught.value)


def test_the_wheels_binaries_run_a_server_when_nothing_else_is_installed(folder: Path) -> None:
    """A fresh machine: no PostgreSQL on PATH or in /usr/lib/postgresql, only pgserver."""
    binaries = find_postgres_bin(path="", system_root=None)
    assert binaries is not None and "pgserver" in str(binaries)
    with start_postgres(folder, durable=False, binaries=binaries) as server:
        with psycopg.connect(server.url) as conn:
            row = conn.execute("SELECT current_database(), current_user").fetchone()
        assert row == ("warmline", "warmline")


def test_a_second_command_reuses_the_running_server(folder: Path) -> None:
    url, server = start_or_reuse(folder)
    assert server is not None
    try:
        again, none = start_or_reuse(folder)
        assert (again, none) == (url, None)
        with psycopg.connect(again) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()
    assert running_postgres(folder) is None
    url, server = start_or_reuse(folder)  # the same cluster, started again
    assert server is not None
    server.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to another user")
def test_as_root_the_server_runs_as_an_unprivileged_user(folder: Path) -> None:
    with start_postgres(folder, durable=False) as server:
        status = Path(f"/proc/{server.process.pid}/status").read_text()
        uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
        assert int(uid) != 0
