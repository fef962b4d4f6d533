"""GitOps on a real git: a configured directory put in git, approved writes committed with the
approval, the approver and the request, hooks around commits (a failing check puts the change
back), rollback to a commit with what nobody committed kept first, and the refusals."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.errors import ToolError
from core.events import Request, Risk
from core.policy import Policy
from core.tools.files import file_tools
from core.tools.gitops import GitOps, gitops_tools
from core.tools.registry import Plan, ToolContext, ToolOutput, ToolSpec

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

ASKED = Request(platform="slack", user_id="U1", channel="C1", text="raise the nginx worker count to 4")
CONF = "worker_processes 2;\nlisten 80;\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def site(workspace: Path) -> Path:
    d = workspace / "nginx"
    d.mkdir()
    (d / "nginx.conf").write_text(CONF)
    (d / "sites").mkdir()
    (d / "sites" / "default").write_text("server {}\n")
    return d


@pytest.fixture
def gitops(policy: Policy, site: Path, tmp_path: Path) -> GitOps:
    return GitOps(policy, [site], hooks_file=tmp_path / "data" / "gitops-hooks.json", timeout=30)


@pytest.fixture
def tools(policy: Policy, gitops: GitOps, tmp_path: Path) -> dict[str, ToolSpec]:
    specs = [*file_tools(policy, backup_dir=tmp_path / "backups", gitops=gitops), *gitops_tools(gitops)]
    return {s.name: s for s in specs}


async def plan_of(spec: ToolSpec, **raw: Any) -> Plan:
    return await spec.make_plan(spec.validate(raw))


async def approved(spec: ToolSpec, *, approval: int = 7, **raw: Any) -> ToolOutput:
    """The call as the agent runs it after slack:UADMIN approved it as approval #`approval`."""
    args = spec.validate(raw)
    plan = await spec.make_plan(args)
    assert plan.risk is not Risk.READ
    assert await spec.fresh_parts(args) == plan.fingerprint_parts
    ctx = ToolContext(request=ASKED, run_id=3, plan=plan, approval_id=approval, approved_by="slack:UADMIN")
    out = await spec.run(args, ctx)
    return out if isinstance(out, ToolOutput) else ToolOutput(out)


async def read(spec: ToolSpec, **raw: Any) -> str:
    args = spec.validate(raw)
    plan = await spec.make_plan(args)
    assert plan.risk is Risk.READ
    return str(await spec.run(args, ToolContext(request=ASKED, plan=plan)))


async def init(tools: dict[str, ToolSpec], site: Path) -> None:
    done = await approved(tools["gitops_init"], path=str(site), approval=1)
    assert done.ok and "committed its 2 files" in done.text


def last_message(repo: Path) -> str:
    return git(repo, "log", "-1", "--format=%B")


# ---------------------------------------------------------------- init and status


@pytest.mark.asyncio
async def test_init_shows_the_files_then_commits_them_with_a_private_git_dir(
    tools: dict[str, ToolSpec], site: Path
) -> None:
    plan = await plan_of(tools["gitops_init"], path=str(site))
    assert plan.risk is Risk.WRITE
    assert "nginx.conf (31 bytes)" in plan.detail and "sites/default" in plan.detail and "2 files" in plan.detail
    await init(tools, site)
    assert git(site, "ls-files").split() == ["nginx.conf", "sites/default"]
    assert stat.S_IMODE((site / ".git").stat().st_mode) == 0o700  # keys under /etc stay unreadable to others
    message = last_message(site)
    assert "Approved-by: slack:UADMIN" in message and "Approval: #1" in message and "Requested-by: slack:U1" in message
    with pytest.raises(ToolError, match="already in the git repository"):
        await plan_of(tools["gitops_init"], path=str(site))


