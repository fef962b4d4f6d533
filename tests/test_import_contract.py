"""The dependency rule: core <- adapters <- bot; chat SDKs only in adapters; APScheduler only in bot."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAT_SDKS = ("slack_bolt", "slack_sdk", "discord")


def imports_of(package: str) -> list[tuple[Path, str]]:
    """Every absolute import in the package; a package with no module fails (nothing to check is no pass)."""
    paths = sorted((ROOT / package).rglob("*.py"))
    assert paths, f"no module under {package}/"
    found = []
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.extend((path, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((path, node.module))
    return found


def top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("package", ["core"])
def test_core_imports_nothing_from_adapters_or_bot(package: str) -> None:
    bad = [(p, m) for p, m in imports_of(package) if top(m) in {"adapters", "bot"}]
    assert not bad, bad


def test_adapters_do_not_import_bot() -> None:
    bad = [(p, m) for p, m in imports_of("adapters") if top(m) == "bot"]
    assert not bad, bad


@pytest.mark.parametrize("package", ["core", "bot"])
def test_only_adapters_import_chat_sdks(package: str) -> None:
    bad = [(p, m) for p, m in imports_of(package) if top(m) in CHAT_SDKS]
    assert not bad, bad


@pytest.mark.parametrize("package", ["core", "adapters"])
def test_only_bot_imports_apscheduler(package: str) -> None:
    bad = [(p, m) for p, m in imports_of(package) if top(m) == "apscheduler"]
    assert not bad, bad


def test_no_shell_and_no_os_system_anywhere() -> None:
    offenders = []
    for package in ("core", "adapters", "bot"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.keyword) and node.arg == "shell":
                    offenders.append(f"{path}: shell=")
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr in {"system", "popen"}
                    and getattr(node.value, "id", "") == "os"
                ):
                    offenders.append(f"{path}: os.{node.attr}")
                if isinstance(node, ast.Attribute) and node.attr == "create_subprocess_shell":
                    offenders.append(f"{path}: create_subprocess_shell")
    assert not offenders, offenders


def test_only_the_process_helper_starts_processes() -> None:
    starters = {"create_subprocess_exec", "Popen", "check_output", "check_call"}
    # and the sandbox session: it starts bubblewrap once (argv), and its helper, inside the
    # sandbox, starts the free commands (argv, no shell: both checked above)
    allowed = {ROOT / "core" / "process.py", ROOT / "core" / "sandbox_session.py", ROOT / "core" / "sandbox_helper.py"}
    offenders = []
    for package in ("core", "adapters", "bot"):
        for path in (ROOT / package).rglob("*.py"):
            if path in allowed:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr in starters:
                    offenders.append(f"{path}: {node.attr}")
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr == "run"
                    and getattr(node.value, "id", "") == "subprocess"
                ):
                    offenders.append(f"{path}: subprocess.run")
    assert not offenders, offenders
