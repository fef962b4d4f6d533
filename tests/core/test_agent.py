"""The agent end to end: real Ollama client against the stand-in, real store, real tools."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adapters.console import ConsoleAdapter
from bot.app import Services
from core.errors import ToolError
from core.events import (
    Answer,
    ApprovalRequested,
    ApprovalResolved,
    Failed,
    Partial,
    Request,
    Risk,
    Thinking,
    ToolCall,
    ToolResult,
)
from core.policy import CommandDecision, PolicyError, Verdict
from core.tools.registry import Plan, ToolContext, ToolSpec, tool
from tests.fakes.ollama import FakeOllama, Reply


def call(name: str, **arguments: object) -> Reply:
    return Reply(tool_calls=[{"name": name, "arguments": arguments}])


async def collect(services: Services, text: str, *, thread: str = "t1", live: bool = False) -> list[object]:
    """The run's events: the stored steps, and with `live` the streamed pieces too."""
    request = Request(platform="console", user_id="tester", channel="console", thread=thread, text=text)
    return [ev async for ev in services.agent.run(request) if live or not isinstance(ev, Partial)]


def console(services: Services, answers: str = "") -> tuple[ConsoleAdapter, io.StringIO]:
    out = io.StringIO()
    adapter = ConsoleAdapter(services.agent, services.gate, out=out, err=out, inp=io.StringIO(answers), user="tester")
    return adapter, out


def audit_actions(services: Services) -> list[tuple[str, str, str]]:
    return [(e.action, e.tool, e.decision) for e in services.store.audit_entries_sync()]


@pytest.mark.asyncio
async def test_read_only_tool_runs_without_a_prompt(services: Services, fake_ollama: FakeOllama) -> None:
    fake_ollama.script(call("disk_usage"), Reply(content="The root filesystem is 23% full."))
    events = await collect(services, "how full is the disk?")
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["ToolCall", "ToolResult", "Answer"]
    result = events[1]
    assert isinstance(result, ToolResult) and result.ok and '"mount"' in result.output
    assert not any(isinstance(e, ApprovalRequested) for e in events)
    # the model saw the tool result in its second request, and the schema of every tool
    second = fake_ollama.chat_requests[1]
    assert second["messages"][-1]["role"] == "tool"
    assert {t["function"]["name"] for t in second["tools"]} >= {"disk_usage", "run_command", "write_file"}
    system = second["messages"][0]["content"]
    assert "Current date and time" in system and "Host:" in system


