"""analyze_logs end to end: asked in the console (a real `orchestrator ask` process) and in Slack
(the stand), the scripted model calls it, the containers of the private dockerd are read, the
grouped patterns reach the model and the person, nothing needs approval, and the audit has it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.core.tools.conftest import wait_for
from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.slack import FakeSlack
from tests.support.cli import run_cli
from tests.support.dockerd import DockerEngine
from tests.support.slack_stand import stands
from tests.support.waiting import until

NOISY = (
    'for i in 1 2 3 4 5 6; do echo "ERROR connect to 10.0.0.$i:5432 failed after ${i}17 ms"; done; '
    "echo 'worker 7 started'; sleep 120"
)
GROUP = "6x  error   [web] ERROR connect to <ip> failed after # ms"


def noisy_container(engine: DockerEngine) -> None:
    web = engine.client.containers.run(engine.image, ["sh", "-c", NOISY], name="web", network_mode="none", detach=True)

    assert wait_for(lambda: b"worker 7" in web.logs())


def call_then_answer(fake_ollama: FakeOllama, answer: str) -> None:
    fake_ollama.script(
        Reply(tool_calls=[{"name": "analyze_logs", "arguments": {"since": "1h", "unit": "-"}}]),
        Reply(content=answer),
    )


def test_asked_in_the_console(cli_env: dict[str, str], fake_ollama: FakeOllama, docker_host_env: DockerEngine) -> None:
    noisy_container(docker_host_env)
    call_then_answer(fake_ollama, "Six connection errors to the database from web.")
    env = cli_env | {"DOCKER_HOST": docker_host_env.base_url}
    proc = run_cli(["ask", "what went wrong in the logs?"], env)
    assert proc.returncode == 0, proc.stderr
    assert "analyze_logs(" in proc.stdout and GROUP in proc.stdout and "Approve?" not in proc.stdout
    assert proc.stdout.rstrip().endswith("Six connection errors to the database from web.")
    told_model = fake_ollama.chat_requests[-1]["messages"][-1]["content"]
    assert GROUP in told_model and "worker # started" in told_model
    audit = json.loads(run_cli(["audit", "--json"], env).stdout)
    assert [e["action"] for e in audit] == ["request", "tool_run"] and audit[1]["tool"] == "analyze_logs"


@pytest.mark.asyncio
async def test_asked_in_slack(fake_ollama: FakeOllama, docker_host_env: DockerEngine, tmp_path: Path) -> None:
    noisy_container(docker_host_env)
    call_then_answer(fake_ollama, "Six connection errors from web.")
    async with FakeSlack() as slack, stands(slack, fake_ollama, tmp_path) as make:
        stand = await make()
        ts = await stand.say("what went wrong in the logs?")
        await stand.answer(ts, contains="Six connection errors from web.")
        thread = "\n".join(m.text for m in stand.bot_messages(ts))
        assert "analyze_logs" in thread and "Approval needed" not in thread
        await until(lambda: len(fake_ollama.chat_requests) == 2)
        tool_msg = [m for m in fake_ollama.chat_requests[1]["messages"] if m["role"] == "tool"]
        assert GROUP in tool_msg[0]["content"]
        runs = [e for e in await stand.services.store.audit_entries() if e.action == "tool_run"]
        assert [e.tool for e in runs] == ["analyze_logs"]
