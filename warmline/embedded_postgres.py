"""A private PostgreSQL server process, for demo mode, `DATABASE_URL`-less runs and tests.

It runs the real ``postgres`` (from PATH, else the newest ``/usr/lib/postgresql/*/bin``,
else the binaries the ``pgserver`` wheel ships), with trust authentication on 127.0.0.1
and a unix socket in its own folder. PostgreSQL refuses to run as root: as root the
server runs as ``postgres`` (or ``nobody``), in a folder that user owns.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from warmline.embedded_redis import free_port

SYSTEM_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "warmline"
DATABASE = "warmline"
BINARIES = ("initdb", "postgres")
SOCKET_NAME_ROOM = len("/.s.PGSQL.65535.lock")
MAX_SOCKET_PATH = 107  # sun_path, less its final NUL
LOG_NAME = "postgres.log"


class EmbeddedPostgresError(RuntimeError):
    """No PostgreSQL server could be started; the message says why, in one line."""


def find_postgres_bin(
    path: str | None = None, system_root: Path | None = SYSTEM_ROOT, wheel: bool = True
) -> Path | None:
    """The folder holding ``initdb`` and ``postgres``: on ``path`` (default $PATH), then
    the highest version under ``system_root``, then the pgserver wheel's."""
    found = shutil.which("initdb", path=path)
    if found and shutil.which("postgres", path=path):
        folder = Path(found).resolve().parent  # /usr/local/bin/initdb may be a symlink
        if _complete(folder):
            return folder
    if system_root is not None and system_root.is_dir():
        versions = [d for d in system_root.iterdir() if d.name.isdigit()]
        for version in sorted(versions, key=lambda d: int(d.name), reverse=True):
            if _complete(version / "bin"):
                return version / "bin"
    if wheel:
        # Found, not imported: importing pgserver sets up things Warmline does not use.
        spec = importlib.util.find_spec("pgserver")
        if spec is None or spec.origin is None:
            return None
        bundled = Path(spec.origin).parent / "pginstall" / "bin"
        if _complete(bundled):
            return bundled
    return None


def _complete(folder: Path) -> bool:
    return all(os.access(folder / name, os.X_OK) for name in BINARIES)


@dataclass
class EmbeddedPostgres:
    """A started postgres; ``stop()`` (or the context manager) ends it."""

    port: int
    home: Path  # holds data/ and run/ (the unix socket)
    process: subprocess.Popen[bytes] = field(repr=False)
    ephemeral: bool = False  # the data is removed at stop

    @property
    def url(self) -> str:
        return url_for(self.port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: rolls back, exits
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.ephemeral:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def url_for(port: int, database: str = DATABASE) -> str:
    return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{database}"


def start_postgres(
    directory: str | os.PathLike[str] | None = None,
    port: int | None = None,
    durable: bool = True,
    binaries: Path | None = None,
) -> EmbeddedPostgres:
    """Start postgres on 127.0.0.1 (initdb first if the folder holds no cluster) and
    wait until it accepts connections. ``durable=False`` (tests) turns fsync off and
    removes the data at stop."""
    binaries = binaries or find_postgres_bin()
    if binaries is None:
        raise EmbeddedPostgresError(
            "cannot start an embedded PostgreSQL: no initdb/postgres on PATH or in "
            "/usr/lib/postgresql and the pgserver package is not installed; install one "
            "or set DATABASE_URL"
        )
    if not _complete(binaries):
        raise EmbeddedPostgresError(
            f"cannot start an embedded PostgreSQL: no initdb/postgres in {binaries}"
        )
    directory = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="warmline-pg-"))
    directory.mkdir(parents=True, exist_ok=True)
    owner = _run_as()
    if owner is not None:
        binaries = _binaries_for(binaries, owner)
    home = home_for(directory, owner)
    data, run = home / "data", home / "run"
    run.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        _chown_tree(home, owner)
    if not (data / "PG_VERSION").exists():
        _initdb(binaries, data, owner)
    port = port or free_port()
    args = [
        str(binaries / "postgres"),
        "-D",
        str(data),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"unix_socket_directories={_socket_dir(run)}",
        "-c",
        "max_connections=200",
    ]
    if not durable:
        args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    with (home / LOG_NAME).open("ab") as log:  # the server's own log, read on failure
        process = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
            env=_env(),
            **_user_options(owner),
        )
    server = EmbeddedPostgres(port=port, home=home, process=process, ephemeral=not durable)
    _wait_until_ready(server)
    return server