@pytest.mark.asyncio
async def test_init_is_refused_when_the_directory_changed_after_the_approval_was_asked(
    tools: dict[str, ToolSpec], site: Path
) -> None:
    spec = tools["gitops_init"]
    args = spec.validate({"path": str(site)})
    plan = await spec.make_plan(args)
    (site / "added-later.conf").write_text("x\n")  # the approver never saw this file
    assert await spec.fresh_parts(args) != plan.fingerprint_parts


@pytest.mark.asyncio
async def test_paths_outside_the_gitops_directories_are_refused(
    tools: dict[str, ToolSpec], site: Path, workspace: Path
) -> None:
    other = workspace / "other"
    other.mkdir()
    with pytest.raises(ToolError, match="not in a GitOps directory; the configured ones are"):
        await plan_of(tools["gitops_init"], path=str(other))
    status = await read(tools["gitops_status"])
    assert "not in git yet: gitops_init" in status


# ---------------------------------------------------------------- write_file is committed


@pytest.mark.asyncio
async def test_an_approved_write_is_committed_with_the_approval_the_approver_and_the_request(
    tools: dict[str, ToolSpec], site: Path
) -> None:
    await init(tools, site)
    (site / "sites" / "default").write_text("server { listen 8080; }\n")  # a change by hand stays out
    new = CONF.replace("2", "4")
    plan = await plan_of(tools["write_file"], path=str(site / "nginx.conf"), content=new)
    assert f"GitOps: {site / 'nginx.conf'} is committed in {site}" in plan.detail
    done = await approved(tools["write_file"], path=str(site / "nginx.conf"), content=new, approval=12)
    assert done.ok and "committed" in done.text
    message = last_message(site)
    assert message.startswith("write_file nginx.conf")
    assert "Request: raise the nginx worker count to 4" in message
    assert "Approved-by: slack:UADMIN" in message and "Approval: #12" in message and "Run: 3" in message
    assert git(site, "show", "--name-only", "--format=", "HEAD").split() == ["nginx.conf"]
    assert git(site, "status", "--porcelain").strip() == "M sites/default"
    log = await read(tools["gitops_log"], path=str(site))
    assert "write_file nginx.conf  [approval #12 by slack:UADMIN]" in log
    status = await read(tools["gitops_status"], path=str(site))
    assert "M sites/default" in status and "write_file nginx.conf" in status


@pytest.mark.asyncio
async def test_a_write_before_init_is_done_and_says_it_was_not_committed(
    tools: dict[str, ToolSpec], site: Path
) -> None:
    done = await approved(tools["write_file"], path=str(site / "nginx.conf"), content="x\n")
    assert done.ok and "not committed" in done.text and "gitops_init" in done.text
    assert (site / "nginx.conf").read_text() == "x\n"


# ---------------------------------------------------------------- hooks


@pytest.mark.asyncio
async def test_a_failing_check_puts_the_file_back_and_commits_nothing(
    tools: dict[str, ToolSpec], site: Path, tmp_path: Path
) -> None:
    await init(tools, site)
    reloaded = tmp_path / "reloaded"
    # the check: the configuration must still listen somewhere (as `nginx -t` would refuse a broken one)
    hooks = await approved(
        tools["gitops_setup_hooks"], path=str(site),
        pre_commit=["grep", "-q", "listen", "nginx.conf"], post_commit=["touch", str(reloaded)],
    )  # fmt: skip
    assert hooks.ok and "grep -q listen nginx.conf" in hooks.text
    head = git(site, "rev-parse", "HEAD")
    plan = await plan_of(tools["write_file"], path=str(site / "nginx.conf"), content="worker_processes 4;\n")
    assert "before the commit: `" in plan.detail and "the file is put back" in plan.detail
    broken = await approved(tools["write_file"], path=str(site / "nginx.conf"), content="worker_processes 4;\n")
    assert not broken.ok and "the check failed" in broken.text and "exit status 1" in broken.text
    assert (site / "nginx.conf").read_text() == CONF and git(site, "rev-parse", "HEAD") == head
    assert not reloaded.exists()
    fine = await approved(tools["write_file"], path=str(site / "nginx.conf"), content=CONF.replace("2", "4"))
    assert fine.ok and "post_commit hook" in fine.text and reloaded.exists()
    assert git(site, "rev-parse", "HEAD") != head


