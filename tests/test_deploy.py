"""The deploy files as an operator meets them: compose.yaml, the systemd unit, the Dockerfile,
.env.example, LICENSE and CHANGELOG.md, and the wheel a `pip install` builds.

Each test asserts something a person would notice: a misspelt setting name that is silently
ignored, a missing volume that loses the database on `docker compose down`, a unit that runs
unhardened, a sandbox the unit's own filters would break, an image that does not build.

What needs a tool this machine may lack skips with the reason: `docker compose config` (or
`docker-compose`, or check-jsonschema's copy of the Compose schema), `systemd-analyze`, a
wheel build (PyPI for its build requirements). Building the image takes minutes: it runs only
with ORCHESTRATOR_TEST_DOCKER_BUILD=1, or in CI (CI=true) when a Docker daemon answers, and
then needs the base image and PyPI (ORCHESTRATOR_TEST_DOCKER_BUILD_NETWORK=host gives the build
the host's network, for a daemon without a bridge).
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

import pytest
import yaml
from dotenv import dotenv_values
from pydantic import AliasChoices, BaseModel, SecretStr
from sqlalchemy.engine import make_url

from bot.cli import build_parser
from bot.config_check import CONFIG_ENV
from bot.settings import HealthCheckSettings, ReportSettings, Settings, load_settings
from core.health import daily
from core.sandbox import Sandbox, SandboxConfig

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
UNIT = ROOT / "deploy" / "orchestrator.service"
CLI_WRAPPER = ROOT / "deploy" / "orchestrator-cli"
ENV_EXAMPLE = ROOT / ".env.example"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

# Names the deploy files may use that are not fields of the settings, and who reads them.
NOT_SETTINGS = {
    CONFIG_ENV: "bot.config_check (the orchestrator.toml to read)",
    "DOCKER_HOST": "the Docker SDK (this machine's engine)",
    "POSTGRES_PASSWORD": "compose.yaml (its postgres service and the bot's DATABASE_URL)",
}
# Settings another part of issue 17 adds; each must become a real setting, then leave this list.
PENDING_SETTINGS: dict[str, str] = {}  # names documented before their setting exists: name -> why

SETTING_LINE = re.compile(r"^#?([A-Z][A-Z0-9_]*)=(.*)$")  # `NAME=value`, or `#NAME=value` commented out
INTERPOLATION = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?::?[-?+][^}]*)?\}")


# ---------------------------------------------------------------------------------- helpers


def _env_names(model: type[BaseModel]) -> dict[str, str]:
    return {
        f.validation_alias.choices[0]: name
        for name, f in model.model_fields.items()
        if isinstance(f.validation_alias, AliasChoices) and isinstance(f.validation_alias.choices[0], str)
    }


SETTINGS_ENV = {**_env_names(Settings), **_env_names(ReportSettings), **_env_names(HealthCheckSettings)}
SECRET_ENV = {
    env for env, field in _env_names(Settings).items()
    if SecretStr in (Settings.model_fields[field].annotation, *get_args(Settings.model_fields[field].annotation))
}  # fmt: skip


def _unknown(names: set[str]) -> list[str]:
    known = set(SETTINGS_ENV) | set(NOT_SETTINGS) | set(PENDING_SETTINGS)
    return [
        f"{n} (did you mean {', '.join(difflib.get_close_matches(n, known, n=2)) or 'nothing close'}?)"
        for n in sorted(names - known)
    ]


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of a service's volumes, in the short (`src:target[:mode]`) or long syntax."""
    found: dict[str, str] = {}
    for item in service.get("volumes") or []:
        if isinstance(item, dict):
            found[item["target"]] = item.get("source", "")
        else:
            source, target, *_ = str(item).split(":")
            found[target] = source
    return found


