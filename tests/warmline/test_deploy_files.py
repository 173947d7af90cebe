"""The deployment files agree with the configuration code: app.json (Heroku's Deploy
button), the Procfile, .python-version, README's configuration table and the lock files
(SPEC §6, issue on deploy). Each test reads the files as a platform would."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from console.config import ConfigError, Settings
from tests.support.config_vars import configuration_variables, required_variables

ROOT = Path(__file__).resolve().parents[2]
ADDON_VARIABLES = {"heroku-redis": "REDIS_URL", "heroku-postgresql": "DATABASE_URL"}
# What the Deploy form's required fields could hold: valid, made-up values.
FILLED_IN = {
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "token",
    "TWILIO_API_KEY": "SK" + "0" * 32,
    "TWILIO_API_SECRET": "secret",
    "TWILIO_CALLER_ID": "+15551234567",
    "PUBLIC_BASE_URL": "https://warmline-example.herokuapp.com",
    "SECRET_KEY": "generated",
    "REDIS_URL": "rediss://:password@ec2-1-2-3-4.compute-1.amazonaws.com:12345",
    "DATABASE_URL": "postgres://user:password@host:5432/name?sslmode=require",
}


def app_json() -> dict:
    return json.loads((ROOT / "app.json").read_text())


def app_json_values() -> dict[str, str]:
    """The variables app.json sets itself (``value``), as the Deploy button does."""
    return {name: entry["value"] for name, entry in app_json()["env"].items() if "value" in entry}


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def readme_table() -> dict[str, str]:
    """README's configuration table: variable -> its default cell."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z_]+)` \| .* \| (.*) \|$", section, re.MULTILINE)
    return dict(rows)


def test_app_json_names_both_buildpacks_nodejs_first_and_both_addons() -> None:
    manifest = app_json()
    assert [b["url"] for b in manifest["buildpacks"]] == ["heroku/nodejs", "heroku/python"]
    plans = {addon["plan"].split(":")[0]: addon for addon in manifest["addons"]}
    assert set(plans) == set(ADDON_VARIABLES)
    for service, variable in ADDON_VARIABLES.items():
        # the add-on sets the variable the configuration reads, so the form must not ask
        assert plans[service].get("as", variable.removesuffix("_URL")) + "_URL" == variable
        assert variable not in manifest["env"]


def test_app_json_asks_for_every_required_variable_and_generates_the_secret() -> None:
    env = app_json()["env"]
    assert set(env) <= configuration_variables(), set(env) - configuration_variables()
    assert env["SECRET_KEY"].get("generator") == "secret"
    for name in required_variables() - {"SECRET_KEY"}:
        assert name in env, f"app.json does not ask for {name}"
        assert env[name].get("required", True) is True, name
        assert "value" not in env[name], f"{name} must be the deployer's own"
    for name, entry in env.items():
        assert len(entry.get("description", "")) > 20, f"{name} needs a description"


def test_app_json_values_pass_the_configuration_check() -> None:
    """What the Deploy button sets, with the form filled in, is a valid configuration."""
    values = app_json_values()
    Settings.from_env({**FILLED_IN, **values})
    with pytest.raises(ConfigError):  # the check itself is not vacuous
        Settings.from_env({**FILLED_IN, **values, "REDIS_MAX_CONNECTIONS": "one"})


def test_procfile_releases_with_db_upgrade_then_the_configuration_check() -> None:
    processes = procfile()
    assert processes["web"] == "warmline serve"
    assert processes["release"] == "warmline db upgrade && warmline check --config"
    assert set(processes) == {"web", "release"}


def test_python_version_is_one_the_project_supports() -> None:
    version = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(r"3\.[0-9]+", version), version
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11" and int(version.split(".")[1]) >= 11


def test_readme_table_lists_exactly_the_variables_the_configuration_reads() -> None:
    table = readme_table()
    assert set(table) == configuration_variables(), (
        f"missing from README: {sorted(configuration_variables() - set(table))}, "
        f"not read by the code: {sorted(set(table) - configuration_variables())}"
    )
    for name in required_variables():
        assert table[name] == "required", name
    assert {name for name, default in table.items() if default == "required"} == (
        required_variables()
    )


def test_readme_defaults_are_the_codes_defaults() -> None:
    """A default cell that is one `value`: setting the variable to it changes nothing."""
    baseline = Settings.from_env(FILLED_IN)
    checked = 0
    for name, cell in readme_table().items():
        value = re.fullmatch(r"`([^`]+)`", cell)
        if value is None or name in ("WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR"):
            continue
        assert Settings.from_env({**FILLED_IN, name: value[1]}) == baseline, name
        checked += 1
    assert checked >= 25, checked


def _pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    return dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==([^ ;\\\n]+)", text, re.MULTILINE))


@pytest.mark.parametrize("lock", ["requirements.txt", "requirements-dev.txt"])
def test_python_locks_are_hashed_and_name_no_registry(lock: str) -> None:
    text = (ROOT / lock).read_text()
    entries = re.split(r"\n(?=[a-z0-9])", text)
    requirements = [e for e in entries if re.match(r"[a-z0-9]", e)]
    assert len(requirements) == len(_pins(lock)) > 40
    for entry in requirements:
        assert "--hash=sha256:" in entry, entry.splitlines()[0]
    assert not re.search(r"--(extra-)?index-url|--find-links|--trusted-host|://", text)
    pins = _pins(lock)
    assert {"hatchling", "hypercorn", "wsproto"} <= set(pins)  # the build backend too


def test_python_locks_agree_with_each_other_and_with_pyproject() -> None:
    runtime, dev = _pins("requirements.txt"), _pins("requirements-dev.txt")
    assert set(runtime) <= set(dev), set(runtime) - set(dev)
    assert {name: dev[name] for name in runtime} == runtime
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name = re.match(r"[A-Za-z0-9._-]+", requirement)[0].lower().replace("_", "-")
        assert name in runtime, f"{name} is not locked"
        exact = re.search(r"==([0-9.]+)", requirement)
        if exact:  # what the app reaches into is pinned to the version tested
            assert runtime[name] == exact[1], name
    for requirement in project["optional-dependencies"]["test"]:
        name = re.match(r"[A-Za-z0-9._-]+", requirement)[0].lower()
        assert name in dev, f"{name} is not locked"


def test_package_lock_records_versions_and_integrity_but_no_download_addresses() -> None:
    assert "package-lock=false" not in (ROOT / ".npmrc").read_text()
    lock = json.loads((ROOT / "package-lock.json").read_text())
    declared = json.loads((ROOT / "package.json").read_text())["dependencies"]
    packages = {k: v for k, v in lock["packages"].items() if k}
    for dependency in declared:
        assert f"node_modules/{dependency}" in packages, dependency
    for path, entry in packages.items():
        assert re.fullmatch(r"sha512-[A-Za-z0-9+/=]+", entry["integrity"]), path
        assert "resolved" not in entry, path
