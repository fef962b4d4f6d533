"""GitOps end to end: a directory named in ORCHESTRATOR_GITOPS_PATHS, asked about in the console
(real `orchestrator ask` processes, approved at the prompt) and in Slack (the stand, approved by
a reaction). The scripted model puts it in git, writes a file (committed with the approval, the
approver and the request) and rolls it back; each approval is asked, each run is audited, and
the file returns to the committed state."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.slack import FakeSlack
from tests.support.cli import run_cli
from tests.support.slack_stand import stands
from tests.support.waiting import until

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

CONF = "worker_processes 2;\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def call(name: str, **arguments: Any) -> Reply:
    return Reply(tool_calls=[{"name": name, "arguments": arguments}])


def site_in(root: Path) -> Path:
    site = root / "nginx"
    site.mkdir()
    (site / "nginx.conf").write_text(CONF)
    return site


def test_in_the_console_a_write_is_committed_and_rolled_back(cli_env: dict[str, str], fake_ollama: FakeOllama) -> None:
    site = site_in(Path(cli_env["ORCHESTRATOR_FILE_ROOTS"]))
    env = cli_env | {"ORCHESTRATOR_GITOPS_PATHS": str(site)}
    conf = str(site / "nginx.conf")
    fake_ollama.script(
        call("gitops_init", path=str(site)),
        call("write_file", path=conf, content="worker_processes 4;\n"),
        Reply(content="Four workers now, committed."),
    )
    asked = run_cli(["ask", "put nginx in git and use 4 workers"], env, stdin="y\ny\n")
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.count("Approve? [y/N]") == 2 and "+worker_processes 4;" in asked.stdout
    assert f"GitOps: {conf} is committed in {site}" in asked.stdout  # the approver was told before saying yes
    assert (site / "nginx.conf").read_text() == "worker_processes 4;\n"
    message = git(site, "log", "-1", "--format=%B")
    assert message.startswith("write_file nginx.conf") and "Request: put nginx in git and use 4 workers" in message
    assert "Approved-by: console:cli-user" in message and "Requested-by: console:cli-user" in message
    approval = message.split("Approval: #")[1].split()[0]

    fake_ollama.script(call("gitops_rollback", path=str(site), commit="HEAD~1"), Reply(content="Back to 2."))
    back = run_cli(["ask", "undo the worker change"], env, stdin="y\n")
    assert back.returncode == 0, back.stderr
    assert "-worker_processes 4;" in back.stdout and "+worker_processes 2;" in back.stdout
    assert (site / "nginx.conf").read_text() == CONF  # the committed state, on disk
    assert git(site, "status", "--porcelain") == ""
    assert len(git(site, "log", "--format=%h").split()) == 3

    audit = json.loads(run_cli(["audit", "--json"], env).stdout)
    runs = [e for e in audit if e["action"] == "tool_run"]
    assert [e["tool"] for e in runs] == ["gitops_init", "write_file", "gitops_rollback"]
    assert all(e["decision"] == "approved" for e in runs)
    approved = [e for e in audit if e["action"] == "approved"]
    assert [e["decider"] for e in approved] == ["console:cli-user"] * 3
    assert str(approved[1]["approval_id"]) == approval


def test_a_gitops_directory_outside_the_roots_is_one_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    proc = run_cli(["ask", "hello"], cli_env | {"ORCHESTRATOR_GITOPS_PATHS": str(outside)})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert f"the GitOps directory {outside} is outside the file roots" in line
    assert "ORCHESTRATOR_GITOPS_PATHS" in line and "ORCHESTRATOR_FILE_ROOTS" in line


@pytest.mark.asyncio
async def test_in_slack_the_approver_and_the_request_are_in_the_commit(fake_ollama: FakeOllama, tmp_path: Path) -> None:
    root = tmp_path / "srv"
    root.mkdir()
    site = site_in(root)
    git(site, "init", "-q", "-b", "main")
    git(site, "add", ".")
    git(site, "-c", "user.name=Ops", "-c", "user.email=ops@example.org", "commit", "-q", "-m", "by hand")
    conf = str(site / "nginx.conf")
    fake_ollama.script(
        call("write_file", path=conf, content="worker_processes 8;\n"), Reply(content="Eight workers, committed.")
    )
    async with FakeSlack() as slack, stands(slack, fake_ollama, tmp_path) as make:
        stand = await make(ORCHESTRATOR_FILE_ROOTS=str(root), ORCHESTRATOR_GITOPS_PATHS=str(site))
        ts = await stand.say("use 8 nginx workers")
        approval = await stand.approval_message(ts)
        assert "+worker_processes 8;" in approval.text and "GitOps:" in approval.text
        assert git(site, "log", "--format=%s").split("\n")[0] == "by hand"  # nothing before the approval
        await stand.react("UADMIN", "white_check_mark", approval.ts)
        await stand.answer(ts, contains="Eight workers, committed.")
        message = git(site, "log", "-1", "--format=%B")
        assert "Request: use 8 nginx workers" in message and "Requested-by: slack:U1" in message
        assert "Approved-by: slack:UADMIN" in message
        thread = "\n".join(m.text for m in stand.bot_messages(ts))
        assert "committed" in thread

        fake_ollama.script(call("gitops_rollback", path=str(site), commit="HEAD~1"), Reply(content="Rolled back."))
        ts2 = await stand.say("roll nginx back")
        await until(lambda: any("Approval needed" in m.text for m in stand.bot_messages(ts2)))
        approval2 = await stand.approval_message(ts2)
        assert "-worker_processes 8;" in approval2.text
        await stand.react("UADMIN", "white_check_mark", approval2.ts)
        await stand.answer(ts2, contains="Rolled back.")
        assert (site / "nginx.conf").read_text() == CONF
        runs = [e for e in await stand.services.store.audit_entries() if e.action == "tool_run"]
        assert [(e.tool, e.decision) for e in runs] == [("write_file", "approved"), ("gitops_rollback", "approved")]