@pytest.mark.asyncio
async def test_a_new_file_whose_check_fails_is_removed(tools: dict[str, ToolSpec], site: Path) -> None:
    await init(tools, site)
    await approved(tools["gitops_setup_hooks"], path=str(site), pre_commit=["test", "!", "-e", "sites/bad"])
    done = await approved(tools["write_file"], path=str(site / "sites" / "bad"), content="oops\n")
    assert not done.ok and not (site / "sites" / "bad").exists()


@pytest.mark.asyncio
async def test_hooks_are_shown_as_exact_argv_and_refused_when_forbidden_or_missing(
    tools: dict[str, ToolSpec], site: Path, gitops: GitOps
) -> None:
    plan = await plan_of(tools["gitops_setup_hooks"], path=str(site), pre_commit=["true"], post_commit=[])
    assert plan.risk is Risk.EXEC and f"before (a failure puts the change back): {shutil.which('true')}" in plan.detail
    with pytest.raises(ToolError, match="never runs"):
        await plan_of(tools["gitops_setup_hooks"], path=str(site), post_commit=["mkfs.ext4", "/dev/sda"])
    with pytest.raises(ToolError, match="not installed here"):
        await plan_of(tools["gitops_setup_hooks"], path=str(site), pre_commit=["no-such-program-here"])
    with pytest.raises(ToolError, match="without newlines"):
        await plan_of(tools["gitops_setup_hooks"], path=str(site), pre_commit=["true", "a\nb"])
    assert gitops.hooks.get(site).pre_commit == ()


@pytest.mark.asyncio
async def test_changing_the_hooks_after_a_write_was_approved_refuses_the_write(
    tools: dict[str, ToolSpec], site: Path, gitops: GitOps
) -> None:
    await init(tools, site)
    spec = tools["write_file"]
    args = spec.validate({"path": str(site / "nginx.conf"), "content": "x\n"})
    plan = await spec.make_plan(args)
    await approved(tools["gitops_setup_hooks"], path=str(site), post_commit=["true"])
    assert await spec.fresh_parts(args) != plan.fingerprint_parts  # the approver saw no hooks


# ---------------------------------------------------------------- commit by hand, rollback


@pytest.mark.asyncio
async def test_commit_records_the_changes_made_by_hand(tools: dict[str, ToolSpec], site: Path) -> None:
    await init(tools, site)
    (site / "sites" / "default").write_text("server { listen 8080; }\n")
    plan = await plan_of(tools["gitops_commit"], path=str(site), message="listen on 8080")
    assert "+server { listen 8080; }" in plan.detail and plan.detail_kind == "diff"
    done = await approved(tools["gitops_commit"], path=str(site), message="listen on 8080")
    assert done.ok and git(site, "status", "--porcelain") == ""
    assert last_message(site).startswith("listen on 8080\n") and "Approval: #7" in last_message(site)


