"""`orchestrator doctor` on a fresh install, nothing configured: it creates what is its own to
create (the default file root) and says so, and passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fakes.ollama import FakeOllama


def test_doctor_passes_on_defaults_and_says_what_it_created(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "SLACK_", "DISCORD_"))}
    home = {"HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(tmp_path / "xdg")}  # a user who set nothing
    env = base | home | {"OLLAMA_HOST": fake_ollama.url}
    proc = subprocess.run([sys.executable, "-m", "bot", "doctor"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    workspace = tmp_path / "xdg" / "ai-orchestrator" / "workspace"
    assert f"[ok  ] file roots: {workspace} (created {workspace}" in proc.stdout, proc.stdout + proc.stderr
    assert workspace.is_dir()
    again = subprocess.run([sys.executable, "-m", "bot", "doctor"], env=env, cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    assert "created" not in again.stdout.split("file roots:")[1].splitlines()[0]
    assert "[FAIL] file roots" not in proc.stdout
