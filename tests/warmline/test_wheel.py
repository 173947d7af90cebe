"""The wheel a deployment installs: it carries the views' files (static/ and templates/
inside warmline/, the simulator's page inside simulator/), and `warmline demo`, run from
a fresh virtual environment in another directory, serves them.

How it stays fast and needs no index beyond the build itself:

- the wheel is built with ``pip wheel --no-deps`` (pip fetches the build backend,
  hatchling, as it does for ``pip install -e``);
- the fresh venv is made without pip, and this interpreter's pip installs the wheel
  into it (``pip --python VENV install --no-deps --no-index``), so the ``warmline``
  script runs the venv's interpreter;
- Warmline's dependencies are not installed again: a ``.pth`` file in the venv names
  this interpreter's site-packages directory, and nothing else. The lines of a ``.pth``
  are added to sys.path as they are; the ``.pth`` files inside that directory (the
  editable install's, which names the checkout) are not read. The venv's own
  site-packages comes first, so ``warmline``, ``console``, ``webhooks`` and
  ``simulator`` are the wheel's; the test checks that, and that the checkout is not on
  sys.path.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from warmline.embedded_redis import free_port

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]

# (path in the wheel, the file in the checkout it is a copy of)
CARRIED = {
    "warmline/static/css/app.css": "static/css/app.css",
    "warmline/static/favicon.svg": "static/favicon.svg",
    "warmline/static/js/agent.js": "static/js/agent.js",
    "warmline/templates/login.html": "templates/login.html",
    "warmline/templates/base.html": "templates/base.html",
    "simulator/static/index.html": "simulator/static/index.html",
    "simulator/static/sim.css": "simulator/static/sim.css",
    "simulator/static/sim.js": "simulator/static/sim.js",
}
PACKAGES = ("warmline", "console", "webhooks", "simulator")


def run(command: list[str | Path], **kwargs) -> subprocess.CompletedProcess[str]:
    """Run ``command``; on failure, an assertion that shows what it printed."""
    result = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=kwargs.pop("timeout", 180),
        **kwargs,
    )
    assert result.returncode == 0, (
        f"{command} exited with {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result


def backend_output(pip_verbose_log: str) -> list[str]:
    """The lines the build backend printed in ``pip -v`` output (its hooks' sections,
    not the nested pip that installs the backend)."""
    lines, inside, deps = [], False, False
    for line in pip_verbose_log.splitlines():
        text = line.strip()
        if text.startswith("Running command installing"):
            deps = True
        elif deps:
            deps = not text.endswith("dependencies: finished with status 'done'")
        elif text.startswith("Running command "):
            inside = True
        elif inside and ": finished with status" in text:
            inside = False
        elif inside:
            lines.append(text)
    return lines


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    result = run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", out, ROOT],
        timeout=300,
    )
    warnings = [line for line in backend_output(result.stdout) if "warn" in line.lower()]
    assert not warnings, "the build backend warned:\n" + "\n".join(warnings)
    (built,) = out.glob("warmline-*.whl")
    return built


def test_the_wheel_carries_the_views_files(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for inside, source in CARRIED.items():
            assert inside in names, f"{inside} is missing from {wheel.name}"
            assert archive.read(inside) == (ROOT / source).read_bytes(), inside
        (metadata,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
        entry_points = archive.read(metadata).decode()
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names
    assert not [name for name in names if name.split("/")[0] in ("tests", "bench")]
    # No loose top-level folders: a wheel installs static/ and templates/ only inside
    # warmline/, where warmline.assets looks.
    assert not [name for name in names if name.split("/")[0] in ("static", "templates")]
    assert "warmline = warmline.cli:main" in entry_points


def fresh_venv(directory: Path, wheel: Path) -> Path:
    """A new venv with the wheel installed and this interpreter's dependencies visible;
    its python."""
    run([sys.executable, "-m", "venv", "--without-pip", directory])
    python = directory / "bin" / "python"
    run(
        [
            *(sys.executable, "-m", "pip", "--python", python, "install"),
            *("--no-deps", "--no-index", "--no-compile", "--disable-pip-version-check"),
            wheel,
        ]
    )
    site = Path(
        run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
        ).stdout.strip()
    )
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site / "warmline-test-dependencies.pth").write_text("".join(f"{p}\n" for p in ours))
    return python


def clean_environment(cache: Path) -> dict[str, str]:
    """This process's environment without what would put the checkout or a shared
    Redis in the way; the demo's Redis keeps its files under ``cache``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name
        not in (
            "PYTHONPATH",
            "PYTHONHOME",
            "PYTHONSTARTUP",
            "REDIS_URL",
            "DATABASE_URL",
            "VIRTUAL_ENV",
        )
    }
    env["PYTHONNOUSERSITE"] = "1"
    env["XDG_CACHE_HOME"] = str(cache)
    return env


PROBE = """
import json, sys
import console, simulator, warmline, webhooks
from warmline.assets import asset_dir
print(json.dumps({
    "modules": [m.__file__ for m in (warmline, console, webhooks, simulator)],
    "static": str(asset_dir("static")),
    "templates": str(asset_dir("templates")),
    "path": sys.path,
}))
"""


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the demo exited early:\n{log.read_text()}"
        try:
            if get(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer 200 in 60 s:\n{log.read_text()}")


def test_the_installed_wheel_serves_its_own_views_from_another_directory(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    python = fresh_venv(venv, wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The demo starts its own PostgreSQL under the cache; as root it runs as another
    # user, who must be able to reach it (pytest's temp folders are 0700).
    cache = Path(tempfile.mkdtemp(prefix="warmline-wheel-cache-"))
    cache.chmod(0o755)
    env = clean_environment(cache)

    found = json.loads(run([python, "-c", PROBE], cwd=elsewhere, env=env).stdout)
    for module in found["modules"]:
        assert Path(module).is_relative_to(venv), found
    package = Path(found["modules"][0]).parent
    assert Path(found["static"]) == package / "static", found
    assert Path(found["templates"]) == package / "templates", found
    on_path = {Path(entry or elsewhere).resolve() for entry in found["path"]}
    assert ROOT not in on_path, found["path"]

    port, simulator_port = free_port(), free_port()
    log = tmp_path / "demo.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                *(venv / "bin" / "warmline", "demo"),
                *("--port", str(port), "--simulator-port", str(simulator_port)),
            ],
            cwd=elsewhere,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        app = f"http://127.0.0.1:{port}"
        wait_healthy(process, f"{app}/healthz", log)

        status, kind, body = get(f"{app}/static/css/app.css")
        assert status == 200 and kind.startswith("text/css"), (status, kind)
        assert body == (ROOT / "static" / "css" / "app.css").read_bytes()

        status, kind, body = get(f"{app}/login")
        page = body.decode()
        assert status == 200 and kind.startswith("text/html"), (status, kind, page)
        assert "<title>Sign in · Warmline</title>" in page
        assert '<link rel="stylesheet" href="/static/css/app.css">' in page
        assert '<form class="login-form" method="post" action="/login">' in page
        assert "{{" not in page and "{%" not in page

        status, kind, body = get(f"http://127.0.0.1:{simulator_port}/static/sim.css")
        assert status == 200 and kind.startswith("text/css"), (status, kind)
        assert body == (ROOT / "simulator" / "static" / "sim.css").read_bytes()

        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(cache, ignore_errors=True)
    output = log.read_text()
    assert code == 0, output
    assert "Traceback" not in output, output