def _run(argv: list[str], *, timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def json_args(self) -> list[str]:
        value = json.loads(self.args)
        assert isinstance(value, list), f"{self.keyword} should use the JSON (exec) form: {self.args}"
        return [str(v) for v in value]


def _dockerfile_stages() -> list[list[Instruction]]:
    """The Dockerfile's instructions per stage (continuation lines joined, comments dropped)."""
    stages: list[list[Instruction]] = [[]]
    logical = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        keyword, _, args = (logical + line).partition(" ")
        logical = ""
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append(Instruction(keyword.upper(), args.strip()))
    return stages


def _final_stage() -> list[Instruction]:
    return _dockerfile_stages()[-1]


def _dockerfile_env(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage:
        if ins.keyword == "ENV":
            for word in shlex.split(ins.args):
                key, _, value = word.partition("=")
                env[key] = value
    return env


def _unit() -> dict[str, dict[str, list[str]]]:
    """The unit as systemd reads it: sections of keys, each with every value it was given."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"a setting outside any section: {line}"
        assert "=" in line, f"not a KEY=value line: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _service_value(key: str) -> str:
    """The last value of a [Service] key (what systemd uses for a single-valued setting)."""
    values = _unit()["Service"].get(key)
    assert values, f"the unit sets no {key}="
    return values[-1]


def _env_example_lines() -> list[tuple[int, str, str, bool]]:
    """(line number, name, value, active) for every setting line, active or commented out."""
    found = []
    for number, line in enumerate(ENV_EXAMPLE.read_text(encoding="utf-8").splitlines(), start=1):
        if match := SETTING_LINE.match(line):
            found.append((number, match.group(1), match.group(2), not line.startswith("#")))
    return found


def _reachable(url: str, timeout: float = 5.0) -> str | None:
    """None when the URL answers, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return None
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


# ---------------------------------------------------------------------------------- compose.yaml


def test_compose_runs_the_bot_beside_ollama_chroma_and_postgres() -> None:
    services = _compose()["services"]
    assert {"bot", "ollama", "chroma", "postgres"} <= set(services)
    assert services["bot"].get("build"), "the bot is built from this repository's Dockerfile"
    for name, service in services.items():
        if "image" in service and name != "bot":
            image = service["image"]
            assert re.search(r":[\w][\w.-]*$", image) and not image.endswith(":latest"), (
                f"{name}: pin the image to a version ({image}), so an upgrade is a decision"
            )


def test_compose_the_bot_waits_for_healthy_services() -> None:
    services = _compose()["services"]
    depends = services["bot"]["depends_on"]
    for name in ("ollama", "chroma", "postgres"):
        assert depends[name]["condition"] == "service_healthy", f"the bot must wait for {name} to be healthy"
        test = services[name]["healthcheck"]["test"]
        assert test and test[0] in {"CMD", "CMD-SHELL"}, f"{name} needs a healthcheck"
    for name, condition in depends.items():
        if condition["condition"] == "service_completed_successfully":
            assert services[name].get("restart", "no") == "no", f"{name} runs once: it must not restart"
    bot_check = " ".join(services["bot"]["healthcheck"]["test"])
    assert "/healthz" in bot_check and "ORCHESTRATOR_METRICS_PORT" in bot_check


def test_compose_keeps_every_state_in_a_named_volume() -> None:
    compose = _compose()
    services, declared = compose["services"], set(compose.get("volumes") or {})
    data_dir = _environment(services["bot"])["ORCHESTRATOR_DATA_DIR"]
    assert data_dir == _dockerfile_env(_final_stage())["ORCHESTRATOR_DATA_DIR"], "compose and the image disagree"
    expected = {
        "bot": data_dir,
        "postgres": "/var/lib/postgresql/data",
        "chroma": "/data",
        "ollama": "/root/.ollama",
    }
    for name, target in expected.items():
        mounts = _mounts(services[name])
        assert target in mounts, f"{name} loses its state on `docker compose down`: no volume at {target}"
        assert mounts[target] in declared, f"{name}: volume {mounts[target]!r} is not declared under volumes:"
    for name, service in services.items():
        for target, source in _mounts(service).items():
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source!r} (at {target}) is not declared"


def test_compose_names_only_real_settings_and_its_own_services() -> None:
    services = _compose()["services"]
    env = _environment(services["bot"])
    assert not _unknown(set(env)), f"the bot's environment names unknown settings: {_unknown(set(env))}"
    assert urlsplit(env["OLLAMA_HOST"]).hostname in services
    assert env["CHROMA_HOST"] in services
    url = make_url(INTERPOLATION.sub("x", env["DATABASE_URL"]))
    postgres = _environment(services["postgres"])
    assert url.drivername == "postgresql+psycopg", "the image installs psycopg (the postgres extra)"
    assert url.host in services
    assert (url.username, url.database) == (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"])


def test_compose_holds_no_secret_and_reads_them_from_env_file() -> None:
    services = _compose()["services"]
    env_files = services["bot"]["env_file"]
    assert ".env" in (env_files if isinstance(env_files, list) else [env_files])
    for name, service in services.items():
        for key, value in _environment(service).items():
            if re.search(r"TOKEN|SECRET|PASSWORD", key):
                assert INTERPOLATION.fullmatch(value), f"{name}: {key} holds a value; it belongs in .env"
    password = make_url(_environment(services["bot"])["DATABASE_URL"]).password
    assert password is not None and INTERPOLATION.fullmatch(password), "the database password comes from .env"
    assert ".env" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert ".env" in (ROOT / ".dockerignore").read_text(encoding="utf-8").split(), "keep .env out of the image"


def test_compose_is_safe_by_default() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        assert not service.get("ports"), f"{name} publishes a port: nothing needs to be reachable from outside"
        assert not service.get("privileged"), f"{name} runs privileged"
    bot = services["bot"]
    assert bot.get("read_only") is True
    assert bot.get("cap_drop") == ["ALL"]
    options = bot.get("security_opt") or []
    assert "no-new-privileges:true" in options
    # Without the sandbox every command asks: opening seccomp is the operator's documented choice.
    assert not any("unconfined" in o for o in options), "the default must not open seccomp or AppArmor"


@pytest.mark.parametrize("validator", ["docker compose", "docker-compose", "check-jsonschema"])
def test_compose_file_is_valid(validator: str, tmp_path: Path) -> None:
    shutil.copy(COMPOSE, tmp_path / "compose.yaml")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    if validator == "check-jsonschema":
        if importlib.util.find_spec("check_jsonschema") is not None:
            argv = [sys.executable, "-m", "check_jsonschema"]
        elif found := shutil.which("check-jsonschema"):
            argv = [found]
        else:
            pytest.skip("check-jsonschema is not installed (pip install check-jsonschema)")
        result = _run([*argv, "--builtin-schema", "vendor.compose-spec", "compose.yaml"], timeout=60, cwd=tmp_path)
        assert result.returncode == 0, f"compose.yaml breaks the Compose specification:\n{result.stdout}{result.stderr}"
        return
    argv = validator.split()
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed")
    probe = _run([*argv, "version"], timeout=30)
    if probe.returncode != 0:
        first = (probe.stderr or probe.stdout).strip().splitlines()[:1]
        pytest.skip(f"`{validator}` is not available here ({first[0] if first else probe.returncode})")
    # Without POSTGRES_PASSWORD the file refuses to start, and says which variable is missing.
    missing = _run([*argv, "-f", "compose.yaml", "config"], timeout=60, cwd=tmp_path)
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr + missing.stdout
    (tmp_path / ".env").write_text("POSTGRES_PASSWORD=0123456789abcdef\nSLACK_BOT_TOKEN=xoxb-test\n")
    result = _run([*argv, "-f", "compose.yaml", "config"], timeout=60, cwd=tmp_path)
    assert result.returncode == 0, f"`{validator} config` refuses compose.yaml:\n{result.stderr}"
    resolved = yaml.safe_load(result.stdout)
    assert "0123456789abcdef" in _environment(resolved["services"]["bot"])["DATABASE_URL"]


# ---------------------------------------------------------------------------------- Dockerfile


def test_image_runs_as_a_dedicated_user_with_the_data_volume() -> None:
    stage = _final_stage()
    users = [i.args for i in stage if i.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "the bot must not run as root in the image"
    assert any(i.keyword == "RUN" and "useradd" in i.args and users[-1] in i.args for i in stage)
    data_dir = _dockerfile_env(stage)["ORCHESTRATOR_DATA_DIR"]
    volumes = [v for i in stage if i.keyword == "VOLUME" for v in json.loads(i.args)]
    assert data_dir in volumes, (
        f"ORCHESTRATOR_DATA_DIR={data_dir} is not a volume: the database would die with the container"
    )
    assert any(i.keyword == "RUN" and f"-o {users[-1]}" in i.args and data_dir in i.args for i in stage), (
        "the data dir must belong to the bot's user, or a fresh named volume is read-only to it"
    )


def test_image_healthcheck_asks_healthz_on_the_metrics_port() -> None:
    stage = _final_stage()
    checks = [i.args for i in stage if i.keyword == "HEALTHCHECK"]
    assert checks, "the image has no HEALTHCHECK"
    assert "/healthz" in checks[-1] and "127.0.0.1" in checks[-1] and "ORCHESTRATOR_METRICS_PORT" in checks[-1]
    port = _dockerfile_env(stage).get("ORCHESTRATOR_METRICS_PORT", "")
    assert port.isdigit() and 0 < int(port) < 65536, "the image sets the port its healthcheck asks"


def test_image_entrypoint_and_default_command_are_real_commands() -> None:
    stage = _final_stage()
    entrypoint = next(i for i in reversed(stage) if i.keyword == "ENTRYPOINT").json_args()
    cmd = next(i for i in reversed(stage) if i.keyword == "CMD").json_args()
    assert entrypoint[-1] == "orchestrator"
    args = build_parser().parse_args(cmd)  # a typo here would exit 2 in every container
    assert args.command == "run", "by default the container serves"
    if entrypoint[0].endswith("tini"):
        assert any(i.keyword == "RUN" and "tini" in i.args for i in stage), "tini is used but not installed"


def test_image_installs_the_package_with_the_server_extras() -> None:
    stages = _dockerfile_stages()
    runs = " ".join(i.args for stage in stages for i in stage if i.keyword == "RUN")
    extras = {e for group in re.findall(r"\.\[([\w,-]+)\]", runs) for e in group.split(",")}
    optional = PYPROJECT["project"]["optional-dependencies"]
    assert "postgres" in extras, "a server needs PostgreSQL's driver"
    assert extras <= set(optional), f"extras pyproject.toml does not have: {extras - set(optional)}"
    copied = {
        word.rstrip("/")
        for stage in stages
        for i in stage
        if i.keyword == "COPY" and "--from" not in i.args
        for word in i.args.split()[:-1]
    }
    packages = {p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    missing = ({"pyproject.toml", "README.md", "notebooks"} | packages) - copied
    assert not missing, f"the build does not copy {sorted(missing)}"
    final_runs = " ".join(i.args for i in stages[-1] if i.keyword == "RUN")
    assert "bubblewrap" in final_runs, "without bubblewrap nothing ever runs freely in the image"
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".env", ".venv/", ".git/"} <= set(ignored)


def _docker_build_wanted() -> str | None:
    """None when the image build should run here, else why it does not."""
    if os.environ.get("ORCHESTRATOR_TEST_DOCKER_BUILD") == "1":
        return None
    if os.environ.get("CI") == "true":
        return None
    return "building the image takes minutes: set ORCHESTRATOR_TEST_DOCKER_BUILD=1 (CI runs it when Docker answers)"


def test_image_builds_and_starts_as_its_user() -> None:
    if why := _docker_build_wanted():
        pytest.skip(why)
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    info = _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30)
    if info.returncode != 0:
        pytest.skip(f"no Docker daemon answers: {_tail(info.stderr, 1)}")
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    assert base, "the Dockerfile names its base image in ARG PYTHON_IMAGE"
    if _run(["docker", "image", "inspect", base.group(1)], timeout=30).returncode != 0:
        pulled = _run(["docker", "pull", base.group(1)], timeout=600)
        if pulled.returncode != 0:
            pytest.skip(f"cannot pull the base image {base.group(1)}: {_tail(pulled.stderr, 1)}")
    if why := _reachable("https://pypi.org/simple/pip/"):
        pytest.skip(f"PyPI does not answer ({why}): the build installs the package from it")
    tag = f"ai-orchestrator:test-{uuid.uuid4().hex[:8]}"
    network = os.environ.get("ORCHESTRATOR_TEST_DOCKER_BUILD_NETWORK", "")
    build = ["docker", "build", "-t", tag, *(["--network", network] if network else []), str(ROOT)]
    result = _run(build, timeout=1800)
    try:
        assert result.returncode == 0, f"docker build failed:\n{_tail(result.stdout + result.stderr)}"
        config = json.loads(_run(["docker", "image", "inspect", tag], timeout=30).stdout)[0]["Config"]
        assert config["User"] == "orchestrator"
        assert "/data" in (config.get("Volumes") or {})
        assert config["Healthcheck"]["Test"], "the healthcheck did not make it into the image"
        assert config["Cmd"] == ["run", "all"]
        run = ["docker", "run", "--rm", "--network", "none"]
        helped = _run([*run, tag, "--help"], timeout=120)
        assert helped.returncode == 0 and "doctor" in helped.stdout
        uid = _run([*run, "--entrypoint", "id", tag, "-u"], timeout=60)
        assert uid.stdout.strip() not in {"", "0"}
        doctor = _run([*run, tag, "doctor"], timeout=300)
        sandbox = next((line for line in doctor.stdout.splitlines() if "] sandbox:" in line), "")
        assert "bubblewrap works" in sandbox or "every command needs approval" in sandbox, doctor.stdout
        for line in doctor.stdout.splitlines():
            assert not line.startswith("[FAIL] data dir") and not line.startswith("[FAIL] file roots"), line
    finally:
        _run(["docker", "rmi", "-f", tag], timeout=120)


# ---------------------------------------------------------------------------------- systemd unit


def test_unit_runs_as_a_dedicated_user_with_its_state_directory() -> None:
    service = _unit()["Service"]
    assert _service_value("User") not in {"root", "0"}
    assert not service.get("DynamicUser"), "a dynamic user cannot own the data dir across upgrades"
    state = _service_value("StateDirectory")
    data_dir = dict(v.split("=", 1) for v in service.get("Environment", []))["ORCHESTRATOR_DATA_DIR"]
    assert data_dir == f"/var/lib/{state}", "the data dir must be the state directory (writable under ProtectSystem)"
    assert service.get("EnvironmentFile"), "the secrets come from an environment file, not the unit"
    exec_start = shlex.split(_service_value("ExecStart"))
    assert Path(exec_start[0]).name == "orchestrator"
    assert build_parser().parse_args(exec_start[1:]).command == "run"
    assert _service_value("RestartPreventExitStatus") == "2", "a configuration mistake must not restart in a loop"
    assert "multi-user.target" in _unit()["Install"]["WantedBy"]


def test_unit_is_hardened() -> None:
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "ProtectKernelModules": "yes",
        "ProtectKernelTunables": "yes",
        "LockPersonality": "yes",
        "RestrictSUIDSGID": "yes",
    }
    for key, value in expected.items():
        assert _service_value(key) == value, f"{key}={value} missing from the unit"
    assert _service_value("ProtectHome") in {"yes", "read-only", "tmpfs"}
    families = set(_service_value("RestrictAddressFamilies").split())
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= families and "AF_PACKET" not in families
    assert _unit()["Service"].get("SystemCallFilter"), "no system call filter"
    # Kept off on purpose: they would blind ps, psutil and the health checks.
    assert _unit()["Service"].get("ProtectProc", ["default"])[-1] == "default"
    assert _unit()["Service"].get("ProcSubset", ["all"])[-1] == "all"


def _bwrap_namespaces() -> set[str]:
    """The namespaces the sandbox's bwrap argv creates (user and mount it always needs)."""
    argv = Sandbox(SandboxConfig(file_roots=(ROOT,), bwrap="/usr/bin/bwrap")).wrap(["true"], cwd=ROOT)
    flags = {"--unshare-ipc": "ipc", "--unshare-uts": "uts", "--unshare-cgroup": "cgroup",
             "--unshare-cgroup-try": "cgroup", "--unshare-net": "net", "--unshare-pid": "pid"}  # fmt: skip
    return {"user", "mnt", *(flags[a] for a in argv if a in flags)}


def test_unit_lets_the_sandbox_create_its_namespaces() -> None:
    allowed = _unit()["Service"].get("RestrictNamespaces")
    if allowed is None or allowed[-1] == "no":
        return
    value = allowed[-1]
    assert value not in {"yes", "true"} and not value.startswith("~"), "bubblewrap needs namespaces"
    missing = _bwrap_namespaces() - set(value.split())
    assert not missing, f"RestrictNamespaces= refuses what the sandbox creates: {sorted(missing)}"


def _syscall_groups() -> dict[str, list[str]]:
    out = _run(["systemd-analyze", "syscall-filter", "--no-pager"], timeout=60).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        word = line.strip().split(" ")[0] if line.strip() else ""
        if not line.startswith(" "):  # a group's name, or the closing list of syscalls in no group
            current = groups.setdefault(word, []) if word.startswith("@") else None
        elif current is not None and word and not word.startswith("#"):
            current.append(word)
    return groups


def _expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    found: set[str] = set()
    for name in names:
        found |= _expand(groups.get(name, []), groups) if name.startswith("@") else {name}
    return found


def test_unit_system_call_filter_allows_bubblewrap() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the filter's groups cannot be expanded")
    groups = _syscall_groups()
    if "@system-service" not in groups:
        pytest.skip("this systemd-analyze lists no syscall groups")
    filters = _unit()["Service"]["SystemCallFilter"]
    # An allow list first: only what it names; a deny list first: everything else.
    allowed = _expand(list(groups), groups) if filters[0].startswith("~") else set()
    for value in filters:
        if value.startswith("~"):
            allowed -= _expand(value[1:].split(), groups)
        else:
            allowed |= _expand(value.split(), groups)
    # What bubblewrap calls to build the sandbox (strace of bwrap 0.8 as an unprivileged user).
    needed = {"clone", "unshare", "mount", "umount2", "pivot_root", "capset", "prctl", "execve"}
    assert not needed - allowed, f"the filter refuses what bubblewrap needs: {sorted(needed - allowed)}"


def test_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    # verify checks that ExecStart's binary exists: on this machine /opt/orchestrator is not installed.
    text = UNIT.read_text(encoding="utf-8")
    exec_start = shlex.split(_service_value("ExecStart"))[0]
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={exec_start}", f"ExecStart={shutil.which('true')}"))
    verified = _run(["systemd-analyze", "verify", "--man=no", str(copy)], timeout=120)
    assert verified.returncode == 0, verified.stderr
    security = _run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(copy)], timeout=120)
    if security.returncode != 0 and "offline" in security.stderr:
        pytest.skip(f"systemd-analyze security --offline is not supported here: {_tail(security.stderr, 1)}")
    level = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", security.stdout)
    assert level, security.stdout + security.stderr
    assert float(level.group(1)) <= 4.0, f"exposure {level.group(1)}: the unit lost part of its hardening"