@pytest.mark.asyncio
async def test_rollback_returns_the_files_to_the_committed_state_and_keeps_what_nobody_committed(
    tools: dict[str, ToolSpec], site: Path
) -> None:
    await init(tools, site)
    first = git(site, "rev-parse", "HEAD").strip()
    await approved(tools["write_file"], path=str(site / "nginx.conf"), content="worker_processes 8;\n")
    (site / "sites" / "default").write_text("broken by hand\n")
    (site / "sites" / "extra").write_text("added by hand\n")
    plan = await plan_of(tools["gitops_rollback"], path=str(site), commit=first[:10])
    assert plan.risk is Risk.WRITE and plan.detail_kind == "diff"
    assert "-worker_processes 8;" in plan.detail and "+worker_processes 2;" in plan.detail
    assert "-broken by hand" in plan.detail and "uncommitted changes in" in plan.detail
    done = await approved(tools["gitops_rollback"], path=str(site), commit=first[:10], approval=21)
    assert done.ok, done.text
    assert (site / "nginx.conf").read_text() == CONF
    assert (site / "sites" / "default").read_text() == "server {}\n" and not (site / "sites" / "extra").exists()
    assert git(site, "status", "--porcelain") == ""
    assert git(site, "rev-parse", "HEAD^{tree}") == git(site, "rev-parse", f"{first}^{{tree}}")
    assert "Approval: #21" in last_message(site) and "roll" in last_message(site)
    kept = git(site, "rev-parse", "HEAD~1").strip()
    assert git(site, "show", f"{kept}:sites/extra") == "added by hand\n"  # nothing lost
    with pytest.raises(ToolError, match="nothing to roll back"):
        await plan_of(tools["gitops_rollback"], path=str(site), commit="HEAD")


@pytest.mark.asyncio
async def test_rollback_whose_check_fails_leaves_the_files_as_they_were(tools: dict[str, ToolSpec], site: Path) -> None:
    await init(tools, site)
    first = git(site, "rev-parse", "HEAD").strip()
    await approved(tools["write_file"], path=str(site / "nginx.conf"), content="listen 8080;\n")
    await approved(tools["gitops_setup_hooks"], path=str(site), pre_commit=["grep", "-q", "8080", "nginx.conf"])
    head = git(site, "rev-parse", "HEAD")
    done = await approved(tools["gitops_rollback"], path=str(site), commit=first)
    assert not done.ok and "nothing was rolled back" in done.text
    assert (site / "nginx.conf").read_text() == "listen 8080;\n" and git(site, "rev-parse", "HEAD") == head


@pytest.mark.asyncio
async def test_a_gitops_directory_inside_a_larger_repository_rolls_back_alone(
    policy: Policy, workspace: Path, tmp_path: Path
) -> None:
    repo = workspace / "infra"
    (repo / "compose").mkdir(parents=True)
    (repo / "compose" / "app.yaml").write_text("replicas: 1\n")
    (repo / "README").write_text("v1\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=T", "-c", "user.email=t@example.org", "commit", "-q", "-m", "first")
    ops = GitOps(policy, [repo / "compose"], hooks_file=tmp_path / "hooks.json", timeout=30)
    tools = {s.name: s for s in [*file_tools(policy, backup_dir=tmp_path / "b", gitops=ops), *gitops_tools(ops)]}
    await approved(tools["write_file"], path=str(repo / "compose" / "app.yaml"), content="replicas: 3\n")
    (repo / "README").write_text("v2, outside the GitOps directory\n")
    done = await approved(tools["gitops_rollback"], path=str(repo / "compose"), commit="HEAD~1")
    assert done.ok, done.text
    assert (repo / "compose" / "app.yaml").read_text() == "replicas: 1\n"
    assert (repo / "README").read_text() == "v2, outside the GitOps directory\n"
    assert git(repo, "status", "--porcelain").strip() == "M README"


def test_the_hooks_file_is_private(gitops: GitOps, site: Path) -> None:
    from core.tools.gitops import Hooks

    gitops.hooks.set(site, Hooks((sys.executable, "-c", "pass"), ()))
    assert stat.S_IMODE(os.stat(gitops.hooks.path).st_mode) == 0o600
    assert gitops.hooks.get(site).pre_commit == (sys.executable, "-c", "pass")


def test_docs_describe_every_gitops_tool_with_its_risk(tools: dict[str, ToolSpec]) -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "tools.md").read_text()
    for name, spec in tools.items():
        if not name.startswith("gitops_"):
            continue
        assert f"### `{name}`" in docs, f"docs/tools.md does not describe {name}"
        section = docs.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
        assert f"Risk: **{spec.risk}**" in section and f'"name": "{name}"' in section, name
