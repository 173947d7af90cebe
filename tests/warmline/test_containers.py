"""The Dockerfile and compose.yaml, checked without Docker (this machine cannot pull base
images): hadolint on the Dockerfile, its stages read as text, compose.yaml read with
PyYAML against the configuration code and the Procfile; then compose's release and web
commands with its environment, and the image's health check, run here against real
Redis and PostgreSQL. Nothing here builds the image or starts a container."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from console.config import Settings, database_url
from console.web import views
from simulator.testing import ACCOUNT_SID, API_KEY, API_SECRET, AUTH_TOKEN, TwilioDouble
from tests.support.config_vars import (
    SERVE_VARIABLES,
    configuration_variables,
    required_variables,
)
from tests.support.servers import AppServer, wait_healthy
from warmline.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
BIN = Path(sys.executable).parent  # the venv's scripts: hadolint, warmline
SERVICES = {"redis", "postgres", "migrate", "web"}
BUILT = {"migrate", "web"}  # the services that run Warmline's image


# --- Reading the files -------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """A Dockerfile's instructions as (KEYWORD, arguments), continuations joined and
    comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        result.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each stage, each list starting with its FROM."""
    found: list[list[tuple[str, str]]] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            found.append([])
        assert found, f"{keyword} before the first FROM"
        found[-1].append((keyword, args))
    return found


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict((part.strip() for part in line.split(":", 1)) for line in lines if line.strip())


def release_argv(command: str | list[str]) -> list[str]:
    """A command as the program and arguments run: a shell line (the Procfile's, or a
    compose string with ``&&``) as ``sh -c`` runs it."""
    if isinstance(command, list):
        return command
    words = shlex.split(command)
    return ["sh", "-c", command] if {"&&", "||", ";", "|"} & set(words) else words


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def service_env(service: Mapping) -> dict[str, str]:
    """A service's ``environment``, written as a mapping or as NAME=value lines."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


_REFERENCE = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:\?|:-)(?P<arg>[^}]*))?\}")