def test_cli_wrapper_runs_commands_as_the_service_does() -> None:
    text = CLI_WRAPPER.read_text(encoding="utf-8")
    assert os.access(CLI_WRAPPER, os.X_OK), "deploy/orchestrator-cli must be executable"
    assert _run(["sh", "-n", str(CLI_WRAPPER)], timeout=30).returncode == 0
    service = _unit()["Service"]
    user = _service_value("User")
    data_dir = dict(v.split("=", 1) for v in service["Environment"])["ORCHESTRATOR_DATA_DIR"]
    for same in (f"--uid={user}", service["EnvironmentFile"][-1], f"ORCHESTRATOR_DATA_DIR={data_dir}",
                 f"--working-directory={_service_value('WorkingDirectory')}",
                 shlex.split(_service_value("ExecStart"))[0]):  # fmt: skip
        assert same in text, f"deploy/orchestrator-cli and the unit disagree on {same}"


# ---------------------------------------------------------------------------------- .env.example


def test_env_example_names_only_real_settings() -> None:
    names = {name for _, name, _, _ in _env_example_lines()}
    assert names, ".env.example lists no setting"
    unknown = _unknown(names)
    assert not unknown, f".env.example names settings the bot never reads: {unknown}"


def test_env_example_lists_every_secret_and_the_common_settings() -> None:
    names = {name for _, name, _, _ in _env_example_lines()}
    common = {
        "OLLAMA_HOST", "ORCHESTRATOR_MODEL", "DATABASE_URL", "ORCHESTRATOR_DATA_DIR", "ORCHESTRATOR_FILE_ROOTS",
        "CHROMA_HOST", "ORCHESTRATOR_SANDBOX", "ORCHESTRATOR_CONSOLE_APPROVERS", "SLACK_APPROVERS",
        "DISCORD_APPROVERS", "SLACK_ALLOWED_USERS", "DISCORD_ALLOWED_USERS", "ORCHESTRATOR_REPORTS_SLACK_CHANNEL",
    }  # fmt: skip
    required_by_compose = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):\?", COMPOSE.read_text(encoding="utf-8")))
    missing = (SECRET_ENV | common | required_by_compose) - names
    assert not missing, f".env.example does not mention {sorted(missing)}"
    assert {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "DISCORD_TOKEN"} <= SECRET_ENV