@pytest.mark.asyncio
async def test_forbidden_command_is_refused_without_prompt_and_audited(
    services: Services, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(call("run_command", command="mkfs.ext4 /dev/sda1"), Reply(content="I cannot do that."))
    adapter, out = console(services, answers="y\n")  # a "y" waiting on stdin must not be consumed
    assert await adapter.ask("format the disk") == 0
    assert "Approve?" not in out.getvalue()
    assert "refused" in out.getvalue()
    assert ("refused", "run_command", "") in audit_actions(services)
    assert not any(a[0] == "tool_run" for a in audit_actions(services))


@pytest.mark.asyncio
async def test_write_file_denied_leaves_the_file_untouched(
    services: Services, fake_ollama: FakeOllama, workspace: Path
) -> None:
    target = workspace / "app.conf"
    target.write_text("port=80\n")
    fake_ollama.script(call("write_file", path="app.conf", content="port=8080\n"), Reply(content="Left it alone."))
    adapter, out = console(services, answers="n\n")
    assert await adapter.ask("change the port") == 0
    text = out.getvalue()
    assert "-port=80" in text and "+port=8080" in text  # the diff was shown
    assert target.read_text() == "port=80\n"
    assert ("denied", "write_file", "denied") in audit_actions(services)
    tool_msg = fake_ollama.chat_requests[1]["messages"][-1]
    assert tool_msg["role"] == "tool" and "denied" in tool_msg["content"]


@pytest.mark.asyncio
async def test_write_file_approved_writes_and_keeps_a_backup(
    services: Services, fake_ollama: FakeOllama, workspace: Path
) -> None:
    target = workspace / "app.conf"
    target.write_text("port=80\n")
    fake_ollama.script(call("write_file", path="app.conf", content="port=8080\n"), Reply(content="Done."))
    adapter, _ = console(services, answers="yes\n")
    assert await adapter.ask("change the port") == 0
    assert target.read_text() == "port=8080\n"
    backups = list(services.settings.backup_dir.rglob("app.conf"))
    assert len(backups) == 1 and backups[0].read_text() == "port=80\n"
    actions = audit_actions(services)
    assert ("approved", "write_file", "approved") in actions
    assert ("tool_run", "write_file", "approved") in actions


@pytest.mark.asyncio
async def test_end_of_input_denies(services: Services, fake_ollama: FakeOllama, workspace: Path) -> None:
    fake_ollama.script(call("write_file", path="new.txt", content="x"), Reply(content="ok"))
    adapter, _ = console(services, answers="")
    await adapter.ask("write it")
    assert not (workspace / "new.txt").exists()


@pytest.mark.asyncio
async def test_file_changed_between_diff_and_approval_is_not_overwritten(
    services: Services, fake_ollama: FakeOllama, workspace: Path
) -> None:
    target = workspace / "app.conf"
    target.write_text("port=80\n")
    fake_ollama.script(call("write_file", path="app.conf", content="port=8080\n"), Reply(content="It changed."))
    request = Request(platform="console", user_id="tester", channel="console", thread="t", text="edit")
    events = []
    async for ev in services.agent.run(request):
        events.append(ev)
        if isinstance(ev, ApprovalRequested):
            target.write_text("port=81\n")  # someone edits the file while the approval is pending
            await services.gate.decide(ev.approval_id, platform="console", user_id="tester", approve=True)
    assert target.read_text() == "port=81\n"
    result = next(e for e in events if isinstance(e, ToolResult))
    assert not result.ok and "changed" in result.output
    assert ("refused", "write_file", "") in audit_actions(services)


@pytest.mark.asyncio
async def test_paths_outside_the_roots_are_refused(
    services: Services, fake_ollama: FakeOllama, workspace: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cr3t")
    (workspace / "escape").symlink_to(tmp_path)
    fake_ollama.script(
        call("read_file", path="../secret.txt"),
        call("read_file", path="escape/secret.txt"),
        call("write_file", path="/etc/orchestrator-test", content="x"),
        Reply(content="Those are outside my roots."),
    )
    events = await collect(services, "read the secret")
    results = [e for e in events if isinstance(e, ToolResult)]
    assert len(results) == 3
    assert all(not r.ok and "outside the file roots" in r.output for r in results)
    assert not any(isinstance(e, ApprovalRequested) for e in events)
    assert all("s3cr3t" not in r.output for r in results)
    assert isinstance(events[-1], Answer)


@pytest.mark.asyncio
async def test_unknown_tool_and_invalid_arguments_are_observations(
    services: Services, fake_ollama: FakeOllama, workspace: Path
) -> None:
    (workspace / "a.txt").write_text("hello")
    fake_ollama.script(
        call("format_everything", disk="sda"),
        call("read_file", file="a.txt"),
        call("read_file", path="a.txt", max_bytes="lots"),
        call("read_file", path="a.txt"),
        Reply(content="The file says hello."),
    )
    events = await collect(services, "what does a.txt say?")
    results = [e for e in events if isinstance(e, ToolResult)]
    assert "no tool named 'format_everything'" in results[0].output and "read_file" in results[0].output
    assert "invalid arguments for read_file" in results[1].output and "path" in results[1].output
    assert "invalid arguments" in results[2].output and "max_bytes" in results[2].output
    assert results[3].ok and results[3].output == "hello"
    assert isinstance(events[-1], Answer) and events[-1].text == "The file says hello."
    # each error went back to the model as a tool message it can correct
    fourth = fake_ollama.chat_requests[3]["messages"]
    assert "invalid arguments" in fourth[-1]["content"]


@pytest.mark.asyncio
async def test_tool_calls_written_as_json_in_content_and_think_blocks(
    services: Services, fake_ollama: FakeOllama, workspace: Path
) -> None:
    (workspace / "b.txt").write_text("from b")
    fake_ollama.script(
        Reply(content='<think>I should read b.txt</think>{"name": "read_file", "arguments": {"path": "b.txt"}}'),
        Reply(content='```json\n{"name": "list_directory", "parameters": {"path": "."}}\n```'),
        Reply(content='<tool_call>\n{"name": "disk_usage", "arguments": {}}\n</tool_call>'),
        Reply(content="<think>all done</think>b.txt says: from b"),
    )
    events = await collect(services, "read b")
    calls = [e.tool for e in events if isinstance(e, ToolCall)]
    assert calls == ["read_file", "list_directory", "disk_usage"]
    thoughts = [e.text for e in events if isinstance(e, Thinking)]
    assert "I should read b.txt" in thoughts and "all done" in thoughts
    answer = events[-1]
    assert isinstance(answer, Answer) and answer.text == "b.txt says: from b"
    assert "<think>" not in answer.text


@pytest.mark.asyncio
async def test_native_thinking_is_shown(services: Services, fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply(thinking="The user wants uptime.", content="Up 3 days."))
    events = await collect(services, "uptime?")
    assert isinstance(events[0], Thinking) and events[0].text == "The user wants uptime."
    assert fake_ollama.chat_requests[0]["think"] is True


@pytest.mark.asyncio
async def test_iteration_cap_ends_the_run_cleanly(services: Services, fake_ollama: FakeOllama) -> None:
    services.agent.config.max_iterations = 3
    fake_ollama.default_reply = call("disk_usage")
    events = await collect(services, "loop forever")
    assert isinstance(events[-1], Failed)
    assert "stopped after 3 model turns" in events[-1].error
    assert len(fake_ollama.chat_requests) == 3
    runs = await services.store.runs()
    assert runs[0].status == "failed"


@pytest.mark.asyncio
async def test_empty_replies_end_with_a_clear_message(services: Services, fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply(content=""), Reply(content="   "))
    events = await collect(services, "hello?")
    assert isinstance(events[-1], Failed) and "empty reply" in events[-1].error


@pytest.mark.asyncio
async def test_empty_reply_once_then_answer(services: Services, fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply(content=""), Reply(content="Hello!"))
    events = await collect(services, "hello?")
    assert isinstance(events[-1], Answer) and events[-1].text == "Hello!"


@pytest.mark.asyncio
async def test_history_is_kept_per_thread(services: Services, fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply(content="nginx is on port 8080."), Reply(content="Yes, 8080."), Reply(content="?"))
    await collect(services, "which port does nginx use?", thread="A")
    await collect(services, "are you sure?", thread="A")
    await collect(services, "are you sure?", thread="B")
    same_thread = [m["content"] for m in fake_ollama.chat_requests[1]["messages"]]
    assert "which port does nginx use?" in same_thread and "nginx is on port 8080." in same_thread
    other_thread = [m["content"] for m in fake_ollama.chat_requests[2]["messages"]]
    assert "which port does nginx use?" not in other_thread


@pytest.mark.asyncio
async def test_every_step_is_stored(services: Services, fake_ollama: FakeOllama) -> None:
    fake_ollama.script(
        Reply(thinking="hmm", tool_calls=[{"name": "system_info", "arguments": {}}]), Reply(content="ok")
    )
    events = await collect(services, "status?")
    steps = await services.store.steps(events[0].run_id)  # type: ignore[attr-defined]
    assert [s.kind for s in steps] == [type(e).__name__ for e in events]
    payload = json.loads(steps[2].payload_json)
    assert payload["tool"] == "system_info" and "cpu_percent" in payload["output"]


@pytest.mark.asyncio
async def test_secrets_in_tool_output_never_reach_the_model(
    services: Services, fake_ollama: FakeOllama, workspace: Path
) -> None:
    (workspace / ".env").write_text("DB_PASSWORD=hunter2\nAPP_NAME=shop\n")
    fake_ollama.script(call("read_file", path=".env"), Reply(content="It configures shop."))
    events = await collect(services, "what is in .env?")
    result = next(e for e in events if isinstance(e, ToolResult))
    assert "hunter2" not in result.output and "APP_NAME=shop" in result.output
    assert "hunter2" not in json.dumps(fake_ollama.chat_requests[1])


@pytest.mark.asyncio
async def test_command_needing_approval_runs_once_when_approved(
    services: Services, fake_ollama: FakeOllama, workspace: Path
) -> None:
    marker = workspace / "made-by-touch"
    fake_ollama.script(call("run_command", command=f"touch {marker}"), Reply(content="Created."))
    adapter, out = console(services, answers="y\n")
    assert await adapter.ask("create the marker") == 0
    assert marker.exists()
    assert f"$ touch {marker}" in out.getvalue()
    runs = [a for a in audit_actions(services) if a[0] == "tool_run"]
    assert runs == [("tool_run", "run_command", "approved")]


# ---------------------------------------------------------------- the tool's own body, after approval


@dataclass
class Recorder:
    """A risky tool whose body, plan and fresh hooks say when they ran and with what."""

    bodies: list[tuple[str, ToolContext]] = field(default_factory=list)
    plans: int = 0
    fresh: list[str] = field(default_factory=list)
    state: str = "v1"  # the fact the approval is bound to
    spec: ToolSpec = field(init=False)

    def __post_init__(self) -> None:
        @tool(risk=Risk.EXEC)
        async def reboot_host(host: str, *, ctx: ToolContext) -> str:
            """Reboot one host.

            Args:
                host: which host.
            """
            self.bodies.append((host, ctx))
            return f"rebooted {host}"

        @reboot_host.plan
        async def _plan(args: dict[str, Any]) -> Plan:
            self.plans += 1
            return Plan(
                risk=Risk.EXEC,
                summary=f"reboot {args['host']}",
                detail=f"reboot {args['host']}",
                host=args["host"],
                fingerprint_parts=(self.state,),
            )

        @reboot_host.check_fresh
        async def _fresh(args: dict[str, Any]) -> tuple[str, ...]:
            self.fresh.append(args["host"])
            if self.state == "gone":
                raise ToolError(f"{args['host']} is not in the inventory any more")
            return (self.state,)

        self.spec = reboot_host


@pytest.fixture
def recorder(services: Services) -> Recorder:
    rec = Recorder()
    services.agent.tools.add(rec.spec)
    return rec


async def drive(services: Services, *, approve: bool, while_pending: Any = None, user: str = "tester") -> list[object]:
    request = Request(platform="console", user_id=user, channel="console", thread="t", text="do it")
    events: list[object] = []
    async for ev in services.agent.run(request):
        events.append(ev)
        if isinstance(ev, ApprovalRequested):
            if while_pending is not None:
                while_pending()
            await services.gate.decide(ev.approval_id, platform="console", user_id="tester", approve=approve)
    return events


def result_of(events: list[object]) -> ToolResult:
    [result] = [e for e in events if isinstance(e, ToolResult)]
    return result


@pytest.mark.asyncio
async def test_the_body_runs_only_after_approval_with_the_approved_args(
    services: Services, fake_ollama: FakeOllama, recorder: Recorder
) -> None:
    fake_ollama.script(call("reboot_host", host="web1"), Reply(content="Rebooted."))
    events: list[object] = []
    request = Request(platform="console", user_id="tester", channel="console", thread="t", text="reboot web1")
    async for ev in services.agent.run(request):
        events.append(ev)
        if isinstance(ev, (ApprovalRequested, ApprovalResolved)):
            assert recorder.bodies == [] and recorder.fresh == []  # nothing ran while the approval was open
        if isinstance(ev, ApprovalRequested):
            await services.gate.decide(ev.approval_id, platform="console", user_id="tester", approve=True)
    asked = next(e for e in events if isinstance(e, ApprovalRequested))
    tool_call = next(e for e in events if isinstance(e, ToolCall))
    assert result_of(events).ok and result_of(events).output == "rebooted web1"
    [(host, ctx)] = recorder.bodies
    assert host == "web1"  # the arguments the approver saw
    assert ctx.approved and ctx.approval_id == asked.approval_id
    assert ctx.request == request and ctx.run_id == tool_call.run_id and ctx.call_id == tool_call.call_id
    assert ctx.plan is not None and ctx.plan.summary == asked.summary == "reboot web1"
    # the named fresh hook checked the facts again; the plan was not made a second time
    assert recorder.fresh == ["web1"] and recorder.plans == 1
    assert ("tool_run", "reboot_host", "approved") in audit_actions(services)


@pytest.mark.asyncio
async def test_a_denied_call_never_enters_the_body(
    services: Services, fake_ollama: FakeOllama, recorder: Recorder
) -> None:
    fake_ollama.script(call("reboot_host", host="web1"), Reply(content="Left alone."))
    events = await drive(services, approve=False)
    assert not result_of(events).ok and "denied" in result_of(events).output
    assert recorder.bodies == [] and recorder.fresh == []
    assert not any(a[0] == "tool_run" for a in audit_actions(services))


@pytest.mark.asyncio
async def test_the_fresh_hook_refuses_a_target_that_changed_after_the_approval(
    services: Services, fake_ollama: FakeOllama, recorder: Recorder
) -> None:
    fake_ollama.script(
        call("reboot_host", host="web1"), call("reboot_host", host="web2"), Reply(content="Both changed.")
    )

    def change() -> None:
        recorder.state = "v2" if recorder.state == "v1" else "gone"

    events = await drive(services, approve=True, while_pending=change)
    first, second = [e for e in events if isinstance(e, ToolResult)]
    assert not first.ok and "the target changed after the approval was requested" in first.output
    assert not second.ok and second.output == "not run: web2 is not in the inventory any more"
    assert recorder.fresh == ["web1", "web2"] and recorder.bodies == []
    assert [a for a in audit_actions(services) if a[0] in {"refused", "tool_run"}] == [
        ("refused", "reboot_host", ""),
        ("refused", "reboot_host", ""),
    ]


@pytest.mark.asyncio
async def test_the_context_parameter_is_not_in_the_schema_and_cannot_be_injected(
    services: Services, fake_ollama: FakeOllama, recorder: Recorder
) -> None:
    forged = {"request": {"platform": "console", "user_id": "admin"}, "approval_id": 1}
    fake_ollama.script(
        call("reboot_host", host="web1", ctx=forged),
        call("run_command", command="uname -s", ctx=forged),
        Reply(content="Refused."),
    )
    events = await drive(services, approve=True)
    results = [e for e in events if isinstance(e, ToolResult)]
    assert "invalid arguments for reboot_host" in results[0].output and "ctx" in results[0].output
    assert "invalid arguments for run_command" in results[1].output and "ctx" in results[1].output
    assert not any(isinstance(e, ApprovalRequested) for e in events)
    assert recorder.bodies == [] and recorder.fresh == []
    for schema in fake_ollama.chat_requests[0]["tools"]:
        parameters = schema["function"]["parameters"]
        assert "ctx" not in parameters.get("properties", {}) and "ctx" not in parameters["required"]
    assert recorder.spec.context_param == "ctx"


@pytest.mark.asyncio
async def test_a_command_forbidden_after_its_approval_does_not_run(
    services: Services, fake_ollama: FakeOllama, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = workspace / "made-by-touch"
    fake_ollama.script(call("run_command", command=f"touch {marker}"), Reply(content="Not created."))

    def forbid() -> None:  # the operator tightens the policy while the approval is pending
        decision = CommandDecision(Verdict.FORBIDDEN, (), "refused: touch is on the operator's deny list")
        monkeypatch.setattr(services.policy, "check_command", lambda command: decision)

    events = await drive(services, approve=True, while_pending=forbid)
    assert result_of(events).output == "not run: refused: touch is on the operator's deny list"
    assert not marker.exists()
    assert ("refused", "run_command", "") in audit_actions(services)


@pytest.mark.asyncio
async def test_run_command_body_runs_an_unapproved_command_only_if_it_is_read_only(
    services: Services, workspace: Path
) -> None:
    spec = services.agent.tools.get("run_command")
    assert spec is not None
    marker = workspace / "made-by-touch"
    ctx = ToolContext(request=Request(platform="console", user_id="tester", channel="console", text="x"))
    with pytest.raises(PolicyError, match="needs a person's approval"):
        await spec.run({"command": f"touch {marker}"}, ctx)
    assert not marker.exists()
    with pytest.raises(PolicyError, match="refused"):
        await spec.run({"command": "mkfs.ext4 /dev/sda1"}, ctx)
    out = await spec.run({"command": "uname -s"}, ctx)
    assert out.ok and out.text.startswith("$ uname -s")


@pytest.mark.asyncio
async def test_write_file_refused_by_its_fresh_hook_and_by_its_body_when_the_file_changed(
    services: Services, fake_ollama: FakeOllama, workspace: Path
) -> None:
    spec = services.agent.tools.get("write_file")
    assert spec is not None and spec.fresh_fn is not None
    target = workspace / "app.conf"
    target.write_text("port=80\n")
    args = {"path": "app.conf", "content": "port=8080\n"}
    plan = await spec.make_plan(args)
    assert await spec.fresh_parts(args) == plan.fingerprint_parts
    target.write_text("port=81\n")
    assert await spec.fresh_parts(args) != plan.fingerprint_parts  # what the agent compares after approval
    # and if the file changes between the fresh check and the write, the body refuses too
    ctx = ToolContext(request=Request(platform="console", user_id="tester", channel="console", text="x"), plan=plan)
    with pytest.raises(ToolError, match="changed after the approval"):
        await spec.run(args, ctx)
    assert target.read_text() == "port=81\n"