def interpolate(value: str, dot_env: Mapping[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?message} (an unset or empty NAME
    stops compose with the message), as compose reads them from .env."""

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        given = dot_env.get(match["name"], "")
        if match["op"] == ":?" and not given:
            raise ValueError(f"required variable {match['name']} is missing: {match['arg']}")
        return given or (match["arg"] if match["op"] == ":-" else "")

    return _REFERENCE.sub(one, value)


def _glob(pattern: str) -> str:
    """A .dockerignore pattern as a regular expression over slash-separated paths."""
    out = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
        out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
            token, re.escape(token)
        )
    return out


def in_build_context(path: str, ignore: str) -> bool:
    """Whether .dockerignore's ``ignore`` lets ``path`` into the build context: the last
    pattern matching it or a folder above it wins; ``!`` lets it back in."""
    parts = path.split("/")
    included = True
    for line in ignore.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        regex = _glob(line.removeprefix("!").strip("/"))
        if any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            included = negated
    return included


# --- The Dockerfile ----------------------------------------------------------------


def hadolint() -> Path:
    path = BIN / "hadolint"
    if not path.is_file():
        pytest.fail(f"{path} is missing: install the test extras (pip install -e '.[test]')")
    return path


def test_hadolint_passes_on_the_dockerfile() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_flags_an_unpinned_base_image() -> None:
    """The linter lints: a Dockerfile it should reject is rejected."""
    result = subprocess.run(
        [hadolint(), "--no-color", "-"],
        input="FROM python\nRUN pip install quart\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3013" in result.stdout


def test_the_dockerfile_builds_in_stages_and_runs_warmline_serve_as_non_root() -> None:
    *builders, final = stages(DOCKERFILE.read_text())
    froms = [stage[0][1].split() for stage in builders]
    names = {words[-1] for words in froms if len(words) == 3 and words[1].upper() == "AS"}
    assert len(builders) >= 2 and len(names) == len(builders), "every build stage is named"
    copied_from = {m for k, a in final if k == "COPY" for m in re.findall(r"--from=(\S+)", a)}
    assert copied_from == names, "the runtime copies the result of every build stage"
    assert not [a for k, a in final if k == "RUN" and re.search(r"\b(pip|npm)\b", a)], (
        "nothing is installed in the runtime stage"
    )

    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    assert users[-1].split(":")[0] not in ("root", "0"), users[-1]
    cmds = [args for keyword, args in final if keyword == "CMD"]
    assert cmds and json.loads(cmds[-1]) == ["warmline", "serve"]
    assert shlex.split(procfile()["web"]) == ["warmline", "serve"]  # what Heroku runs
    assert [a for k, a in final if k == "EXPOSE"] == [str(Settings.port)]  # the default


def test_the_image_holds_the_locked_dependencies_and_every_file_the_views_serve() -> None:
    text = DOCKERFILE.read_text()
    runs = " ".join(a for k, a in instructions(text) if k == "RUN")
    assert "npm ci" in runs, "npm installs exactly package-lock.json"
    assert "--require-hashes -r requirements.txt" in runs
    assert re.search(r"pip install [^&]*--no-deps [^&]*warmline-\S*\.whl", runs)
    served = [views.VOICE_SDK, views.LIBPHONENUMBER, *(p for p, _ in views.UPLOT.values())]
    for path in served:
        assert f"test -f {path.as_posix()}" in runs, f"the build does not check {path}"
    # views.py looks for node_modules/ in the working directory.
    final = stages(text)[-1]
    assert [a for k, a in final if k == "WORKDIR"] == ["/app"]
    assert any(a.endswith(" ./node_modules") for k, a in final if k == "COPY"), final


def test_every_pinned_base_image_is_one_tag_not_latest() -> None:
    images = [a.split()[0] for k, a in instructions(DOCKERFILE.read_text()) if k == "FROM"]
    for image in images:
        _, _, tag = image.partition(":")
        assert tag and tag != "latest" and "$" not in image, image
    python = {image for image in images if image.startswith("python:")}
    assert len(python) == 1, "the builder and the runtime share one Python image"
    # The Python that Heroku (.python-version) and CI run.
    series = (ROOT / ".python-version").read_text().strip()
    assert python.pop().startswith(f"python:{series}."), f"not Python {series}"


def test_the_build_context_holds_what_the_dockerfile_copies_and_no_secret() -> None:
    ignore = (ROOT / ".dockerignore").read_text()
    sources: list[str] = []
    for keyword, args in instructions(DOCKERFILE.read_text()):
        words = args.split()
        if keyword in ("COPY", "ADD") and not any(w.startswith("--from=") for w in words):
            sources += [w for w in words[:-1] if not w.startswith("--")]
    assert "requirements.txt" in sources and "pyproject.toml" in sources
    for source in sources:
        tracked = subprocess.run(
            ["git", "ls-files", source], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
        for path in tracked or [source]:
            assert in_build_context(path, ignore), f"{path} is left out of the build context"
    for path in (
        ".env",
        ".git/HEAD",
        ".venv/bin/python",
        "node_modules/uplot/package.json",
        "test-artifacts/agent.png",
        "tests/conftest.py",
        "warmline/__pycache__/cli.cpython-311.pyc",
    ):
        assert not in_build_context(path, ignore), f"{path} is sent to the build"


# --- compose.yaml ------------------------------------------------------------------


def test_compose_runs_redis_postgres_the_release_phase_then_the_app() -> None:
    services = compose()["services"]
    assert set(services) == SERVICES

    migrate, web = services["migrate"], services["web"]
    assert release_argv(migrate["command"]) == release_argv(procfile()["release"])
    assert migrate["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    assert web["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "redis": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    assert "command" not in web, "web runs the image's CMD, `warmline serve`"
    assert web["ports"] == [f"{Settings.port}:{Settings.port}"]
    for name in ("redis", "postgres"):
        assert services[name]["healthcheck"]["test"], f"{name} has no health check"
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])


def test_compose_images_are_pinned_and_warmline_is_built_from_the_dockerfile() -> None:
    services = compose()["services"]
    assert {name for name, s in services.items() if "build" in s} == BUILT
    assert len({services[name]["image"] for name in BUILT}) == 1, "both run one image"
    for name in SERVICES - BUILT:
        image = services[name]["image"]
        _, _, tag = image.partition(":")
        assert tag and tag != "latest" and "$" not in image, f"{name}: {image}"
        assert re.fullmatch(r"\d+(\.\d+)+(-\w+)?", tag), f"{name}: {image} is not one release"


def test_compose_sets_only_variables_the_configuration_reads() -> None:
    services = compose()["services"]
    known = configuration_variables()
    for name in BUILT:
        unknown = set(service_env(services[name])) - known
        assert not unknown, f"{name} sets {sorted(unknown)}, which Warmline never reads"


def test_compose_refuses_to_start_without_each_required_variable() -> None:
    env = service_env(compose()["services"]["web"])
    required = required_variables()
    assert required <= set(env), f"web lacks {sorted(required - set(env))}"
    dot_env = {name: "x" for name in required} | {"POSTGRES_PASSWORD": "x"}
    for name in sorted(required):
        assert env[name].startswith(f"${{{name}:?"), f"{name} must be ${{{name}:?message}}"
        without = {k: v for k, v in dot_env.items() if k != name}
        with pytest.raises(ValueError, match=f"required variable {name} is missing"):
            {k: interpolate(v, without) for k, v in env.items()}


def test_compose_optional_variables_are_passed_through_empty_which_means_unset() -> None:
    env = service_env(compose()["services"]["web"])
    fixed = {"REDIS_URL", "DATABASE_URL"}
    optional = set(env) - required_variables() - fixed
    assert optional, "no optional variable is passed through"
    for name in optional:
        assert env[name] == f"${{{name}:-}}", f"{name}: {env[name]!r} is not ${{{name}:-}}"
    base = {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_KEY": API_KEY,
        "TWILIO_API_SECRET": API_SECRET,
        "TWILIO_CALLER_ID": "+15550001111",
        "PUBLIC_BASE_URL": "https://warmline.example.com",
        "SECRET_KEY": "compose-secret",
    }
    # An empty value reads as unset; serve's own (WEB_CONCURRENCY) is read the same
    # way by warmline/cli.py and is exercised by the run below.
    for name in sorted(optional - SERVE_VARIABLES):
        assert Settings.from_env(base | {name: ""}) == Settings.from_env(base), name


def test_compose_points_warmline_at_its_redis_and_postgres() -> None:
    services = compose()["services"]
    web, migrate, postgres = (service_env(services[n]) for n in ("web", "migrate", "postgres"))
    assert migrate == web, "the release phase checks the settings the app runs with"
    redis = urlsplit(web["REDIS_URL"])
    assert (redis.scheme, redis.hostname, redis.port) == ("redis", "redis", 6379)
    password = {"POSTGRES_PASSWORD": "s3cret"}
    url = database_url({"DATABASE_URL": interpolate(web["DATABASE_URL"], password)})
    parts = urlsplit(url)
    assert (parts.hostname, parts.port) == ("postgres", 5432)
    assert parts.username == postgres["POSTGRES_USER"]
    assert parts.password == interpolate(postgres["POSTGRES_PASSWORD"], password) == "s3cret"
    assert parts.path == "/" + postgres["POSTGRES_DB"]


# --- The services' commands, run here ----------------------------------------------


def healthcheck_command() -> list[str]:
    final = stages(DOCKERFILE.read_text())[-1]
    checks = [args for keyword, args in final if keyword == "HEALTHCHECK"]
    assert len(checks) == 1, "the runtime stage has one HEALTHCHECK"
    argv = json.loads(checks[0][checks[0].index("CMD ") + 4 :])
    assert argv[0] == "python" and "/healthz" in argv[-1]
    return [sys.executable, *argv[1:]]


def start(argv: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start the image's CMD with its output in ``log``; the caller stops it."""
    with log.open("wb") as sink:
        return subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.STDOUT)


