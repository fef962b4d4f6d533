"""GitOps: configured directories (`ORCHESTRATOR_GITOPS_PATHS`) kept in git, every approved
change committed with the approval, the approver and the request in its message.

- `write_file` into such a directory commits exactly the file it wrote once the write is done
  (files.py calls `GitOps.after_write`); the approver was shown that, and the hooks, with the diff.
- Hooks are argv lists per directory, set with `gitops_setup_hooks` (approved, the exact argv
  shown) and kept in the data directory, never in the repository: `pre_commit` checks the
  new state before anything is committed (`nginx -t`; when it fails the change is put back and
  nothing is committed), `post_commit` runs after the commit (a reload). The repository's own
  git hooks never run (core/tools/git.py switches them off).
- `gitops_rollback` returns a directory to a commit: the diff from the files as they are now to
  that state is what the approver sees. Changes nobody committed are first kept in a commit of
  their own, so a rollback never loses anything.
- `.git` is made readable by its owner only: configuration under /etc holds keys that other
  local users must not read from git's objects.

Every commit goes through the same `Git` as the git tools: argv only, temporary indexes,
compare-and-swap on HEAD.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shlex
import shutil
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ToolError
from core.events import Request, Risk
from core.forbidden import forbidden_argv
from core.policy import Policy
from core.process import ProcessResult, run_process
from core.tools.command import scrubbed_env
from core.tools.files import replace_atomically
from core.tools.git import MAX_DIFF, NO_PROGRAMS, Git, check_message, check_ref
from core.tools.registry import Plan, ToolContext, ToolOutput, ToolSpec, tool

MAX_INIT_FILES = 10_000
MAX_INIT_BYTES = 200 * 1024 * 1024
MAX_HOOK_ARGS = 64
MAX_REQUEST_IN_MESSAGE = 500
HOOK_KINDS = ("pre_commit", "post_commit")


@dataclass(frozen=True)
class Hooks:
    """What runs around a commit in one directory, as argv."""

    pre_commit: tuple[str, ...] = ()
    post_commit: tuple[str, ...] = ()

    @property
    def parts(self) -> tuple[str, ...]:
        """For a fingerprint: an approval is bound to the hooks it showed."""
        return ("hooks", json.dumps([list(self.pre_commit), list(self.post_commit)]))

    def describe(self) -> str:
        before = f"`{shlex.join(self.pre_commit)}`" if self.pre_commit else "nothing"
        after = f"`{shlex.join(self.post_commit)}`" if self.post_commit else "nothing"
        return f"before the commit: {before}; after it: {after}"

    def as_json(self) -> dict[str, list[str]]:
        return {"pre_commit": list(self.pre_commit), "post_commit": list(self.post_commit)}


class HookFile:
    """The hooks of every GitOps directory, one JSON file in the data directory (mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ToolError(f"the GitOps hooks file {self.path} cannot be read ({exc}); fix or remove it") from exc
        return data if isinstance(data, dict) else {}

    def get(self, directory: Path) -> Hooks:
        entry = self._read().get(str(directory)) or {}
        return Hooks(
            tuple(str(a) for a in entry.get("pre_commit") or ()), tuple(str(a) for a in entry.get("post_commit") or ())
        )

    def set(self, directory: Path, hooks: Hooks) -> None:
        data = self._read()
        if hooks.pre_commit or hooks.post_commit:
            data[str(directory)] = hooks.as_json()
        else:
            data.pop(str(directory), None)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(self.path, json.dumps(data, indent=2, sort_keys=True).encode(), 0o600)


@dataclass(frozen=True)
class _Rollback:
    top: Path
    directory: Path
    rel: str
    head: str
    branch: str
    sha: str
    subject: str
    snapshot: str  # the tree of the files as they are now (uncommitted changes included)
    tree: str  # the tree the rollback records
    diff: str
    dirty: list[str]
    hooks: Hooks
    ident_env: dict[str, str] = field(default_factory=dict)

    @property
    def parts(self) -> tuple[str, ...]:
        return (str(self.top), self.head, self.sha, self.snapshot, self.tree, *self.hooks.parts)


def commit_message(subject: str, ctx: ToolContext | None, redact: Any) -> str:
    """A GitOps commit's message: what was done, the request, who asked and who approved."""
    lines = [subject.strip()]
    if ctx is not None:
        request: Request = ctx.request
        asked = " ".join(request.text.split())
        if asked:
            cut = asked[:MAX_REQUEST_IN_MESSAGE] + ("…" if len(asked) > MAX_REQUEST_IN_MESSAGE else "")
            lines += ["", f"Request: {redact(cut)}"]
        lines += ["", f"Requested-by: {request.platform}:{request.user_id}"]
        if ctx.approval_id is not None:
            lines += [f"Approved-by: {ctx.approved_by or 'unknown'}", f"Approval: #{ctx.approval_id}"]
        if ctx.run_id:
            lines.append(f"Run: {ctx.run_id}")
    return "\n".join(lines)


class GitOps:
    """The configured GitOps directories, their hooks, and the commits made in them."""

    def __init__(self, policy: Policy, paths: Sequence[Path], *, hooks_file: Path, timeout: float = 60.0) -> None:
        self.policy = policy
        self.git = Git(policy, timeout=timeout)
        self.timeout = timeout
        self.directories = [Path(os.path.realpath(p)) for p in paths]
        self.hooks = HookFile(hooks_file)

    # ---- which directory ------------------------------------------------------
    def directory_of(self, target: Path) -> Path | None:
        """The GitOps directory holding `target` (resolved), or None."""
        for d in self.directories:
            if target == d or d in target.parents:
                rel = target.relative_to(d)
                return None if rel.parts and rel.parts[0] == ".git" else d
        return None

    def directory(self, raw: str) -> Path:
        """The configured directory `raw` names (or lies in), checked against the roots."""
        if not self.directories:
            raise ToolError("no GitOps directories are configured: the operator sets ORCHESTRATOR_GITOPS_PATHS")
        if not raw.strip():
            if len(self.directories) == 1:
                return self.policy.resolve_path(self.directories[0])
            raise ToolError(f"name the directory: one of {', '.join(map(str, self.directories))}")
        found = self.directory_of(self.policy.resolve_path(raw))
        if found is None:
            raise ToolError(
                f"{raw} is not in a GitOps directory; the configured ones are {', '.join(map(str, self.directories))}"
            )
        return self.policy.resolve_path(found)

    async def top_of(self, directory: Path) -> Path | None:
        """The work tree holding the directory, or None when it is not in git yet."""
        result = await self.git.run(directory, "rev-parse", "--show-toplevel")
        return self.policy.resolve_path(result.stdout.strip()) if result.ok else None

    async def repository(self, directory: Path) -> Path:
        top = await self.top_of(directory)
        if top is None:
            raise ToolError(f"{directory} is not a GitOps repository yet: gitops_init creates it")
        return top

    # ---- hooks ----------------------------------------------------------------
    async def run_hook(self, argv: Sequence[str], directory: Path) -> ProcessResult:
        return await run_process(
            argv,
            timeout=self.policy.config.command_timeout,
            cwd=str(directory),
            env=scrubbed_env(),
            output_cap=self.policy.config.output_cap,
        )

    def hook_report(self, kind: str, argv: Sequence[str], result: ProcessResult) -> str:
        status = "timed out" if result.timed_out else f"exit status {result.exit_status}"
        body, _ = self.policy.clean(result.combined().strip() or "(no output)")
        return f"{kind} hook `{shlex.join(argv)}`: {status}\n{body}"

    def check_hook(self, argv: Sequence[str]) -> tuple[str, ...]:
        """A hook as it will run: the program found on PATH now (its absolute path, so the approval
        names what runs), no NUL or newline, nothing the policy forbids or the operator denied."""
        words = tuple(argv)
        if not words:
            return ()
        if len(words) > MAX_HOOK_ARGS or any(not w or "\x00" in w or "\n" in w for w in words):
            raise ToolError(f"a hook is a list of at most {MAX_HOOK_ARGS} non-empty words without newlines")
        program = shutil.which(words[0])
        if program is None:
            raise ToolError(f"{words[0]} is not installed here (not found on PATH); give the program's full path")
        if reason := forbidden_argv(words):
            raise ToolError(f"refused: {shlex.join(words)} {reason}; it never runs, approved or not")
        if Path(program).name in self.policy.config.denied_commands or words[0] in self.policy.config.denied_commands:
            raise ToolError(f"refused: {words[0]} is denied by the operator (ORCHESTRATOR_DENY_COMMANDS)")
        return (program, *words[1:])

    # ---- write_file's side ----------------------------------------------------
    def write_note(self, target: Path) -> tuple[str, tuple[str, ...]]:
        """What write_file's approval says about the commit, and the facts it is bound to."""
        directory = self.directory_of(target)
        if directory is None:
            return "", ()
        hooks = self.hooks.get(directory)
        note = (
            f"\n\nGitOps: {target} is committed in {directory} with this approval ({hooks.describe()}"
            + ("; if the check fails, the file is put back and nothing is committed" if hooks.pre_commit else "")
            + ")."
        )
        return note, ("gitops", str(directory), *hooks.parts)

    async def after_write(self, target: Path, previous: bytes | None, ctx: ToolContext) -> tuple[str, bool]:
        """Commit the file write_file just wrote: the text to add to its result, and whether all went well."""
        directory = self.directory_of(target)
        if directory is None:
            return "", True
        top = await self.top_of(directory)
        if top is None:
            return f"\nnot committed: {directory} is not a GitOps repository yet (gitops_init creates it)", True
        hooks = self.hooks.get(directory)
        if hooks.pre_commit:
            check = await self.run_hook(hooks.pre_commit, directory)
            if not check.ok:
                await asyncio.to_thread(_put_back, target, previous)
                return (
                    f"\n{self.hook_report('pre_commit', hooks.pre_commit, check)}\n"
                    f"the check failed, so {target} was put back as it was and nothing was committed",
                    False,
                )
        rel = self.git.repo_path(top, str(target))
        message = commit_message(f"write_file {rel}", ctx, self.policy.redact)
        try:
            prepared = await self.git.prepare_commit(top, message, [rel])
        except ToolError as exc:
            return f"\nnot committed: {exc}", True
        sha = await self.git.record(prepared, reflog="gitops (orchestrator)")
        text = f"\ncommitted {sha[:12]} in {top} ({prepared.branch})"
        return await self._after_commit(text, directory, hooks)

    async def _after_commit(self, text: str, directory: Path, hooks: Hooks) -> tuple[str, bool]:
        if not hooks.post_commit:
            return text, True
        after = await self.run_hook(hooks.post_commit, directory)
        text += "\n" + self.hook_report("post_commit", hooks.post_commit, after)
        return text, after.ok

    # ---- rollback -------------------------------------------------------------
    async def prepare_rollback(self, raw: str, commit: str) -> _Rollback:
        directory = self.directory(raw)
        top = await self.repository(directory)
        rel = self.git.repo_path(top, str(directory))
        ref = check_ref(commit)
        found = await self.git.run(top, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
        if not found.ok:
            raise ToolError(f"no commit {ref!r} in {top}; gitops_log lists them")
        sha = found.stdout.strip()
        head = await self.git.head_of(top)
        if not head:
            raise ToolError(f"{top} has no commits yet")
        if not (await self.git.run(top, "merge-base", "--is-ancestor", sha, head)).ok:
            raise ToolError(f"{sha[:12]} is not in the history of HEAD")
        subject = (await self.git.out(top, "log", "-1", "--format=%s", sha)).strip()
        branch = await self.git.branch_of(top)
        _, ident_env = await self.git.identity(top)
        with tempfile.TemporaryDirectory(prefix="orchestrator-gitops-") as tmp:
            index = Path(tmp) / "index"
            await self.git.out(top, "read-tree", head, index=index)
            await self.git.out(top, "add", "--all", "--", rel, index=index)
            snapshot = (await self.git.out(top, "write-tree", index=index)).strip()
            dirty = (await self.git.out(top, "diff", "--cached", "--name-only", head, index=index)).split()
            if rel == ".":
                tree = (await self.git.out(top, "rev-parse", f"{sha}^{{tree}}")).strip()
            else:
                await self.git.out(top, "rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", rel, index=index)
                if (await self.git.run(top, "cat-file", "-e", f"{sha}:{rel}")).ok:
                    await self.git.out(top, "read-tree", f"--prefix={rel}/", f"{sha}:{rel}", index=index)
                tree = (await self.git.out(top, "write-tree", index=index)).strip()
        if tree == snapshot:
            raise ToolError(f"{directory} is already as it was at {sha[:12]}: there is nothing to roll back")
        shown = await self.git.run(top, "diff-tree", "-r", "-p", "--stat", *NO_PROGRAMS, snapshot, tree, cap=MAX_DIFF)
        if not shown.ok or shown.truncated:
            raise ToolError(f"the rollback's diff cannot be shown: {shown.stderr.strip()[:300] or 'too large'}")
        return _Rollback(
            top,
            directory,
            rel,
            head,
            branch,
            sha,
            subject,
            snapshot,
            tree,
            shown.stdout,
            dirty,
            self.hooks.get(directory),
            ident_env,
        )

    async def switch(self, top: Path, old: str, new: str) -> ProcessResult:
        """Bring the files from tree `old` (what they are now) to tree `new`, through a temporary index."""
        with tempfile.TemporaryDirectory(prefix="orchestrator-gitops-") as tmp:
            index = Path(tmp) / "index"
            await self.git.out(top, "read-tree", old, index=index)
            # a fresh index has no stat data: refresh it, so files that match `old` count as up to date
            await self.git.run(top, "update-index", "-q", "--refresh", index=index)
            return await self.git.run(top, "read-tree", "-m", "-u", old, new, index=index)

    async def commit_tree(self, r: _Rollback, tree: str, parent: str, message: str) -> str:
        new = await self.git.out(r.top, "commit-tree", tree, "-p", parent, "-m", message, extra_env=r.ident_env)
        new = new.strip()
        await self.git.out(
            r.top, "update-ref", "-m", f"gitops (orchestrator): {message.splitlines()[0]}", "HEAD", new, parent
        )
        return new


def gitops_tools(gitops: GitOps) -> list[ToolSpec]:
    policy, git = gitops.policy, gitops.git

    # ---- read-only ------------------------------------------------------------

    @tool(risk=Risk.READ)
    async def gitops_status(path: str = "") -> str:
        """The GitOps directories: whether each is in git, its last commit, changes nobody committed
        (made by hand since), and the hooks that run around a commit.

        Args:
            path: one GitOps directory; empty for all of them.
        """
        directories = [gitops.directory(path)] if path.strip() else gitops.directories
        if not directories:
            raise ToolError("no GitOps directories are configured: the operator sets ORCHESTRATOR_GITOPS_PATHS")
        blocks = []
        for directory in directories:
            lines = [str(directory)]
            top = await gitops.top_of(directory) if directory.is_dir() else None
            if not directory.is_dir():
                lines.append("  missing: the directory does not exist")
            elif top is None:
                lines.append("  not in git yet: gitops_init records its current state")
            else:
                rel = git.repo_path(top, str(directory))
                head = await git.head_of(top)
                last = (
                    (
                        await git.out(
                            top, "log", "-1", "--date=format:%Y-%m-%d %H:%M", "--format=%h %ad %an: %s", "--", rel
                        )
                    ).strip()
                    if head
                    else ""
                )
                lines.append(f"  repository {top} ({await git.branch_of(top)}); last commit: {last or 'none'}")
                changed = (await git.out(top, "status", "--porcelain", "--untracked-files=all", "--", rel)).rstrip()
                lines.append(
                    "  uncommitted changes:\n" + "\n".join(f"    {c}" for c in changed.splitlines())
                    if changed
                    else "  no uncommitted changes"
                )
            lines.append(f"  hooks: {gitops.hooks.get(directory).describe()}")
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)

    @tool(risk=Risk.READ)
    async def gitops_log(path: str = "", n: int = 20) -> str:
        """The commits of a GitOps directory, newest first, with who approved each and its approval.

        Args:
            path: the GitOps directory (empty when only one is configured).
            n: how many commits (1 to 200).
        """
        directory = gitops.directory(path)
        top = await gitops.repository(directory)
        if not await git.head_of(top):
            return f"{directory}: no commits yet"
        rel = git.repo_path(top, str(directory))
        fmt = "%h%x09%ad%x09%an%x09%s%x09%(trailers:key=Approval,valueonly)%x09%(trailers:key=Approved-by,valueonly)"
        text = await git.out(
            top,
            "log",
            f"-n{max(1, min(n, 200))}",
            "--date=format:%Y-%m-%d %H:%M",
            f"--format={fmt}",
            "--no-show-signature",
            "-z",
            "--",
            rel,
        )
        lines = [str(directory)]
        for row in filter(None, (r.strip("\n") for r in text.split("\0"))):
            sha, date, author, subject, approval, approver = (row.split("\t") + [""] * 6)[:6]
            tail = f"  [approval {approval.strip()} by {approver.strip()}]" if approval.strip() else ""
            lines.append(f"{sha} {date} {author}: {subject}{tail}")
        return "\n".join(lines) if len(lines) > 1 else f"{directory}: no commits touch it yet"

    # ---- init -----------------------------------------------------------------

    def listing(directory: Path) -> list[tuple[str, int, int]]:
        rows: list[tuple[str, int, int]] = []
        total = 0
        for root, dirs, files in os.walk(directory):
            dirs[:] = sorted(d for d in dirs if not (root == str(directory) and d == ".git"))
            for name in sorted(files):
                full = Path(root) / name
                try:
                    st = full.lstat()
                except OSError:
                    continue
                rows.append((full.relative_to(directory).as_posix(), st.st_size, st.st_mtime_ns))
                total += st.st_size
                if len(rows) > MAX_INIT_FILES or total > MAX_INIT_BYTES:
                    raise ToolError(
                        f"{directory} holds more than {MAX_INIT_FILES} files or {MAX_INIT_BYTES >> 20} MiB: "
                        "too much to put in git from chat; name a smaller directory"
                    )
        return rows

    async def prepare_init(raw: str) -> tuple[Path, list[tuple[str, int, int]], tuple[str, ...]]:
        directory = policy.resolve_path(gitops.directory(raw), for_write=True)
        if not directory.is_dir():
            raise ToolError(f"{directory} does not exist; create it first")
        top = await gitops.top_of(directory)
        if top is not None:
            raise ToolError(f"{directory} is already in the git repository {top}; gitops_status shows it")
        rows = await asyncio.to_thread(listing, directory)
        digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
        return directory, rows, (str(directory), digest)

    @tool(risk=Risk.WRITE)
    async def gitops_init(path: str, *, ctx: ToolContext) -> str:
        """Put a GitOps directory in git: a new repository (.git readable by its owner only) and a
        first commit of every file as it is now. A person approves first.

        Args:
            path: the GitOps directory.
        """
        directory, rows, parts = await prepare_init(path)
        ctx.check_unchanged(parts)
        await git.out(directory, "init", "-q", "-b", "main")
        os.chmod(directory / ".git", stat.S_IRWXU)
        if not rows:
            return f"initialised an empty repository in {directory}: nothing to commit yet"
        message = commit_message(f"GitOps: the state of {directory} when it was put in git", ctx, policy.redact)
        prepared = await git.prepare_commit(directory, message, ["."])
        sha = await git.record(prepared, reflog="gitops (orchestrator)")
        return f"initialised {directory} and committed its {len(rows)} files as {sha[:12]} on main"

    @gitops_init.plan
    async def _plan_init(args: dict[str, Any]) -> Plan:
        directory, rows, parts = await prepare_init(args["path"])
        size = sum(r[1] for r in rows)
        shown = "\n".join(f"  {name} ({n} bytes)" for name, n, _ in rows[:200])
        more = f"\n  … and {len(rows) - 200} more" if len(rows) > 200 else ""
        return Plan(
            risk=Risk.WRITE,
            summary=f"gitops_init {directory}: a repository and a first commit of {len(rows)} files",
            detail=(
                f"git init in {directory} (branch main; .git readable by its owner only)\n"
                f"first commit: {len(rows)} files, {size} bytes\n{shown}{more}"
            ),
            fingerprint_parts=parts,
        )

    @gitops_init.check_fresh
    async def _fresh_init(args: dict[str, Any]) -> tuple[str, ...]:
        return (await prepare_init(args["path"]))[2]

    # ---- commit what was changed by hand ---------------------------------------

    async def prepare_commit(raw: str, message: str, ctx: ToolContext | None) -> tuple[Any, Hooks]:
        directory = gitops.directory(raw)
        top = await gitops.repository(directory)
        text = commit_message(check_message(message), ctx, policy.redact)
        prepared = await git.prepare_commit(top, text, [git.repo_path(top, str(directory))])
        return prepared, gitops.hooks.get(directory)

    @tool(risk=Risk.WRITE)
    async def gitops_commit(path: str, message: str, *, ctx: ToolContext) -> ToolOutput:
        """Commit every change in a GitOps directory that nobody committed (made by hand since the
        last commit), after its pre_commit check; its post_commit hook runs after. A person approves the diff.

        Args:
            path: the GitOps directory.
            message: what the change is, in a line.
        """
        prepared, hooks = await prepare_commit(path, message, ctx)
        ctx.check_unchanged((*prepared.parts, *hooks.parts))
        directory = gitops.directory(path)
        if hooks.pre_commit:
            check = await gitops.run_hook(hooks.pre_commit, directory)
            if not check.ok:
                report = gitops.hook_report("pre_commit", hooks.pre_commit, check)
                return ToolOutput(
                    f"{report}\nthe check failed: nothing was committed, the files are as they were", ok=False
                )
        sha = await git.record(prepared, reflog="gitops (orchestrator)")
        stat_text = await git.out(prepared.top, "show", "--stat", "--format=", sha)
        text, ok = await gitops._after_commit(
            f"committed {sha[:12]} in {prepared.top}: {message.strip().splitlines()[0]}\n{stat_text.rstrip()}",
            directory,
            hooks,
        )
        return ToolOutput(text, ok=ok)

    @gitops_commit.plan
    async def _plan_commit(args: dict[str, Any]) -> Plan:
        prepared, hooks = await prepare_commit(args["path"], args["message"], None)
        return Plan(
            risk=Risk.WRITE,
            summary=f"gitops_commit in {prepared.top}: {args['message'].strip().splitlines()[0][:80]}",
            detail=policy.redact(
                f"commit in {prepared.top} ({prepared.branch}); hooks: {hooks.describe()}\n"
                f"paths: {', '.join(prepared.paths)}\n\n{prepared.diff}"
            ),
            detail_kind="diff",
            fingerprint_parts=(*prepared.parts, *hooks.parts),
        )

    @gitops_commit.check_fresh
    async def _fresh_commit(args: dict[str, Any]) -> tuple[str, ...]:
        prepared, hooks = await prepare_commit(args["path"], args["message"], None)
        return (*prepared.parts, *hooks.parts)

    # ---- rollback ---------------------------------------------------------------

    @tool(risk=Risk.WRITE)
    async def gitops_rollback(path: str, commit: str = "HEAD", *, ctx: ToolContext) -> ToolOutput:
        """Return a GitOps directory's files to their state at a commit (HEAD: undo what changed since the
        last commit). Changes nobody committed are first kept in a commit of their own. A person approves the diff.

        Args:
            path: the GitOps directory.
            commit: the commit to return to: an id as gitops_log shows it, HEAD, or HEAD~1.
        """
        r = await gitops.prepare_rollback(path, commit)
        ctx.check_unchanged(r.parts)
        parent = r.head
        kept = ""
        if r.dirty:
            saved = commit_message(
                f"GitOps: changes in {r.directory} nobody committed, kept before a rollback", ctx, policy.redact
            )
            parent = await gitops.commit_tree(r, r.snapshot, r.head, saved)
            kept = f"\nthe uncommitted changes ({len(r.dirty)} files) were kept first as {parent[:12]}"
        moved = await gitops.switch(r.top, r.snapshot, r.tree)
        if not moved.ok:
            raise ToolError(f"the files could not be switched, nothing changed: {moved.stderr.strip()[:300]}")
        if r.hooks.pre_commit:
            check = await gitops.run_hook(r.hooks.pre_commit, r.directory)
            if not check.ok:
                back = await gitops.switch(r.top, r.tree, r.snapshot)
                restored = "were put back as they were" if back.ok else f"could not be put back: {back.stderr[:300]}"
                report = gitops.hook_report("pre_commit", r.hooks.pre_commit, check)
                return ToolOutput(
                    f"{report}\nthe check failed: the files {restored}, nothing was rolled back{kept}", ok=False
                )
        message = commit_message(
            f"GitOps: roll {r.directory} back to {r.sha[:12]} ({r.subject[:80]})", ctx, policy.redact
        )
        new = await gitops.commit_tree(r, r.tree, parent, message)
        await git.run(r.top, "reset", "--quiet", "--", r.rel)  # the real index follows the new HEAD
        stat_text = await git.out(r.top, "diff-tree", "--stat", *NO_PROGRAMS, r.snapshot, r.tree)
        text, ok = await gitops._after_commit(
            f"rolled {r.directory} back to {r.sha[:12]} with commit {new[:12]}{kept}\n{stat_text.rstrip()}",
            r.directory,
            r.hooks,
        )
        return ToolOutput(text, ok=ok)

    @gitops_rollback.plan
    async def _plan_rollback(args: dict[str, Any]) -> Plan:
        r = await gitops.prepare_rollback(args["path"], args["commit"])
        kept = (
            f"first kept in a commit of their own: uncommitted changes in {', '.join(r.dirty[:20])}\n"
            if r.dirty
            else ""
        )
        return Plan(
            risk=Risk.WRITE,
            summary=f"gitops_rollback {r.directory} to {r.sha[:12]} ({r.subject[:60]})",
            detail=policy.redact(
                f"roll {r.directory} back to {r.sha[:12]} {r.subject} ({r.branch}, HEAD {r.head[:12]})\n"
                f"{kept}hooks: {r.hooks.describe()}\n\nwhat changes in the files:\n{r.diff}"
            ),
            detail_kind="diff",
            fingerprint_parts=r.parts,
        )

    @gitops_rollback.check_fresh
    async def _fresh_rollback(args: dict[str, Any]) -> tuple[str, ...]:
        return (await gitops.prepare_rollback(args["path"], args["commit"])).parts

    # ---- hooks ------------------------------------------------------------------

    def new_hooks(args: dict[str, Any]) -> tuple[Path, Hooks, Hooks]:
        """The directory, the hooks asked for (checked) and the hooks it has now."""
        directory = gitops.directory(args["path"])
        hooks = Hooks(gitops.check_hook(args.get("pre_commit") or ()), gitops.check_hook(args.get("post_commit") or ()))
        return directory, hooks, gitops.hooks.get(directory)

    @tool(risk=Risk.EXEC)
    async def gitops_setup_hooks(
        path: str, pre_commit: list[str] | None = None, post_commit: list[str] | None = None, *, ctx: ToolContext
    ) -> str:
        """Set the programs that run around every GitOps commit in a directory, as argv lists:
        pre_commit checks the new state (e.g. ["nginx", "-t"]; if it fails the change is put back and
        nothing is committed), post_commit runs after the commit (e.g. ["systemctl", "reload", "nginx"]).
        Both empty removes them. A person approves the exact argv.

        Args:
            path: the GitOps directory.
            pre_commit: the check run before each commit, as argv; empty for none.
            post_commit: the program run after each commit, as argv; empty for none.
        """
        directory, hooks, current = new_hooks({"path": path, "pre_commit": pre_commit, "post_commit": post_commit})
        ctx.check_unchanged((str(directory), *hooks.parts, *current.parts))
        await asyncio.to_thread(gitops.hooks.set, directory, hooks)
        return f"hooks of {directory}: {hooks.describe()}"

    @gitops_setup_hooks.plan
    async def _plan_hooks(args: dict[str, Any]) -> Plan:
        directory, hooks, current = new_hooks(args)
        return Plan(
            risk=Risk.EXEC,
            summary=f"gitops_setup_hooks {directory}: {hooks.describe()}",
            detail=(
                f"GitOps hooks of {directory}, run as these argv (no shell) around every commit there:\n"
                f"  before (a failure puts the change back): "
                f"{shlex.join(hooks.pre_commit) if hooks.pre_commit else '(none)'}\n"
                f"  after: {shlex.join(hooks.post_commit) if hooks.post_commit else '(none)'}\n"
                f"now: {current.describe()}"
            ),
            fingerprint_parts=(str(directory), *hooks.parts, *current.parts),
        )

    @gitops_setup_hooks.check_fresh
    async def _fresh_hooks(args: dict[str, Any]) -> tuple[str, ...]:
        directory, hooks, current = new_hooks(args)
        return (str(directory), *hooks.parts, *current.parts)

    return [gitops_status, gitops_log, gitops_init, gitops_commit, gitops_rollback, gitops_setup_hooks]


def _put_back(target: Path, previous: bytes | None) -> None:
    """Return a file to what it held before a write (or remove it when the write created it)."""
    if previous is None:
        target.unlink(missing_ok=True)
        return
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o644
    replace_atomically(target, previous, mode)
