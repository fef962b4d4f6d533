"""The `orchestrator` command as a user runs it: a real subprocess (`run_cli`), and `cli_env`, the
settings of a fresh data directory against the Ollama stand-in (a fixture)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.ollama import FakeOllama


def run_cli(
    args: list[str], env_extra: dict[str, str], *, stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "SLACK_", "DISCORD_"))}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], input=stdin, capture_output=True, text=True, env=env, timeout=timeout,
        cwd=env_extra.get("_CWD"),
    )  # fmt: skip


@pytest.fixture
def cli_env(tmp_path: Path, fake_ollama: FakeOllama, database_url: str) -> dict[str, str]:
    root = tmp_path / "ws"
    root.mkdir()
    return ({"DATABASE_URL": database_url} if database_url else {}) | {
        "ORCHESTRATOR_DATA_DIR": str(tmp_path / "data"),
        "OLLAMA_HOST": fake_ollama.url,
        "ORCHESTRATOR_FILE_ROOTS": str(root),
        "ORCHESTRATOR_CONSOLE_APPROVERS": "cli-user",
        "USER": "cli-user",
        "LOGNAME": "cli-user",
        "_CWD": str(tmp_path),
    }
