"""Change workflows end to end through the console: the real agent, store, gate and QA tools (a real
pytest on a small project in the file roots), the model scripted through the Ollama stand-in.

SPEC → PLAN → EXECUTE → VERIFY → REPAIR → COMPLETE are shown as they happen and stored with each
step; the verdict is the agent's (from what ran), bounded by ORCHESTRATOR_MAX_REPAIR_CYCLES and
ORCHESTRATOR_VERIFY_REQUIRED; a QA command is approved once per run for its directory and argv;
ORCHESTRATOR_CODE_MODEL answers once the workflow started."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from adapters.console import ConsoleAdapter
from bot.app import Services, build_services
from bot.settings import Settings
from core.store.models import Run
from tests.fakes.ollama import FakeOllama, Reply

BROKEN = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
SPEC = "add() returns the sum and tests/test_calc.py passes"
PLAN = ["run the tests", "fix add() in calc.py", "run the tests again"]


def call(name: str, **arguments: Any) -> Reply:
    return Reply(tool_calls=[{"name": name, "arguments": arguments}])


def project(root: Path, source: str = BROKEN) -> Path:
    """A Python project with one test, its pytest in the project's own .venv (as a developer's)."""
    app = root / "app"
    (app / "tests").mkdir(parents=True)
    (app / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    (app / "calc.py").write_text(source)
    (app / "tests" / "test_calc.py").write_text(TEST)
    bin_dir = app / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "pytest").symlink_to(Path(sys.executable).parent / "pytest")
    return app


@pytest_asyncio.fixture
async def make(settings: Settings) -> AsyncIterator[Any]:
    """Services on the test settings with some of them changed (`max_repair_cycles=1`, …)."""
    made: list[Services] = []

    async def factory(**changes: Any) -> Services:
        svc = await build_services(settings.model_copy(update=changes))
        svc.gate.poll_interval = 0.05
        made.append(svc)
        return svc

    yield factory
    for svc in made:
        await svc.close()


async def ask(services: Services, text: str, answers: str) -> str:
    out = io.StringIO()
    adapter = ConsoleAdapter(services.agent, services.gate, out=out, err=out, inp=io.StringIO(answers), user="tester")
    assert await adapter.ask(text) == 0
    return out.getvalue()


def last_run(services: Services) -> tuple[Run, list[tuple[str, str, dict[str, Any]]]]:
    [(run, _)] = services.store.runs_sync(limit=1)
    assert run.id is not None
    record = services.store.run_record_sync(run.id)
    assert record is not None
    return run, [(s.kind, s.phase, json.loads(s.payload_json)) for s in record[1]]


def phases(steps: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    return [p["phase"] for kind, _, p in steps if kind == "Phase"]


@pytest.mark.asyncio
async def test_a_failing_test_is_fixed_in_phases_and_passes(
    make: Any, fake_ollama: FakeOllama, workspace: Path
) -> None:
    app = project(workspace)
    services = await make()
    fake_ollama.script(
        call("start_change", spec=SPEC, plan=PLAN),
        call("run_tests", path=str(app)),
        call("write_file", path=str(app / "calc.py"), content=FIXED),
        call("run_tests", path=str(app)),
        Reply(content="add() now adds; the test passes."),
    )
    out = await ask(services, "fix the failing test in app", "y\ny\n")
    assert out.count("add() now adds; the test passes.") == 1  # streamed once, the verdict after it

    # shown as it happened: every phase, in order, as a heading
    order = [out.index(f"== {name} ==") for name in ("SPEC", "PLAN", "EXECUTE", "VERIFY", "REPAIR")]
    assert order == sorted(order)
    assert SPEC in out and "1. run the tests" in out and "3. run the tests again" in out
    assert "cycle 1 of 2" in out and "after repair cycle 1 of 2" in out
    assert "COMPLETE: PASS" in out and "1 failed" in out and "1 passed" in out
    # run_tests was approved once for this directory and argv; the write had its own approval
    assert out.count("Approve? [y/N]") == 2
    assert (app / "calc.py").read_text() == FIXED

    run, steps = last_run(services)
    assert run.verdict == "PASS" and "run_tests in" in run.verdict_reason and "1 repair cycle" in run.verdict_reason
    assert run.answer.endswith(f"Verdict: PASS: {run.verdict_reason}")
    assert phases(steps) == ["SPEC", "PLAN", "EXECUTE", "VERIFY", "REPAIR", "VERIFY", "COMPLETE"]
    # each step is stored with the phase it was taken in
    by_call = [(p["tool"], phase) for kind, phase, p in steps if kind == "ToolCall"]
    assert by_call == [("run_tests", "VERIFY"), ("write_file", "REPAIR"), ("run_tests", "VERIFY")]
    results = [p["ok"] for kind, _, p in steps if kind == "ToolResult"]
    assert results == [False, True, True]

    audit = services.store.audit_entries_sync()
    ran = [e for e in audit if e.action == "tool_run" and e.tool == "run_tests"]
    assert len(ran) == 2 and ran[0].approval_id == ran[1].approval_id is not None
    assert ran[1].decision == "approved" and "earlier in this run" in ran[1].detail
    assert [e.tool for e in audit if e.action == "approved"] == ["run_tests", "write_file"]
    assert any(e.action == "tool_run" and e.tool == "start_change" for e in audit)


@pytest.mark.asyncio
async def test_the_approval_covers_one_run_only(make: Any, fake_ollama: FakeOllama, workspace: Path) -> None:
    app = project(workspace, FIXED)
    services = await make()
    for _ in range(2):
        fake_ollama.script(
            call("start_change", spec=SPEC, plan=PLAN), call("run_tests", path=str(app)), Reply(content="Passing.")
        )
    first = await ask(services, "check app", "y\n")
    second = await ask(services, "check app again", "n\n")
    assert first.count("Approve? [y/N]") == 1 and second.count("Approve? [y/N]") == 1
    run, _ = last_run(services)
    assert run.verdict == "FAIL" and "denied or refused" not in run.verdict_reason
    assert run.verdict_reason == "nothing was changed or verified"


@pytest.mark.asyncio
async def test_repair_cycles_are_bounded(make: Any, fake_ollama: FakeOllama, workspace: Path) -> None:
    app = project(workspace)
    services = await make(max_repair_cycles=1)
    still_broken = "def add(a, b):\n    return a * b\n"
    fake_ollama.script(
        call("start_change", spec=SPEC, plan=PLAN),
        call("run_tests", path=str(app)),
        call("write_file", path=str(app / "calc.py"), content=still_broken),
        call("run_tests", path=str(app)),
        call("write_file", path=str(app / "calc.py"), content=FIXED),  # a second repair: refused
        Reply(content="I could not fix it in one try."),
    )
    out = await ask(services, "fix the failing test in app", "y\ny\n")
    assert out.count("Approve? [y/N]") == 2  # the refused repair never reached a person
    assert (app / "calc.py").read_text() == still_broken
    refusal = fake_ollama.chat_requests[5]["messages"][-1]
    assert refusal["role"] == "tool" and "repair cycles are used up (1 of 1" in refusal["content"]
    run, steps = last_run(services)
    assert run.verdict == "FAIL" and run.verdict_reason.endswith("failed after 1 repair cycle")
    assert phases(steps)[-1] == "COMPLETE" and phases(steps).count("REPAIR") == 1
    assert "COMPLETE: FAIL" in out


@pytest.mark.asyncio
async def test_a_failure_with_cycles_left_is_sent_back_once(
    make: Any, fake_ollama: FakeOllama, workspace: Path
) -> None:
    app = project(workspace)
    services = await make()
    fake_ollama.script(
        call("start_change", spec=SPEC, plan=PLAN),
        call("run_tests", path=str(app)),
        Reply(content="The test fails."),  # too early: it is told it has cycles left
        Reply(content="It fails because of add(); I leave it to you."),
    )
    await ask(services, "fix the failing test in app", "y\n")
    nudge = fake_ollama.chat_requests[3]["messages"][-1]
    assert nudge["role"] == "user" and "2 repair cycle(s) left" in nudge["content"]
    run, _ = last_run(services)
    assert run.status == "answered" and run.verdict == "FAIL"
    assert run.answer.startswith("It fails because of add()")


@pytest.mark.asyncio
async def test_verify_required_sends_the_model_back_to_verify(
    make: Any, fake_ollama: FakeOllama, workspace: Path
) -> None:
    app = project(workspace)
    services = await make(verify_required=True)
    fake_ollama.script(
        call("start_change", spec=SPEC, plan=PLAN),
        call("write_file", path=str(app / "calc.py"), content=FIXED),
        Reply(content="Fixed."),  # not verified: sent back
        call("run_tests", path=str(app)),
        Reply(content="Fixed and tested."),
    )
    out = await ask(services, "fix add in app", "y\ny\n")
    nudge = fake_ollama.chat_requests[3]["messages"][-1]
    assert nudge["role"] == "user" and "ORCHESTRATOR_VERIFY_REQUIRED" in nudge["content"]
    run, steps = last_run(services)
    assert run.verdict == "PASS" and run.answer.startswith("Fixed and tested.")
    assert phases(steps) == ["SPEC", "PLAN", "EXECUTE", "VERIFY", "COMPLETE"]
    assert "COMPLETE: PASS" in out

    fake_ollama.script(
        call("start_change", spec=SPEC, plan=PLAN),
        call("write_file", path=str(app / "calc.py"), content=BROKEN),
        Reply(content="Done."),
        Reply(content="Done, really."),  # still not verified: the verdict says so
    )
    await ask(services, "put add back", "y\n")
    run, _ = last_run(services)
    assert run.verdict == "FAIL" and "not verified" in run.verdict_reason


@pytest.mark.asyncio
async def test_without_verify_required_an_unverified_change_passes_and_says_so(
    make: Any, fake_ollama: FakeOllama, workspace: Path
) -> None:
    app = project(workspace)
    services = await make()
    fake_ollama.script(
        call("start_change", spec=SPEC, plan=["fix add()"]),
        call("write_file", path=str(app / "calc.py"), content=FIXED),
        Reply(content="Fixed."),
    )
    await ask(services, "fix add in app", "y\n")
    run, _ = last_run(services)
    assert run.verdict == "PASS" and run.verdict_reason == "1 change(s) made; not verified (no QA tool ran)"


@pytest.mark.asyncio
async def test_a_denied_change_fails_the_workflow(make: Any, fake_ollama: FakeOllama, workspace: Path) -> None:
    app = project(workspace)
    services = await make()
    fake_ollama.script(
        call("start_change", spec=SPEC, plan=["fix add()"]),
        call("write_file", path=str(app / "calc.py"), content=FIXED),
        Reply(content="Not changed, as you wish."),
    )
    out = await ask(services, "fix add in app", "n\n")
    assert (app / "calc.py").read_text() == BROKEN
    run, _ = last_run(services)
    assert run.verdict == "FAIL" and run.verdict_reason == "no change was made: 1 change(s) denied or refused"
    assert "COMPLETE: FAIL" in out


@pytest.mark.asyncio
async def test_a_misspelt_test_file_is_searched_for_and_corrected(
    make: Any, fake_ollama: FakeOllama, workspace: Path
) -> None:
    app = project(workspace, FIXED)
    services = await make()
    fake_ollama.script(
        call("start_change", spec=SPEC, plan=PLAN),
        call("run_tests", path=str(app), target="tests/test_calcs.py"),
        call("search_files", query="def test_add", path=str(app)),
        call("run_tests", path=str(app), target="tests/test_calc.py"),
        Reply(content="The test is tests/test_calc.py and it passes."),
    )
    out = await ask(services, "run the calc tests in app", "y\n")
    refused = fake_ollama.chat_requests[2]["messages"][-1]
    assert refused["role"] == "tool" and "tests/test_calcs.py" in refused["content"]
    assert "search_files" in refused["content"]  # the model is told how to recover
    found = fake_ollama.chat_requests[3]["messages"][-1]
    assert "test_calc.py" in found["content"]
    run, _ = last_run(services)
    assert run.status == "answered" and run.verdict == "PASS" and "1 passed" in out


@pytest.mark.asyncio
async def test_start_change_refuses_an_empty_plan_and_a_second_start(
    make: Any, fake_ollama: FakeOllama, workspace: Path
) -> None:
    services = await make()
    fake_ollama.script(
        call("start_change", spec=SPEC, plan=[]),
        call("start_change", spec=SPEC, plan=PLAN),
        call("start_change", spec="another", plan=["x"]),
        Reply(content="Nothing to do."),
    )
    await ask(services, "change something", "")
    first = fake_ollama.chat_requests[1]["messages"][-1]["content"]
    third = fake_ollama.chat_requests[3]["messages"][-1]["content"]
    assert "needs a plan" in first and "already under way" in third
    run, steps = last_run(services)
    assert phases(steps).count("SPEC") == 1 and run.verdict == "FAIL"
    refused = [e for e in services.store.audit_entries_sync() if e.action == "refused"]
    assert [e.tool for e in refused] == ["start_change", "start_change"]


@pytest.mark.asyncio
async def test_the_code_model_takes_over_once_the_workflow_starts(
    make: Any, fake_ollama: FakeOllama, workspace: Path
) -> None:
    fake_ollama.models.append("qwen2.5-coder:7b")
    app = project(workspace)
    services = await make(code_model="qwen2.5-coder:7b")
    fake_ollama.script(
        call("start_change", spec=SPEC, plan=["fix add()"]),
        call("write_file", path=str(app / "calc.py"), content=FIXED),
        Reply(content="Fixed."),
    )
    await ask(services, "fix add in app", "y\n")
    models = [r["model"] for r in fake_ollama.chat_requests]
    assert models[0] == services.settings.model
    assert models[1:] == ["qwen2.5-coder:7b"] * 2

    fake_ollama.script(Reply(content="Hello."))  # no workflow: the main model
    await ask(services, "hello", "")
    assert fake_ollama.chat_requests[-1]["model"] == services.settings.model


@pytest.mark.asyncio
async def test_the_model_is_told_about_workflows_and_the_qa_tools(
    make: Any, fake_ollama: FakeOllama, workspace: Path
) -> None:
    services = await make(max_repair_cycles=3)
    fake_ollama.script(Reply(content="Hi."))
    await ask(services, "hi", "")
    request = fake_ollama.chat_requests[0]
    names = {t["function"]["name"] for t in request["tools"]}
    assert {"start_change", "run_tests", "run_lint", "run_format", "run_build", "run_typecheck"} <= names
    system = request["messages"][0]["content"]
    assert "call start_change" in system and "at most 3 repair" in system
    run, steps = last_run(services)
    assert run.verdict == "" and all(phase == "" for _, phase, _ in steps)  # not a workflow
