"""Git tools on repositories under the file roots: argv only, no pager, no prompts, no hooks.

Commits never go through `git commit`: the approved paths are staged into a temporary
index (so whatever else is staged stays out), the diff of that index against HEAD is
what the approver sees, and the tree id written from it is part of the fingerprint.
After approval the fresh hook stages them again; only if HEAD and the tree are unchanged
does the tool's body let `git commit-tree` record exactly that tree and `git update-ref`
move HEAD from the approved commit (compare-and-swap, so a commit made meanwhile is
never overwritten).
Reverts work the same way, with the reverse patch applied to the temporary index.

Repository configuration can run programs (hooks, fsmonitor, external diff, textconv);
those are switched off on every call. Clean/smudge filters a repository's own
config names still apply when files are staged: they are the repository owner's.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ToolError
from core.events import Risk
from core.policy import Policy
from core.process import ProcessResult, run_process
from core.tools.command import scrubbed_env
from core.tools.registry import Plan, ToolContext, ToolSpec, tool

log = logging.getLogger(__name__)

GIT = (
    "git",
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "core.pager=cat",
    "-c", "color.ui=false",
    "-c", "core.quotePath=false",
    "-c", "commit.gpgSign=false",
)  # fmt: skip
NO_PROGRAMS = ("--no-ext-diff", "--no-textconv")
MAX_DIFF = 2_000_000  # larger changes are not reviewable in a chat approval
MAX_MESSAGE = 5000
FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "AI Orchestrator",
    "GIT_AUTHOR_EMAIL": "orchestrator@localhost",
    "GIT_COMMITTER_NAME": "AI Orchestrator",
    "GIT_COMMITTER_EMAIL": "orchestrator@localhost",
}
# Variables that would point git at another repository, index or work tree.
_REDIRECTS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
              "GIT_NAMESPACE", "GIT_CEILING_DIRECTORIES", "GIT_ALTERNATE_OBJECT_DIRECTORIES")  # fmt: skip
_REF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./~^-]{0,199}$")


def git_env(*, index: Path | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = scrubbed_env()
    for name in _REDIRECTS:
        env.pop(name, None)
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_PAGER="cat",
        PAGER="cat",
        GIT_EDITOR="false",
        GIT_OPTIONAL_LOCKS="0",
        GIT_LITERAL_PATHSPECS="1",  # a path is a path, never a glob
        LC_ALL="C",
    )
    if index is not None:
        env["GIT_INDEX_FILE"] = str(index)
    env.update(extra or {})
    return env


def check_message(message: str) -> str:
    text = message.strip()
    if not text:
        raise ToolError("the commit message is empty")
    if "\x00" in text or len(text) > MAX_MESSAGE:
        raise ToolError(f"the commit message must be text of at most {MAX_MESSAGE} characters")
    return text


def check_ref(commit: str) -> str:
    if not _REF.fullmatch(commit) or ".." in commit:
        raise ToolError(f"invalid commit {commit!r}: give a commit id (as git_log shows it), a tag or HEAD~1")
    return commit


@dataclass(frozen=True)
class Commit:
    """A commit as it would be made now: the staged tree of exactly the named paths on HEAD."""

    top: Path
    message: str
    paths: list[str]
    head: str
    branch: str
    author: str
    ident_env: dict[str, str]
    tree: str
    diff: str

    @property
    def parts(self) -> tuple[str, ...]:
        return (str(self.top), self.head, self.tree)


@dataclass(frozen=True)
class _Revert:
    """A revert as it would be made now: HEAD's tree with the commit's reverse patch applied."""

    top: Path
    sha: str
    subject: str
    message: str
    head: str
    branch: str
    author: str
    ident_env: dict[str, str]
    tree: str
    diff: str
    changed: list[str]

    @property
    def parts(self) -> tuple[str, ...]:
        return (str(self.top), self.head, self.sha, self.tree)


class Git:
    """git as the tools run it: argv only, the repository's programs switched off, a timeout,
    and repositories only under the file roots. The git and GitOps tools share one."""

    def __init__(self, policy: Policy, *, timeout: float = 60.0) -> None:
        self.policy = policy
        self.timeout = timeout

    async def run(
        self,
        top: Path,
        *args: str,
        index: Path | None = None,
        stdin: bytes | None = None,
        cap: int = 0,
        extra_env: dict[str, str] | None = None,
    ) -> ProcessResult:
        result = await run_process(
            [*GIT, "-C", str(top), *args],
            timeout=self.timeout,
            env=git_env(index=index, extra=extra_env),
            output_cap=cap or self.policy.config.output_cap * 4,
            stdin=stdin,
        )
        if result.not_found:
            raise ToolError("git is not installed on this machine")
        if result.timed_out:
            raise ToolError(f"git {args[0]} in {top} did not finish within {self.timeout:g} s")
        return result

    async def out(self, top: Path, *args: str, **kwargs: Any) -> str:
        result = await self.run(top, *args, **kwargs)
        if not result.ok:
            raise ToolError(f"git {args[0]} failed in {top}: {result.combined().strip()[:1000]}")
        return result.stdout

    async def open_repo(self, repo: str | Path) -> Path:
        path = self.policy.resolve_path(repo)
        if not path.is_dir():
            raise ToolError(f"{path} is not a directory")
        result = await self.run(path, "rev-parse", "--show-toplevel")
        if not result.ok:
            raise ToolError(f"{path} is not inside a git work tree: {result.stderr.strip()[:300]}")
        # The whole repository must be inside the roots, not just the directory named.
        return self.policy.resolve_path(result.stdout.strip())

    async def head_of(self, top: Path) -> str:
        result = await self.run(top, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
        return result.stdout.strip() if result.ok else ""

    async def branch_of(self, top: Path) -> str:
        result = await self.run(top, "symbolic-ref", "--quiet", "--short", "HEAD")
        return result.stdout.strip() if result.ok else "detached HEAD"

    async def identity(self, top: Path) -> tuple[str, dict[str, str]]:
        result = await self.run(top, "var", "GIT_AUTHOR_IDENT")
        if result.ok:
            return result.stdout.strip().rsplit(" ", 2)[0], {}
        shown = f"{FALLBACK_IDENTITY['GIT_AUTHOR_NAME']} <{FALLBACK_IDENTITY['GIT_AUTHOR_EMAIL']}>"
        return f"{shown} (no user.name/user.email configured)", dict(FALLBACK_IDENTITY)

    def repo_path(self, top: Path, raw: str) -> str:
        """A path inside the repository, repo-relative; symlinks in its directories resolved."""
        if not raw.strip() or "\x00" in raw:
            raise ToolError(f"invalid path {raw!r}")
        candidate = Path(os.path.normpath(Path(raw) if os.path.isabs(raw) else top / raw))
        if candidate == top:
            return "."
        final = self.policy.resolve_path(candidate.parent) / candidate.name
        try:
            rel = final.relative_to(top)
        except ValueError:
            raise ToolError(f"{raw} is not inside the repository {top}") from None
        if rel.parts[0] == ".git":
            raise ToolError("files under .git cannot be committed")
        return rel.as_posix()

    async def staged_diff(self, top: Path, index: Path, base: str) -> str:
        result = await self.run(
            top, "diff", "--cached", *NO_PROGRAMS, "--stat", "--patch", *([base] if base else []), "--",
            index=index, cap=MAX_DIFF,
        )  # fmt: skip
        if not result.ok:
            raise ToolError(f"git diff failed in {top}: {result.stderr.strip()[:500]}")
        if result.truncated:
            raise ToolError(f"the change is larger than {MAX_DIFF} bytes: too large to review in chat")
        return result.stdout

    async def prepare_commit(self, repo: str | Path, message: str, paths: list[str]) -> Commit:
        """Stage exactly these paths into a temporary index: the tree a commit would record."""
        top = await self.open_repo(repo)
        text = check_message(message)
        rel = list(dict.fromkeys(self.repo_path(top, p) for p in paths))
        if not rel:
            raise ToolError("name at least one path to commit")
        head = await self.head_of(top)
        branch = await self.branch_of(top)
        author, ident_env = await self.identity(top)
        with tempfile.TemporaryDirectory(prefix="orchestrator-git-") as tmp:
            index = Path(tmp) / "index"
            await self.out(top, "read-tree", *([head] if head else ["--empty"]), index=index)
            added = await self.run(top, "add", "--all", "--", *rel, index=index)
            if not added.ok:
                raise ToolError(f"cannot stage {', '.join(rel)}: {added.combined().strip()[:500]}")
            tree = (await self.out(top, "write-tree", index=index)).strip()
            diff = await self.staged_diff(top, index, head)
        if not diff.strip():
            raise ToolError(f"nothing to commit: {', '.join(rel)} has no changes against HEAD")
        return Commit(top, text, rel, head, branch, author, ident_env, tree, diff)

    async def record(self, c: Commit, *, reflog: str = "commit (orchestrator)") -> str:
        """Record exactly the prepared tree as a commit on the prepared HEAD; the new commit's id.

        Compare-and-swap: a commit made meanwhile is never overwritten. The real index's entries
        for the committed paths are brought to the new HEAD; anything else staged stays staged.
        """
        top = c.top
        parents = ["-p", c.head] if c.head else []
        commit = (await self.out(top, "commit-tree", c.tree, *parents, "-m", c.message, extra_env=c.ident_env)).strip()
        subject = c.message.splitlines()[0]
        await self.out(top, "update-ref", "-m", f"{reflog}: {subject}", "HEAD", commit, c.head)
        synced = await self.run(top, "reset", "--quiet", "--", *c.paths)
        if not synced.ok:
            log.warning("the index of %s was not refreshed: %s", top, synced.stderr.strip()[:200])
        return commit


def git_tools(policy: Policy, *, timeout: float = 60.0) -> list[ToolSpec]:
    g = Git(policy, timeout=timeout)
    git, out, open_repo, head_of, branch_of = g.run, g.out, g.open_repo, g.head_of, g.branch_of
    identity, staged_diff = g.identity, g.staged_diff

    # ---- read-only ------------------------------------------------------------

    @tool(risk=Risk.READ)
    async def git_status(repo: str) -> str:
        """The branch, how far it is ahead or behind, and which files are modified, staged or untracked.

        Args:
            repo: the repository directory, under the file roots.
        """
        top = await open_repo(repo)
        text = await out(top, "status", "--short", "--branch", "--untracked-files=normal")
        lines = text.rstrip().splitlines()
        if len(lines) <= 1:
            lines.append("(working tree clean)")
        return f"{top}\n" + "\n".join(lines)

    @tool(risk=Risk.READ)
    async def git_diff(repo: str, staged: bool = False) -> str:
        """The uncommitted changes of a repository as a unified diff, with a summary of files.

        Args:
            repo: the repository directory, under the file roots.
            staged: show what is staged for the next commit instead of the unstaged changes.
        """
        top = await open_repo(repo)
        args = ["diff", *(["--cached"] if staged else []), *NO_PROGRAMS, "--stat", "--patch"]
        text = await out(top, *args)
        if not text.strip():
            return f"{top}: nothing staged" if staged else f"{top}: no unstaged changes"
        clean, cut = policy.clean(text)
        return clean + ("\n(diff cut at the cap)" if cut else "")

    @tool(risk=Risk.READ)
    async def git_log(repo: str, n: int = 20) -> str:
        """The most recent commits: short id, date, author, subject and branch/tag names.

        Args:
            repo: the repository directory, under the file roots.
            n: how many commits (1 to 200).
        """
        top = await open_repo(repo)
        if not await head_of(top):
            return f"{top}: no commits yet"
        count = max(1, min(n, 200))
        text = await out(
            top, "log", f"-n{count}", "--date=format:%Y-%m-%d %H:%M", "--format=%h %ad %an: %s%d", "--no-show-signature"
        )
        return f"{top}\n{text.rstrip()}"

    # ---- commit ---------------------------------------------------------------

    @tool(risk=Risk.WRITE)
    async def git_commit(repo: str, message: str, paths: list[str], *, ctx: ToolContext) -> str:
        """Commit the current content of exactly these paths (other staged changes stay out).
        A person approves the diff first.

        Args:
            repo: the repository directory, under the file roots.
            message: the commit message.
            paths: files or directories to commit, relative to the repository (new, changed or deleted).
        """
        c = await g.prepare_commit(repo, message, paths)
        ctx.check_unchanged(c.parts)  # exactly the approved tree, on the approved HEAD
        commit = await g.record(c)
        stat = await out(c.top, "show", "--stat", "--format=", commit)
        return f"committed {commit[:12]} on {c.branch} in {c.top}: {c.message.splitlines()[0]}\n{stat.rstrip()}"

    @git_commit.plan
    async def _plan_commit(args: dict[str, Any]) -> Plan:
        c = await g.prepare_commit(args["repo"], args["message"], args["paths"])
        header = (
            f"git commit in {c.top} ({c.branch}, HEAD {c.head[:12] or 'none: first commit'})\n"
            f"author: {c.author}\npaths: {', '.join(c.paths)}\nmessage:\n"
            + "\n".join(f"    {line}" for line in c.message.splitlines())
        )
        return Plan(
            risk=Risk.WRITE,
            summary=f"git commit {len(c.paths)} path(s) in {c.top}: {c.message.splitlines()[0][:80]}",
            detail=policy.redact(f"{header}\n\n{c.diff}"),
            detail_kind="diff",
            fingerprint_parts=c.parts,
        )

    @git_commit.check_fresh
    async def _fresh_commit(args: dict[str, Any]) -> tuple[str, ...]:
        return (await g.prepare_commit(args["repo"], args["message"], args["paths"])).parts

    # ---- revert ---------------------------------------------------------------

    async def prepare_revert(repo: str, commit: str) -> _Revert:
        """The reverse patch of one commit applied to a temporary index on HEAD: the tree a revert records."""
        top = await open_repo(repo)
        ref = check_ref(commit)
        found = await git(top, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
        if not found.ok:
            raise ToolError(f"no commit {ref!r} in {top}")
        sha = found.stdout.strip()
        head = await head_of(top)
        if not head:
            raise ToolError(f"{top} has no commits yet")
        branch = await branch_of(top)
        ancestor = await git(top, "merge-base", "--is-ancestor", sha, head)
        if not ancestor.ok:
            raise ToolError(f"{sha[:12]} is not in the history of HEAD ({branch})")
        parents = (await out(top, "rev-list", "--parents", "-n1", sha)).split()[1:]
        if len(parents) > 1:
            raise ToolError(f"{sha[:12]} is a merge commit; revert it by hand, choosing the mainline")
        patch = await git(
            top, "diff-tree", "-p", "--binary", "--full-index", "--no-commit-id", *NO_PROGRAMS,
            *([] if parents else ["--root"]), sha, cap=MAX_DIFF * 4,
        )  # fmt: skip
        if not patch.ok or patch.truncated:
            raise ToolError(f"cannot read the change of {sha[:12]}: {patch.stderr.strip()[:300] or 'too large'}")
        if not patch.stdout.strip():
            raise ToolError(f"{sha[:12]} changes no files; there is nothing to revert")
        subject = (await out(top, "log", "-1", "--format=%s", sha)).strip()
        message = f'Revert "{subject}"\n\nThis reverts commit {sha}.'
        author, ident_env = await identity(top)
        with tempfile.TemporaryDirectory(prefix="orchestrator-git-") as tmp:
            index = Path(tmp) / "index"
            await out(top, "read-tree", head, index=index)
            applied = await git(top, "apply", "--cached", "-R", "--binary", index=index, stdin=patch.stdout.encode())
            if not applied.ok:
                raise ToolError(
                    f"{sha[:12]} cannot be reverted cleanly: later commits changed the same lines "
                    f"({applied.stderr.strip()[:300]})"
                )
            tree = (await out(top, "write-tree", index=index)).strip()
            diff = await staged_diff(top, index, head)
            changed = (await out(top, "diff", "--cached", "--name-only", head, index=index)).split("\n")
        changed = [p for p in changed if p]
        if not changed:
            raise ToolError(f"reverting {sha[:12]} would change nothing: it looks already reverted")
        dirty = (await out(top, "status", "--porcelain", "--untracked-files=all", "--", *changed)).strip()
        if dirty:
            raise ToolError(
                "these files have uncommitted changes, so the revert would clash with them; "
                f"commit or discard them first:\n{dirty}"
            )
        return _Revert(top, sha, subject, message, head, branch, author, ident_env, tree, diff, changed)

    @tool(risk=Risk.WRITE)
    async def git_revert(repo: str, commit: str, *, ctx: ToolContext) -> str:
        """Undo one earlier commit with a new commit that applies its reverse. A person approves the diff first.

        Args:
            repo: the repository directory, under the file roots.
            commit: the commit to undo: an id as git_log shows it, a tag, or HEAD~1.
        """
        r = await prepare_revert(repo, commit)
        ctx.check_unchanged(r.parts)  # exactly the approved tree, on the approved HEAD
        top, head = r.top, r.head
        new = (await out(top, "commit-tree", r.tree, "-p", head, "-m", r.message, extra_env=r.ident_env)).strip()
        moved = await git(top, "read-tree", "-m", "-u", head, new)
        if not moved.ok:
            raise ToolError(f"the work tree could not be updated, nothing changed: {moved.stderr.strip()[:300]}")
        swapped = await git(top, "update-ref", "-m", f"revert (orchestrator): {r.subject}", "HEAD", new, head)
        if not swapped.ok:
            await git(top, "read-tree", "-m", "-u", new, head)
            raise ToolError(f"HEAD moved while reverting; nothing was committed: {swapped.stderr.strip()[:300]}")
        stat = await out(top, "show", "--stat", "--format=", new)
        return f"reverted {r.sha[:12]} with {new[:12]} on {r.branch} in {top}\n{stat.rstrip()}"

    @git_revert.plan
    async def _plan_revert(args: dict[str, Any]) -> Plan:
        r = await prepare_revert(args["repo"], args["commit"])
        header = (
            f"git revert {r.sha[:12]} in {r.top} ({r.branch}, HEAD {r.head[:12]})\n"
            f"reverts: {r.sha[:12]} {r.subject}\nauthor: {r.author}\nfiles: {', '.join(r.changed)}\nmessage:\n"
            + "\n".join(f"    {line}" for line in r.message.splitlines())
        )
        return Plan(
            risk=Risk.WRITE,
            summary=f"git revert {r.sha[:12]} ({r.subject[:60]}) in {r.top}",
            detail=policy.redact(f"{header}\n\n{r.diff}"),
            detail_kind="diff",
            fingerprint_parts=r.parts,
        )

    @git_revert.check_fresh
    async def _fresh_revert(args: dict[str, Any]) -> tuple[str, ...]:
        return (await prepare_revert(args["repo"], args["commit"])).parts

    return [git_status, git_diff, git_log, git_commit, git_revert]
