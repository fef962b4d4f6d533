"""Git tools on a temporary repository under the file roots; commits and reverts through the agent."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bot.app import Services
from core.errors import ToolError
from core.events import ApprovalRequested, Request, ToolResult
from core.policy import Policy, PolicyError
from core.tools.git import git_tools
from core.tools.registry import ToolContext, ToolSpec
from tests.core.tools.conftest import REQUESTER, invoke, run_approved
from tests.fakes.ollama import FakeOllama, Reply

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Tess",
    "GIT_AUTHOR_EMAIL": "tess@example.org",
    "GIT_COMMITTER_NAME": "Tess",
    "GIT_COMMITTER_EMAIL": "tess@example.org",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, env=ENV).stdout


@pytest.fixture
def repo(workspace: Path) -> Path:
    root = workspace / "site"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Tess")
    git(root, "config", "user.email", "tess@example.org")
    (root / "app.conf").write_text("port=80\n")
    (root / "README").write_text("hello\n")
    (root / "notes.txt").write_text("one\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    return root


@pytest.fixture
def tools(policy: Policy) -> dict[str, ToolSpec]:
    return {s.name: s for s in git_tools(policy, timeout=30)}


def call(name: str, **arguments: object) -> Reply:
    return Reply(tool_calls=[{"name": name, "arguments": arguments}])


async def drive(services: Services, text: str, *, approve: bool, before_decision: Any = None) -> list[object]:
    request = Request(platform="console", user_id="tester", channel="console", thread="git", text=text)
    events: list[object] = []
    async for ev in services.agent.run(request):
        events.append(ev)
        if isinstance(ev, ApprovalRequested):
            if before_decision is not None:
                before_decision()
            await services.gate.decide(ev.approval_id, platform="console", user_id="tester", approve=approve)
    return events


# ---------------------------------------------------------------- read-only


@pytest.mark.asyncio
async def test_status_diff_and_log(tools: dict[str, ToolSpec], repo: Path) -> None:
    assert "(working tree clean)" in await invoke(tools["git_status"], repo=str(repo))
    (repo / "app.conf").write_text("port=8080\n")
    (repo / "new.txt").write_text("new\n")
    (repo / "README").write_text("hello world\n")
    git(repo, "add", "README")
    status = await invoke(tools["git_status"], repo=str(repo))
    assert "## main" in status and " M app.conf" in status and "M  README" in status and "?? new.txt" in status
    unstaged = await invoke(tools["git_diff"], repo=str(repo))
    assert "-port=80" in unstaged and "+port=8080" in unstaged and "README" not in unstaged
    staged = await invoke(tools["git_diff"], repo=str(repo), staged=True)
    assert "+hello world" in staged and "app.conf" not in staged
    git(repo, "commit", "-q", "-m", "second")
    log = await invoke(tools["git_log"], repo=str(repo), n=5)
    lines = log.splitlines()
    assert lines[0] == str(repo) and "Tess: second (HEAD -> main)" in lines[1] and "Tess: first" in lines[2]
    assert len((await invoke(tools["git_log"], repo=str(repo), n=1)).splitlines()) == 2


@pytest.mark.asyncio
async def test_diff_redacts_secrets(tools: dict[str, ToolSpec], repo: Path) -> None:
    (repo / "app.conf").write_text("port=80\nDB_PASSWORD=hunter22\n")
    text = await invoke(tools["git_diff"], repo=str(repo))
    assert "hunter22" not in text and "DB_PASSWORD=[REDACTED]" in text


@pytest.mark.asyncio
async def test_repositories_outside_the_roots_are_refused(
    tools: dict[str, ToolSpec], repo: Path, tmp_path: Path, workspace: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    git(outside, "init", "-q")
    with pytest.raises(PolicyError, match="outside the file roots"):
        await invoke(tools["git_status"], repo=str(outside))
    # a directory inside the roots that belongs to a repository reaching outside them
    (outside / "inner").mkdir()
    (workspace / "link").symlink_to(outside / "inner")
    with pytest.raises(PolicyError, match="outside the file roots"):
        await invoke(tools["git_status"], repo=str(workspace / "link"))
    plain = workspace / "plain"
    plain.mkdir()
    with pytest.raises(ToolError, match="not inside a git work tree"):
        await invoke(tools["git_log"], repo=str(plain))


# ---------------------------------------------------------------- commit


@pytest.mark.asyncio
async def test_commit_needs_approval_and_contains_exactly_the_approved_paths(
    services: Services, fake_ollama: FakeOllama, repo: Path
) -> None:
    (repo / "app.conf").write_text("port=8080\n")  # to commit
    (repo / "added.txt").write_text("brand new\n")  # to commit (untracked)
    (repo / "notes.txt").unlink()  # to commit (a deletion)
    (repo / "README").write_text("staged by someone else\n")
    git(repo, "add", "README")  # staged, but not named: must stay out
    (repo / "other.txt").write_text("untracked, not named\n")
    head_before = git(repo, "rev-parse", "HEAD").strip()

    fake_ollama.script(
        call("git_commit", repo="site", message="Move to port 8080", paths=["app.conf", "added.txt", "notes.txt"]),
        Reply(content="Committed."),
    )
    events = await drive(services, "commit the port change", approve=True)
    asked = next(e for e in events if isinstance(e, ApprovalRequested))
    assert asked.tool == "git_commit" and asked.detail_kind == "diff" and asked.risk == "write"
    assert "-port=80\n+port=8080" in asked.detail and "+brand new" in asked.detail and "-one" in asked.detail
    assert "README" not in asked.detail and "other.txt" not in asked.detail
    assert "paths: app.conf, added.txt, notes.txt" in asked.detail and "Move to port 8080" in asked.detail
    result = next(e for e in events if isinstance(e, ToolResult))
    assert result.ok, result.output

    assert git(repo, "rev-parse", "HEAD~1").strip() == head_before
    changed = git(repo, "show", "--name-status", "--format=", "HEAD").split("\n")
    assert sorted(line for line in changed if line) == ["A\tadded.txt", "D\tnotes.txt", "M\tapp.conf"]
    assert git(repo, "log", "-1", "--format=%s|%an").strip() == "Move to port 8080|Tess"
    # what was staged before is still staged, and nothing else is
    status = git(repo, "status", "--porcelain")
    assert sorted(status.splitlines()) == ["?? other.txt", "M  README"]


@pytest.mark.asyncio
async def test_denied_commit_changes_nothing(services: Services, fake_ollama: FakeOllama, repo: Path) -> None:
    (repo / "app.conf").write_text("port=8080\n")
    head = git(repo, "rev-parse", "HEAD").strip()
    fake_ollama.script(call("git_commit", repo="site", message="x", paths=["app.conf"]), Reply(content="Not done."))
    events = await drive(services, "commit", approve=False)
    assert any(isinstance(e, ApprovalRequested) for e in events)
    assert git(repo, "rev-parse", "HEAD").strip() == head
    assert git(repo, "status", "--porcelain").strip() == "M app.conf"


@pytest.mark.asyncio
async def test_a_file_changed_after_the_request_is_not_committed(
    services: Services, fake_ollama: FakeOllama, repo: Path
) -> None:
    (repo / "app.conf").write_text("port=8080\n")
    head = git(repo, "rev-parse", "HEAD").strip()
    fake_ollama.script(call("git_commit", repo="site", message="x", paths=["app.conf"]), Reply(content="Changed."))
    events = await drive(
        services, "commit", approve=True, before_decision=lambda: (repo / "app.conf").write_text("port=9999\n")
    )
    result = next(e for e in events if isinstance(e, ToolResult))
    assert not result.ok and "changed after the approval" in result.output
    assert git(repo, "rev-parse", "HEAD").strip() == head


@pytest.mark.asyncio
async def test_commit_body_commits_only_the_approved_tree(tools: dict[str, ToolSpec], repo: Path) -> None:
    """A change after the fresh check, right before the commit, is not committed either."""
    (repo / "app.conf").write_text("port=8080\n")
    head = git(repo, "rev-parse", "HEAD").strip()
    spec = tools["git_commit"]
    args = spec.validate({"repo": str(repo), "message": "port", "paths": ["app.conf"]})
    plan = await spec.make_plan(args)
    assert await spec.fresh_parts(args) == plan.fingerprint_parts
    (repo / "app.conf").write_text("port=9999\n")
    with pytest.raises(ToolError, match="changed after the approval"):
        await spec.run(args, ToolContext(request=REQUESTER, plan=plan, approval_id=1))
    assert git(repo, "rev-parse", "HEAD").strip() == head


@pytest.mark.asyncio
async def test_commit_runs_no_hooks(tools: dict[str, ToolSpec], repo: Path, tmp_path: Path) -> None:
    marker = tmp_path / "hook-ran"
    for hook in ("pre-commit", "commit-msg", "post-commit", "reference-transaction"):
        path = repo / ".git" / "hooks" / hook
        path.write_text(f"#!/bin/sh\necho {hook} >> {marker}\n")
        path.chmod(0o755)
    (repo / "app.conf").write_text("port=8080\n")
    out = await invoke(tools["git_commit"], repo=str(repo), message="no hooks", paths=["app.conf"])
    assert out.startswith("committed ")
    assert not marker.exists()


@pytest.mark.asyncio
async def test_commit_refuses_bad_paths_and_empty_changes(tools: dict[str, ToolSpec], repo: Path) -> None:
    plan = tools["git_commit"].make_plan
    with pytest.raises(PolicyError, match="outside the file roots"):
        await plan({"repo": str(repo), "message": "x", "paths": ["../../../etc/passwd"]})
    with pytest.raises(ToolError, match=r"files under \.git"):
        await plan({"repo": str(repo), "message": "x", "paths": [".git/config"]})
    with pytest.raises(ToolError, match="nothing to commit"):
        await plan({"repo": str(repo), "message": "x", "paths": ["app.conf"]})
    with pytest.raises(ToolError, match="message is empty"):
        await plan({"repo": str(repo), "message": "  ", "paths": ["app.conf"]})
    with pytest.raises(ToolError, match="at least one path"):
        await plan({"repo": str(repo), "message": "x", "paths": []})
    (repo / "app.conf").write_text("port=8080\n")
    # a glob is a file name, not a pattern: "*.conf" matches nothing
    with pytest.raises(ToolError, match="cannot stage"):
        await plan({"repo": str(repo), "message": "x", "paths": ["*.conf"]})


@pytest.mark.asyncio
async def test_first_commit_of_an_empty_repository(tools: dict[str, ToolSpec], workspace: Path) -> None:
    fresh = workspace / "fresh"
    fresh.mkdir()
    git(fresh, "init", "-q", "-b", "main")
    (fresh / "a.txt").write_text("a\n")
    args = {"repo": str(fresh), "message": "start", "paths": ["a.txt"]}
    plan = await tools["git_commit"].make_plan(args)
    assert "first commit" in plan.detail and "+a" in plan.detail
    await run_approved(tools["git_commit"], args, plan)
    assert git(fresh, "log", "--format=%s").strip() == "start"
    assert git(fresh, "status", "--porcelain").strip() == ""


# ---------------------------------------------------------------- revert


@pytest.mark.asyncio
async def test_revert_shows_the_change_and_undoes_one_commit(tools: dict[str, ToolSpec], repo: Path) -> None:
    (repo / "app.conf").write_text("port=8080\n")
    git(repo, "commit", "-q", "-am", "bad port")
    bad = git(repo, "rev-parse", "HEAD").strip()
    (repo / "README").write_text("hello again\n")
    git(repo, "commit", "-q", "-am", "later work")
    (repo / "scratch.txt").write_text("uncommitted, elsewhere\n")

    args = {"repo": str(repo), "commit": bad[:8]}
    plan = await tools["git_revert"].make_plan(args)
    assert plan.risk == "write" and plan.detail_kind == "diff"
    assert 'Revert "bad port"' in plan.detail and "-port=8080\n+port=80" in plan.detail
    assert "README" not in plan.detail.split("\n\n", 1)[1]
    out = await run_approved(tools["git_revert"], args, plan)
    assert out.startswith(f"reverted {bad[:12]}")
    assert (repo / "app.conf").read_text() == "port=80\n"
    assert (repo / "README").read_text() == "hello again\n"
    assert git(repo, "log", "-1", "--format=%s").strip() == 'Revert "bad port"'
    assert git(repo, "status", "--porcelain").strip() == "?? scratch.txt"


@pytest.mark.asyncio
async def test_revert_refuses_when_the_files_have_local_changes(tools: dict[str, ToolSpec], repo: Path) -> None:
    (repo / "app.conf").write_text("port=8080\n")
    git(repo, "commit", "-q", "-am", "bad port")
    (repo / "app.conf").write_text("port=8081\n")
    with pytest.raises(ToolError, match="uncommitted changes"):
        await tools["git_revert"].make_plan({"repo": str(repo), "commit": "HEAD"})
    with pytest.raises(ToolError, match="invalid commit"):
        await tools["git_revert"].make_plan({"repo": str(repo), "commit": "--hard"})
    with pytest.raises(ToolError, match="no commit"):
        await tools["git_revert"].make_plan({"repo": str(repo), "commit": "deadbeef"})