async def run(argv: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, argv, env=env, capture_output=True, text=True, check=False
    )


async def test_the_services_commands_migrate_serve_and_pass_the_health_check(
    redis_server: EmbeddedRedis, twilio: TwilioDouble, empty_database_url: str, tmp_path: Path
) -> None:
    """compose's sequence with its environment: migrate's command on an empty database,
    then the image's CMD (optional settings empty), then its HEALTHCHECK. Redis and
    PostgreSQL are this session's, not the compose hosts; the venv's scripts come
    first on PATH, as the image's do."""
    services = compose()["services"]
    port = free_port()
    dot_env = {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_KEY": API_KEY,
        "TWILIO_API_SECRET": API_SECRET,
        "TWILIO_CALLER_ID": "+15550001111",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "SECRET_KEY": "compose-secret",
        "POSTGRES_PASSWORD": "unused",
    }
    here = {
        "DATABASE_URL": empty_database_url,
        "REDIS_URL": redis_server.url,
        "TWILIO_API_BASE_URL": twilio.base_url,
        "PORT": str(port),  # compose's 5000 may be taken on this machine
    }
    # This process's environment without any setting, so only compose's reach the app.
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in configuration_variables() and not k.startswith("TWILIO_")
    }
    clean["PATH"] = f"{BIN}{os.pathsep}{clean.get('PATH', '')}"

    def environment(name: str) -> dict[str, str]:
        given = {k: interpolate(v, dot_env) for k, v in service_env(services[name]).items()}
        return clean | given | here

    migrate = await run(release_argv(services["migrate"]["command"]), environment("migrate"))
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert migrate.stdout.startswith("applied "), migrate.stdout

    cmd = [a for k, a in stages(DOCKERFILE.read_text())[-1] if k == "CMD"][-1]
    log = tmp_path / "web.log"
    server = AppServer(
        f"http://127.0.0.1:{port}", start(json.loads(cmd), environment("web"), log), log
    )
    probe = healthcheck_command()
    try:
        await wait_healthy(server)
        healthy = await run(probe, clean | {"PORT": str(port)})
    finally:
        code = await asyncio.to_thread(server.terminate)
    assert healthy.returncode == 0, healthy.stderr + server.output()
    assert code == 0, server.output()
    stopped = await run(probe, clean | {"PORT": str(port)})
    assert stopped.returncode != 0, "the health check passes with nothing listening"