def test_env_example_reads_the_same_in_dotenv_compose_and_systemd() -> None:
    for number, line in enumerate(ENV_EXAMPLE.read_text(encoding="utf-8").splitlines(), start=1):
        if not line or line.startswith("# ") or line == "#":
            continue
        match = SETTING_LINE.match(line)
        assert match, f".env.example line {number} is neither a comment nor NAME=value: {line!r}"
        value = match.group(2)
        if value.startswith("'"):
            assert value.endswith("'") and len(value) > 1 and "'" not in value[1:-1], f"line {number}: {line!r}"
        else:
            # systemd keeps a trailing comment in the value and strips quotes; compose expands $.
            assert not re.search(r"[\s\"'#$\\]", value), f"line {number}: quote this value in single quotes"
        if not line.startswith("#"):
            assert value, f"line {number}: an empty {match.group(1)} counts as set; comment it out"


def _load_env_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in (*SETTINGS_ENV, *NOT_SETTINGS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(path.parent)  # `.env` and orchestrator.toml are read from the working directory
    return load_settings()


def test_env_example_copied_as_is_gives_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    settings = _load_env_file(tmp_path / ".env", monkeypatch)
    assert settings.slack_bot_token is None and settings.discord_token is None
    assert settings.model == Settings.model_fields["model"].default


def test_env_example_values_are_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every example, uncommented, is a value the settings accept (and reaches them)."""
    lines = [(name, value) for _, name, value, _ in _env_example_lines() if name in SETTINGS_ENV]
    (tmp_path / ".env").write_text("".join(f"{n}={v}\n" for n, v in lines))
    settings = _load_env_file(tmp_path / ".env", monkeypatch)
    example = {k: v for k, v in dotenv_values(tmp_path / ".env").items() if v is not None}
    assert settings.model == example["ORCHESTRATOR_MODEL"]
    assert settings.slack_bot_token is not None
    assert settings.slack_bot_token.get_secret_value() == example["SLACK_BOT_TOKEN"]
    assert settings.reports.slack_channel == example["ORCHESTRATOR_REPORTS_SLACK_CHANNEL"]
    assert set(settings.hosts) == set(json.loads(example["ORCHESTRATOR_HOSTS"]))
    assert [str(p) for p in settings.file_roots] == example["ORCHESTRATOR_FILE_ROOTS"].split(":")


def test_pending_settings_are_still_pending() -> None:
    """A name listed as pending that has become a setting must leave PENDING_SETTINGS."""
    landed = set(PENDING_SETTINGS) & set(SETTINGS_ENV)
    assert not landed, f"{sorted(landed)} are settings now: remove them from PENDING_SETTINGS"


# ---------------------------------------------------------------------------------- LICENSE, CHANGELOG, wheel


def test_license_is_the_one_pyproject_names() -> None:
    declared = PYPROJECT["project"]["license"]
    declared = declared.get("text", "") if isinstance(declared, dict) else declared
    assert declared == "MIT"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert re.search(r"^Copyright \(c\) \d{4} AI Orchestrator contributors$", text, re.M)
    assert "Permission is hereby granted, free of charge" in text and 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_changelog_follows_keep_a_changelog() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert text.startswith("# Changelog\n")
    assert "keepachangelog.com" in text
    assert re.search(r"^## \[Unreleased\]$", text, re.M)
    assert PYPROJECT["project"]["version"] in text, "the changelog names the version pyproject.toml carries"
    headings = re.findall(r"^### (\w+)$", text, re.M)
    assert set(headings) <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_wheel_carries_the_daily_notebook(tmp_path: Path) -> None:
    """`pip install ai-orchestrator` (and the Docker image) must find the notebook the daily report runs."""
    if why := _reachable("https://pypi.org/simple/setuptools/"):
        pytest.skip(f"PyPI does not answer ({why}): the wheel build fetches its build requirements")
    source = tmp_path / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    packages = {p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    for name in packages | {"notebooks"}:
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(source)],
                 timeout=600)  # fmt: skip
    assert built.returncode == 0, _tail(built.stdout + built.stderr)
    wheel = next((tmp_path / "dist").glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    # Where the daily report looks, relative to the directory that holds the `core` package.
    site = Path(daily.__file__).resolve().parents[2]
    expected = daily.DEFAULT_NOTEBOOK.resolve().relative_to(site).as_posix()
    assert expected in names, (
        f"the wheel lacks {expected}: the daily report falls back to its in-process figures. "
        'Add "notebooks" to [tool.setuptools.packages.find] include and '
        '"notebooks" = ["*.ipynb"] to [tool.setuptools.package-data] in pyproject.toml'
    )
    assert any(n.endswith(".dist-info/LICENSE") or "/licenses/LICENSE" in n for n in names), "the wheel lacks LICENSE"
