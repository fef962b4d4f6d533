"""Optional parts that fail at start-up are switched off with one line, and `doctor` explains each.

Memory (Chroma), Docker and systemd are optional: a damaged or unwritable memory store, a
Docker daemon that does not answer, a host without systemd never stop the bot. The real
command runs against a real damaged Chroma directory and a real Docker SDK pointed at a
closed port; nothing on disk is changed or lost by the failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.memory.embeddings import offline_model_name
from tests.bot.test_config_errors import closed_port, read_only
from tests.fakes.ollama import FakeOllama, Reply
from tests.support.cli import run_cli


@pytest.fixture
def env(tmp_path: Path, fake_ollama: FakeOllama) -> dict[str, str]:
    root = tmp_path / "ws"
    root.mkdir()
    return {
        "ORCHESTRATOR_DATA_DIR": str(tmp_path / "data"),
        "OLLAMA_HOST": fake_ollama.url,
        "ORCHESTRATOR_FILE_ROOTS": str(root),
        "ORCHESTRATOR_CONSOLE_APPROVERS": "cli-user",
        "ORCHESTRATOR_MEMORY_EXTRACT": "off",  # one model reply per question: nothing else is scripted
        "USER": "cli-user",
        "_CWD": str(tmp_path),
    }


def memory_dir(env: dict[str, str]) -> Path:
    return Path(env["ORCHESTRATOR_DATA_DIR"]) / "memory"


def the_one_warning(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if "memory" in line]
    assert len(lines) == 1, stderr
    assert " bot.memory: memory is off for this run: " in lines[0]
    return lines[0]


def doctor_line(stdout: str, name: str) -> tuple[str, str]:
    """`[MARK] name: detail` and the `fix:` line under it ("" when there is none)."""
    lines = stdout.splitlines()
    i = next(i for i, line in enumerate(lines) if line[7:].startswith(f"{name}:"))
    fix = lines[i + 1].strip() if i + 1 < len(lines) and lines[i + 1].startswith("       fix: ") else ""
    return lines[i], fix


def test_a_damaged_memory_store_is_switched_off_and_explained(env: dict[str, str], fake_ollama: FakeOllama) -> None:
    store = memory_dir(env)
    store.mkdir(parents=True)
    garbage = bytes(range(256)) * 16
    (store / "chroma.sqlite3").write_bytes(garbage)  # what a torn write or a stray file leaves

    fake_ollama.script(Reply(content="The bot still answers."))
    proc = run_cli(["ask", "are you there?"], env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith("The bot still answers.")
    warning = the_one_warning(proc.stderr)
    assert f"{store} is not a memory store this version can read (" in warning
    assert f"move it aside (mv {store} {store}.broken)" in warning
    assert "memory_recall" not in str(fake_ollama.chat_requests[-1]["tools"])  # memory really is off

    doctor = run_cli(["doctor"], env)
    assert doctor.returncode == 1 and "Traceback" not in doctor.stderr
    line, fix = doctor_line(doctor.stdout, "memory")
    assert line.startswith(f"[FAIL] memory: {store} is not a memory store this version can read (")
    assert line.endswith("(the bot starts without memory)")
    assert (
        fix
        == f"fix: move it aside (mv {store} {store}.broken) to start a new memory there, or set ORCHESTRATOR_MEMORY=off"
    )

    memory = run_cli(["memory", "list"], env)
    assert memory.returncode == 2 and "Traceback" not in memory.stderr
    assert memory.stderr.strip().startswith(f"orchestrator memory list: {store} is not a memory store")
    assert (store / "chroma.sqlite3").read_bytes() == garbage  # left for the operator to look at


def test_an_unwritable_memory_store_is_switched_off_and_explained(env: dict[str, str], fake_ollama: FakeOllama) -> None:
    from core.memory.store import MemoryStore

    store = memory_dir(env)
    with MemoryStore(store) as memories:
        memories.add("postgres on db1 listens on 5433", kind="fact", scope="shared", source={})

    with read_only(store):
        fake_ollama.script(Reply(content="Answered without memory."))
        proc = run_cli(["ask", "which port does postgres use?"], env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.rstrip().endswith("Answered without memory.")
        warning = the_one_warning(proc.stderr)
        assert f"memory is off for this run: {store} cannot be written (" in warning
        assert warning.endswith("make it writable by this user, set ORCHESTRATOR_DATA_DIR to a directory it can "
                                "write, or ORCHESTRATOR_MEMORY=off")  # fmt: skip

        doctor = run_cli(["doctor"], env)
        line, fix = doctor_line(doctor.stdout, "memory")
        assert doctor.returncode == 1 and line.startswith(f"[FAIL] memory: {store} cannot be written (")
        assert fix.startswith("fix: make it writable by this user")

    doctor = run_cli(["doctor"], env)  # writable again: the memory was never touched
    line, _ = doctor_line(doctor.stdout, "memory")
    assert line == f"[ok  ] memory: {store} (1 memories, built with embedding model {offline_model_name()})"


def test_docker_that_does_not_answer_is_a_warning_and_the_bot_starts(
    env: dict[str, str], fake_ollama: FakeOllama
) -> None:
    docker = f"tcp://127.0.0.1:{closed_port()}"
    env["DOCKER_HOST"] = docker
    fake_ollama.script(Reply(content="Up."))
    proc = run_cli(["ask", "are you up?"], env)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.rstrip().endswith("Up.")

    doctor = run_cli(["doctor"], env)
    line, fix = doctor_line(doctor.stdout, "docker")
    assert line.startswith(f"[WARN] docker: {docker} does not answer (") and "Docker tools fail until it does" in line
    assert fix == "fix: start the Docker daemon or fix DOCKER_HOST; ORCHESTRATOR_DOCKER_CHECK=off if this host has none"
    assert doctor.returncode == 0, doctor.stdout  # optional: a warning, not a failure

    env["ORCHESTRATOR_DOCKER_CHECK"] = "required"
    doctor = run_cli(["doctor"], env)
    line, _ = doctor_line(doctor.stdout, "docker")
    assert doctor.returncode == 1 and line.startswith(f"[FAIL] docker: {docker} does not answer (")

    env["ORCHESTRATOR_DOCKER_CHECK"] = "off"
    env["ORCHESTRATOR_SYSTEMD_CHECK"] = "off"
    doctor = run_cli(["doctor"], env)
    assert doctor_line(doctor.stdout, "docker")[0] == "[ok  ] docker: off (ORCHESTRATOR_DOCKER_CHECK=off): not checked"
    assert (
        doctor_line(doctor.stdout, "systemd")[0] == "[ok  ] systemd: off (ORCHESTRATOR_SYSTEMD_CHECK=off): not checked"
    )


def test_doctor_says_whether_systemd_runs_here(env: dict[str, str]) -> None:
    doctor = run_cli(["doctor"], env)
    line, _ = doctor_line(doctor.stdout, "systemd")
    if Path("/run/systemd/system").exists():
        assert line.startswith(("[ok  ] systemd: runs", "[WARN] systemd: runs, but"))
    else:
        assert line == "[ok  ] systemd: not running on this host (no /run/systemd/system): failed units are not checked"
