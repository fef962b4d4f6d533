"""The `orchestrator` command as a user runs it: a real subprocess against the stand-in."""

from __future__ import annotations

import json
from pathlib import Path

from core.memory.embeddings import offline_model_name
from tests.fakes.ollama import FakeOllama, Reply
from tests.support.cli import run_cli
from tests.support.postgres import on_each_database


def test_ask_answers_and_exits_zero(cli_env: dict[str, str], fake_ollama: FakeOllama) -> None:
    fake_ollama.script(
        Reply(thinking="Check the disks.", tool_calls=[{"name": "disk_usage", "arguments": {}}]),
        Reply(content="The root filesystem has plenty of room."),
    )
    proc = run_cli(["ask", "how full is the disk?"], cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "Check the disks." in proc.stdout
    assert "→ disk_usage()" in proc.stdout
    assert proc.stdout.rstrip().endswith("The root filesystem has plenty of room.")


@on_each_database  # `ask`, then `audit` in another process: SQLite, then PostgreSQL
def test_piped_yes_approves_a_write(cli_env: dict[str, str], fake_ollama: FakeOllama) -> None:
    target = Path(cli_env["ORCHESTRATOR_FILE_ROOTS"]) / "motd"
    fake_ollama.script(
        Reply(tool_calls=[{"name": "write_file", "arguments": {"path": "motd", "content": "hello\n"}}]),
        Reply(content="Written."),
    )
    proc = run_cli(["ask", "write a motd"], cli_env, stdin="y\n")
    assert proc.returncode == 0, proc.stderr
    assert "+hello" in proc.stdout and "Approve? [y/N]" in proc.stdout
    assert target.read_text() == "hello\n"
    audit = run_cli(["audit", "--json"], cli_env)
    entries = json.loads(audit.stdout)
    approved = [e for e in entries if e["action"] == "approved"]
    assert approved and approved[0]["decider"] == "console:cli-user" and approved[0]["tool"] == "write_file"
    assert [e["action"] for e in entries] == ["request", "approval_requested", "approved", "tool_run"]


def test_anything_but_yes_denies(cli_env: dict[str, str], fake_ollama: FakeOllama) -> None:
    target = Path(cli_env["ORCHESTRATOR_FILE_ROOTS"]) / "motd"
    fake_ollama.script(
        Reply(tool_calls=[{"name": "write_file", "arguments": {"path": "motd", "content": "x"}}]),
        Reply(content="Not written."),
    )
    proc = run_cli(["ask", "write a motd"], cli_env, stdin="sure\n")
    assert proc.returncode == 0
    assert not target.exists()
    assert "Denied by console:cli-user" in proc.stdout
    # the person reads why nothing ran; the instruction for the model goes to the model only
    assert "✗ not run: denied by console:cli-user (denied at the console)" in proc.stdout
    assert "Do not retry" not in proc.stdout + proc.stderr
    told_model = fake_ollama.chat_requests[-1]["messages"][-1]["content"]
    assert told_model.startswith("not run: the action was denied") and "Do not retry it" in told_model


def test_unreachable_ollama_is_one_line_naming_ollama_host(cli_env: dict[str, str]) -> None:
    cli_env["OLLAMA_HOST"] = "http://127.0.0.1:9"
    proc = run_cli(["ask", "hello"], cli_env)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, proc.stderr
    assert "OLLAMA_HOST" in errors[0] and "127.0.0.1:9" in errors[0]
    assert "Traceback" not in proc.stderr


def test_missing_model_says_how_to_pull_it(cli_env: dict[str, str]) -> None:
    cli_env["ORCHESTRATOR_MODEL"] = "llama9:70b"
    proc = run_cli(["ask", "hello"], cli_env)
    assert proc.returncode != 0
    assert "ollama pull llama9:70b" in proc.stderr


def test_doctor_reports_each_check_and_how_to_fix(cli_env: dict[str, str]) -> None:
    ok = run_cli(["doctor"], cli_env)
    assert ok.returncode == 0, ok.stdout
    for name in ("data dir", "database", "file roots", "memory", "ollama", "model"):
        assert f"[ok  ] {name}" in ok.stdout
    cli_env["OLLAMA_HOST"] = "http://127.0.0.1:9"
    bad = run_cli(["doctor"], cli_env)
    assert bad.returncode == 1
    assert "[FAIL] ollama" in bad.stdout and "fix:" in bad.stdout


def test_doctor_checks_the_code_and_vision_models_when_they_are_set(
    cli_env: dict[str, str], fake_ollama: FakeOllama
) -> None:
    ok = run_cli(["doctor"], cli_env)
    assert "code model" not in ok.stdout and "vision model" not in ok.stdout  # not set: not checked
    cli_env |= {"ORCHESTRATOR_CODE_MODEL": "qwen2.5-coder:7b", "ORCHESTRATOR_VISION_MODEL": "llava:7b"}
    missing = run_cli(["doctor"], cli_env)
    assert missing.returncode == 1
    assert "[FAIL] code model: qwen2.5-coder:7b is not pulled" in missing.stdout
    assert "run `ollama pull qwen2.5-coder:7b` or set ORCHESTRATOR_CODE_MODEL" in missing.stdout
    assert "[FAIL] vision model: llava:7b is not pulled" in missing.stdout
    assert "[ok  ] model:" in missing.stdout  # the main model is still checked on its own

    fake_ollama.models += ["qwen2.5-coder:7b", "llava:7b"]
    fake_ollama.capabilities |= {"qwen2.5-coder:7b": ["completion"], "llava:7b": ["completion"]}
    unable = run_cli(["doctor"], cli_env)
    assert "[FAIL] code model: qwen2.5-coder:7b does not support tool calling (completion)" in unable.stdout
    assert "[FAIL] vision model: llava:7b does not support images (completion)" in unable.stdout
    assert "with ORCHESTRATOR_VISION_MODEL" in unable.stdout

    fake_ollama.capabilities |= {"qwen2.5-coder:7b": ["completion", "tools"], "llava:7b": ["completion", "vision"]}
    good = run_cli(["doctor"], cli_env)
    assert good.returncode == 0, good.stdout
    assert "[ok  ] code model: qwen2.5-coder:7b (completion, tools)" in good.stdout
    assert "[ok  ] vision model: llava:7b (completion, vision)" in good.stdout


def test_chat_reads_questions_from_piped_stdin(cli_env: dict[str, str], fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply(content="First answer."), Reply(content="Second answer."))
    proc = run_cli(["chat"], cli_env, stdin="first question\nsecond question\n")
    assert proc.returncode == 0, proc.stderr
    assert "First answer." in proc.stdout and "Second answer." in proc.stdout
    history = [m["content"] for m in fake_ollama.chat_requests[1]["messages"]]
    assert "first question" in history and "First answer." in history


def test_invalid_configuration_is_explained(cli_env: dict[str, str]) -> None:
    cli_env["ORCHESTRATOR_MAX_ITERATIONS"] = "lots"
    proc = run_cli(["ask", "hi"], cli_env)
    assert proc.returncode != 0
    assert "invalid configuration" in proc.stderr and "ORCHESTRATOR_MAX_ITERATIONS" in proc.stderr


def test_toml_file_is_read_and_env_wins(cli_env: dict[str, str], tmp_path: Path, fake_ollama: FakeOllama) -> None:
    (tmp_path / "orchestrator.toml").write_text('model = "from-toml:1b"\nmax_iterations = 4\n')
    fake_ollama.models.append("from-toml:1b")
    fake_ollama.script(Reply(content="hi"))
    proc = run_cli(["ask", "hi"], cli_env)
    assert proc.returncode == 0, proc.stderr
    assert fake_ollama.chat_requests[-1]["model"] == "from-toml:1b"
    cli_env["ORCHESTRATOR_MODEL"] = "qwen3:8b"
    fake_ollama.script(Reply(content="hi"))
    run_cli(["ask", "hi"], cli_env)
    assert fake_ollama.chat_requests[-1]["model"] == "qwen3:8b"


def test_doctor_says_which_model_built_the_memory(cli_env: dict[str, str]) -> None:
    from core.memory.store import MemoryStore

    path = Path(cli_env["ORCHESTRATOR_DATA_DIR"]) / "memory"
    with MemoryStore(path) as store:  # built with the default offline model
        store.add("postgres on db1 listens on 5433", kind="fact", scope="shared", source={})
    ok = run_cli(["doctor"], cli_env)
    assert (
        "[ok  ] memory" in ok.stdout and f"1 memories, built with embedding model {offline_model_name()}" in ok.stdout
    )
    cli_env["ORCHESTRATOR_EMBEDDING"] = "minilm"
    changed = run_cli(["doctor"], cli_env)
    assert changed.returncode == 0  # nothing is wrong: the next start re-embeds
    assert "[WARN] memory" in changed.stdout
    assert f"1 memories built with {offline_model_name()}; the settings name all-MiniLM-L6-v2" in changed.stdout
    assert "orchestrator memory reindex" in changed.stdout