def start_or_reuse(directory: Path, durable: bool = True) -> tuple[str, EmbeddedPostgres | None]:
    """The URL of the server on the cluster in ``directory``: one another warmline
    command already runs (None: not ours to stop), else a new one the caller stops.
    A lock file keeps two commands starting at once from both starting one."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        running = running_postgres(directory)
        if running:
            return running, None
        server = start_postgres(directory, durable=durable)
        return server.url, server


def running_postgres(directory: Path) -> str | None:
    """The URL of a postgres already running on the cluster in ``directory`` (started
    by another warmline command), or None."""
    pidfile = home_for(directory, _run_as()) / "data" / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
        port = int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    url = url_for(port)
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return None
    return url


def home_for(directory: Path, owner: pwd.struct_passwd | None) -> Path:
    """Where a cluster for ``directory`` lives: ``directory`` itself, unless the server
    runs as another user who cannot reach it (root's ~/.cache, pytest's 0700 temp):
    then a folder of its own in /var/tmp, named after ``directory``."""
    if owner is None or _reachable(directory, owner):
        return directory
    digest = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
    base = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path(tempfile.gettempdir())
    return base / f"warmline-postgres-{digest}"


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged user to run as when we are root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise EmbeddedPostgresError(
        "cannot start an embedded PostgreSQL as root: no 'postgres' or 'nobody' user"
    )


def _reachable(directory: Path, owner: pwd.struct_passwd) -> bool:
    """Whether ``owner`` may walk down to ``directory`` (search permission on each parent)."""
    for parent in directory.resolve().parents:
        mode = parent.stat()
        if mode.st_uid == owner.pw_uid:
            bit = stat.S_IXUSR
        elif mode.st_gid == owner.pw_gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not mode.st_mode & bit:
            return False
    return True


def _binaries_for(binaries: Path, owner: pwd.struct_passwd) -> Path:
    """``binaries``, or a copy of their installation ``owner`` can reach (the pgserver
    wheel inside root's virtual environment): a server needs its lib/ and share/ too,
    and the wheel's binaries find their libraries in ``pgserver.libs`` beside the
    package (RPATH ``$ORIGIN/../../../pgserver.libs``), so the layout is kept."""
    if _reachable(binaries / "postgres", owner):
        return binaries
    install = binaries.parent  # …/pgserver/pginstall
    package = install.parent  # …/pgserver
    libs = package.parent / f"{package.name}.libs"
    digest = hashlib.sha256(str(install.resolve()).encode()).hexdigest()[:16]
    copy = Path(tempfile.gettempdir()) / f"warmline-pgbin-{digest}"
    found = copy / package.name / install.name / "bin"
    if not (found / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="warmline-pgbin-"))
        for part in ("bin", "lib", "share"):
            if (install / part).is_dir():
                shutil.copytree(install / part, staging / package.name / install.name / part)
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name)
        staging.chmod(0o755)
        with contextlib.suppress(OSError):  # another process copied it first
            staging.rename(copy)
        shutil.rmtree(staging, ignore_errors=True)
    return found


def _chown_tree(home: Path, owner: pwd.struct_passwd) -> None:
    os.chown(home, owner.pw_uid, owner.pw_gid)
    for root, dirs, files in os.walk(home):
        for name in dirs + files:
            os.chown(os.path.join(root, name), owner.pw_uid, owner.pw_gid, follow_symlinks=False)


def _user_options(owner: pwd.struct_passwd | None) -> dict[str, object]:
    if owner is None:
        return {}
    return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _socket_dir(run: Path) -> str:
    """The unix socket's folder, or none when its path would be too long for one."""
    return str(run) if len(str(run)) + SOCKET_NAME_ROOM <= MAX_SOCKET_PATH else ""


def _initdb(binaries: Path, data: Path, owner: pwd.struct_passwd | None) -> None:
    args = [
        str(binaries / "initdb"),
        "-D",
        str(data),
        "-U",
        SUPERUSER,
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C",
    ]
    done = subprocess.run(
        args, capture_output=True, env=_env(), check=False, **_user_options(owner)
    )
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise EmbeddedPostgresError(
            f"embedded PostgreSQL: initdb failed in {data}: {lines[-1] if lines else 'no message'}"
        )


def _wait_until_ready(server: EmbeddedPostgres, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    admin = url_for(server.port, "postgres")
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            lines = _log_tail(server.home)
            raise EmbeddedPostgresError(
                f"embedded postgres exited at start: {lines[-1] if lines else 'no message'}"
            )
        try:
            with psycopg.connect(admin, connect_timeout=1, autocommit=True) as conn:
                _create_database(conn)
            return
        except psycopg.OperationalError:
            time.sleep(0.05)
    server.stop()
    raise EmbeddedPostgresError(f"embedded postgres did not answer within {timeout:.0f} s")


def _log_tail(home: Path) -> list[str]:
    try:
        text = (home / LOG_NAME).read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-1:]


def _create_database(conn: psycopg.Connection) -> None:
    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
    if not exists:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
