"""Change workflows end to end: a real `orchestrator ask` process approved at the prompt, then
`orchestrator runs` / `runs show` on what it stored; and Slack (the stand, approved by reactions),
in the edited progress message and in the live timeline. The model is scripted; the QA tool is a
real pytest on a small project."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.slack import FakeSlack
from tests.support.cli import run_cli
from tests.support.slack_stand import CHANNEL, stands
from tests.support.waiting import until

BROKEN = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"


def call(name: str, **arguments: Any) -> Reply:
    return Reply(tool_calls=[{"name": name, "arguments": arguments}])


def project(root: Path) -> Path:
    app = root / "app"
    (app / "tests").mkdir(parents=True)
    (app / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    (app / "calc.py").write_text(BROKEN)
    (app / "tests" / "test_calc.py").write_text(TEST)
    (app / ".venv" / "bin").mkdir(parents=True)
    (app / ".venv" / "bin" / "pytest").symlink_to(Path(sys.executable).parent / "pytest")
    return app


def script(fake_ollama: FakeOllama, app: Path) -> None:
    fake_ollama.script(
        call("start_change", spec="add() adds and the test passes", plan=["run the tests", "fix add()", "test again"]),
        call("run_tests", path=str(app)),
        call("write_file", path=str(app / "calc.py"), content=FIXED),
        call("run_tests", path=str(app)),
        Reply(content="Fixed add()."),
    )


def test_in_the_console_and_in_runs(cli_env: dict[str, str], fake_ollama: FakeOllama) -> None:
    app = project(Path(cli_env["ORCHESTRATOR_FILE_ROOTS"]))
    script(fake_ollama, app)
    asked = run_cli(["ask", "fix the failing test in app"], cli_env, stdin="y\ny\n")
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.count("Approve? [y/N]") == 2 and "== REPAIR ==" in asked.stdout
    assert "COMPLETE: PASS" in asked.stdout and (app / "calc.py").read_text() == FIXED

    listed = run_cli(["runs"], cli_env).stdout
    assert "answered PASS" in listed and "PASS: run_tests in" in listed

    shown = run_cli(["runs", "show", "1"], cli_env).stdout
    assert "verdict: PASS: run_tests in" in shown
    headings = [line for line in shown.splitlines() if line.startswith("== ")]
    assert headings == [
        "== SPEC ==", "== PLAN ==", "== EXECUTE ==", "== VERIFY ==", "== REPAIR ==", "== VERIFY ==",
        "== COMPLETE: PASS ==",
    ]  # fmt: skip
    qa = shown.split("QA results:", 1)[1]
    assert "✗ run_tests (VERIFY)" in qa and "✓ run_tests (VERIFY)" in qa
    assert "assert add(2, 3) == 5" in shown  # the failing output in full, from the store
    raw = run_cli(["runs", "show", "1", "--raw"], cli_env).stdout
    assert "[tool start_change]" in raw and "Change workflow started" in raw


@pytest.mark.asyncio
@pytest.mark.parametrize("streaming", [False, True])
async def test_in_slack_phases_and_verdict_are_in_the_thread(
    fake_ollama: FakeOllama, tmp_path: Path, streaming: bool
) -> None:
    root = tmp_path / "srv"
    root.mkdir()
    app = project(root)
    script(fake_ollama, app)
    fake_ollama.models.append("qwen2.5-coder:7b")
    async with (
        FakeSlack(streaming=streaming) as slack,
        stands(slack, fake_ollama, tmp_path, streaming=streaming) as make,
    ):
        stand = await make(ORCHESTRATOR_FILE_ROOTS=str(root), ORCHESTRATOR_CODE_MODEL="qwen2.5-coder:7b")
        ts = await stand.say("fix the failing test in app")
        first = await stand.approval_message(ts)
        assert "pytest -q" in first.text and "run again, in this directory, later in this run" in first.text
        await stand.react("UADMIN", "white_check_mark", first.ts)
        await until(lambda: sum("Approval needed" in m.text for m in stand.bot_messages(ts)) == 2)
        second = [m for m in stand.bot_messages(ts) if "Approval needed" in m.text][-1]
        assert "+    return a + b" in second.text
        await stand.react("UADMIN", "white_check_mark", second.ts)
        answer = await stand.answer(ts, contains="Verdict: PASS")
        assert "Fixed add()." in answer.text
        if streaming:
            [stream] = [s for s in slack.streams(CHANNEL) if s.thread_ts == ts]
            titles = [t.title for t in stream.tasks.values()]
            phases = [t for t in titles if t.startswith(("▶", "✅ COMPLETE"))]
            assert [p.split(":")[0] for p in phases] == [
                "▶ SPEC", "▶ PLAN", "▶ EXECUTE", "▶ VERIFY", "▶ REPAIR", "▶ VERIFY", "✅ COMPLETE",
            ]  # fmt: skip
            assert all(t.status == "complete" for t in stream.tasks.values() if t.title.startswith("▶"))
        else:
            thread = "\n".join(m.text for m in stand.bot_messages(ts))
            for heading in ("▶ SPEC", "▶ PLAN", "▶ VERIFY", "▶ REPAIR", "✅ COMPLETE: PASS"):
                assert heading in thread
        # the main model started the workflow; the code model did the rest
        models = [r["model"] for r in fake_ollama.chat_requests]
        assert models[0] == stand.services.settings.model and models[1:] == ["qwen2.5-coder:7b"] * 4
        audit = await stand.services.store.audit_entries()
        runs = [e.tool for e in audit if e.action == "tool_run"]
        assert runs == ["start_change", "run_tests", "write_file", "run_tests"]
        assert [e.decider for e in audit if e.action == "approved"] == ["slack:UADMIN"] * 2
