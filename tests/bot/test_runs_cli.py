"""`orchestrator runs` and `runs show ID [--raw]`, real processes on the store an `ask` wrote:
the list says how each run ended with its tool calls and approvals; `show` prints every step in
full from the store (thinking, the approval's diff, the whole tool output), and `--raw` the
messages the model was sent and answered."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fakes.ollama import FakeOllama, Reply
from tests.support.cli import run_cli


def test_runs_lists_and_shows_a_run_in_full(cli_env: dict[str, str], fake_ollama: FakeOllama) -> None:
    root = Path(cli_env["ORCHESTRATOR_FILE_ROOTS"])
    lines = [f"line {n}: ok" for n in range(400)] + ["line 400: disk full on /var"]
    (root / "app.log").write_text("\n".join(lines) + "\n")
    fake_ollama.script(
        Reply(
            thinking="The log may say why; read it first.",
            tool_calls=[{"name": "read_file", "arguments": {"path": "app.log", "max_bytes": 100000}}],
        ),
        Reply(tool_calls=[{"name": "write_file", "arguments": {"path": "motd", "content": "disk full\n"}}]),
        Reply(content="The disk is full; I noted it in the motd."),
    )
    asked = run_cli(["ask", "why did the app stop?"], cli_env, stdin="y\n")
    assert asked.returncode == 0, asked.stderr
    fake_ollama.script(Reply(content="Nothing else."))
    assert run_cli(["ask", "anything else?"], cli_env).returncode == 0

    listed = run_cli(["runs", "--last", "5"], cli_env)
    assert listed.returncode == 0, listed.stderr
    newest, first = listed.stdout.strip().splitlines()
    assert newest.startswith("#2 ") and "answered" in newest and "0 tool call(s)" in newest
    assert first.startswith("#1 ") and "answered" in first and "console:cli-user" in first
    assert "2 tool call(s), 1 approval(s)" in first and "“why did the app stop?”" in first
    assert len(run_cli(["runs", "--last", "1"], cli_env).stdout.strip().splitlines()) == 1

    shown = run_cli(["runs", "show", "1"], cli_env)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "run #1: answered, asked by console:cli-user" in out and "why did the app stop?" in out
    assert "The log may say why; read it first." in out
    assert '→ read_file {"max_bytes": 100000, "path": "app.log"}' in out
    assert "line 0: ok" in out and "line 400: disk full on /var" in out  # the whole output, from the store
    assert "? approval #1 (write, host local): write" in out and "+disk full" in out
    assert "✓ approval #1 approved by console:cli-user" in out
    assert out.rstrip().endswith("The disk is full; I noted it in the motd.")
    assert "model messages" not in out

    raw = run_cli(["runs", "show", "1", "--raw"], cli_env).stdout
    raw_part = raw.split("model messages (", 1)[1]
    assert "[user]" in raw_part and "why did the app stop?" in raw_part
    assert "[assistant]" in raw_part and "read_file" in raw_part and "[tool read_file]" in raw_part
    assert "anything else?" not in raw_part  # only this run's messages

    as_json = json.loads(run_cli(["runs", "show", "1", "--json"], cli_env).stdout)
    assert [s["kind"] for s in as_json["steps"]][:3] == ["Thinking", "ToolCall", "ToolResult"]
    assert as_json["status"] == "answered" and "messages" not in as_json


def test_an_unknown_run_is_one_line(cli_env: dict[str, str]) -> None:
    empty = run_cli(["runs"], cli_env)
    assert empty.returncode == 0 and "no runs yet" in empty.stdout
    missing = run_cli(["runs", "show", "42"], cli_env)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip() == "orchestrator runs show: there is no run #42 (`orchestrator runs` lists them)"
