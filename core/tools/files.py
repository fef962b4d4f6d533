"""File tools, confined to the file roots after resolving symlinks and `..`."""

from __future__ import annotations

import asyncio
import difflib
import fnmatch
import hashlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ToolError
from core.events import Risk
from core.policy import Policy
from core.tools.registry import Plan, ToolContext, ToolOutput, ToolSpec, tool

if TYPE_CHECKING:
    from core.tools.gitops import GitOps

MAX_READ = 200_000
MAX_SEARCH_FILE = 2_000_000


def file_hash(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return "absent"


def make_diff(path: Path, old: str, new: str) -> str:
    diff = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"a{path}" if old or path.exists() else "/dev/null",
            tofile=f"b{path}",
        )
    )
    return diff or f"(no change: {path} already has this content)"


def _missing(path: Path) -> str:
    """A path that does not exist, said so the model looks for the right one instead of stopping."""
    parent = next((p for p in path.parents if p.is_dir()), None)
    near = f" ({parent} exists)" if parent is not None and parent != path.parent else ""
    return (
        f"{path} does not exist{near}; find the right path with search_files (by name) or list_directory "
        f"(of {path.parent}), then try again"
    )


def _read_text(path: Path, limit: int) -> tuple[str, bool]:
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    if b"\x00" in data[:8192]:
        raise ToolError(f"{path} looks like a binary file; not shown")
    return data[:limit].decode("utf-8", "replace"), len(data) > limit


def file_tools(policy: Policy, *, backup_dir: Path, gitops: GitOps | None = None) -> list[ToolSpec]:
    """The file tools; with `gitops`, a write into a GitOps directory is committed there (core/tools/gitops.py)."""

    def resolve(path: str, *, for_write: bool = False) -> Path:
        return policy.resolve_path(path, for_write=for_write)

    @tool(risk=Risk.READ)
    async def list_directory(path: str = ".") -> list[dict[str, Any]] | str:
        """List a directory under the file roots: names, types, sizes and modification times.

        Args:
            path: directory to list; relative paths start at the first file root.
        """
        target = resolve(path)
        if not target.is_dir():
            raise ToolError(_missing(target) if not target.exists() else f"{target} is not a directory")

        def work() -> list[dict[str, Any]]:
            rows = []
            for entry in sorted(os.scandir(target), key=lambda e: e.name)[:500]:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                kind = "dir" if stat.S_ISDIR(st.st_mode) else "link" if stat.S_ISLNK(st.st_mode) else "file"
                rows.append(
                    {"name": entry.name, "type": kind, "size": st.st_size,
                     "modified": time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime))}
                )  # fmt: skip
            return rows

        rows = await asyncio.to_thread(work)
        return rows or f"{target} is empty"

    @tool(risk=Risk.READ)
    async def read_file(path: str, max_bytes: int = 20_000) -> str:
        """Read a text file under the file roots.

        Args:
            path: the file to read.
            max_bytes: read at most this many bytes (up to 200000).
        """
        target = resolve(path)
        if not target.is_file():
            raise ToolError(_missing(target) if not target.exists() else f"{target} is not a regular file")
        text, cut = await asyncio.to_thread(_read_text, target, max(1, min(max_bytes, MAX_READ)))
        return text + ("\n… [file continues; read with a larger max_bytes]" if cut else "")

    @tool(risk=Risk.READ)
    async def search_files(query: str, path: str = ".", in_content: bool = True, max_results: int = 50) -> str:
        """Find files under the file roots by name (glob or substring) and, optionally, by content.

        Args:
            query: a glob like "*.conf" or a plain substring to look for.
            path: directory to search in.
            in_content: also search inside text files for the substring.
            max_results: stop after this many matches (up to 200).
        """
        base = resolve(path)
        limit = max(1, min(max_results, 200))
        is_glob = any(c in query for c in "*?[")
        needle = query.lower()

        def work() -> list[str]:
            hits: list[str] = []
            for root, dirs, files in os.walk(base):
                dirs[:] = [d for d in dirs if not d.startswith(".git")]
                for name in files:
                    full = Path(root) / name
                    if not policy.is_inside_roots(full):
                        continue
                    if fnmatch.fnmatch(name, query) if is_glob else needle in name.lower():
                        hits.append(f"{full}  (name)")
                    elif in_content and not is_glob:
                        try:
                            if full.stat().st_size > MAX_SEARCH_FILE:
                                continue
                            with full.open("rb") as fh:
                                data = fh.read()
                        except OSError:
                            continue
                        if b"\x00" in data[:4096]:
                            continue
                        for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
                            if needle in line.lower():
                                hits.append(f"{full}:{n}: {line.strip()[:200]}")
                                break
                    if len(hits) >= limit:
                        return hits
            return hits

        hits = await asyncio.to_thread(work)
        if not hits:
            return f"no match for {query!r} under {base}"
        more = f"\n(stopped at {limit} matches)" if len(hits) >= limit else ""
        return "\n".join(hits) + more

    def writable(path: str) -> Path:
        target = resolve(path, for_write=True)
        if target.is_dir():
            raise ToolError(f"{target} is a directory")
        return target

    def gitops_note(target: Path) -> tuple[str, tuple[str, ...]]:
        return gitops.write_note(target) if gitops is not None else ("", ())

    def write_parts(target: Path, digest: str) -> tuple[str, ...]:
        # the approval is bound to the file the diff was made from (and to the GitOps hooks it showed)
        return (str(target), digest, *gitops_note(target)[1])

    @tool(risk=Risk.WRITE)
    async def write_file(path: str, content: str, *, ctx: ToolContext) -> str | ToolOutput:
        """Create or replace a text file under the file roots. A person approves the diff first.

        Args:
            path: the file to write.
            content: the complete new content of the file.
        """
        target = writable(path)

        def unchanged(digest: str) -> None:
            ctx.check_unchanged(write_parts(target, digest))

        committed = gitops is not None and gitops.directory_of(target) is not None
        previous = await asyncio.to_thread(_read_or_none, target) if committed else None
        done = await asyncio.to_thread(_apply_write, target, content, backup_dir, unchanged)
        if gitops is None or not committed:
            return done
        note, ok = await gitops.after_write(target, previous, ctx)
        return ToolOutput(done + note, ok=ok)

    @write_file.plan
    async def _plan_write(args: dict[str, Any]) -> Plan:
        target = writable(args["path"])
        old = ""
        if target.exists():
            old, cut = await asyncio.to_thread(_read_text, target, MAX_READ * 10)
            if cut:
                raise ToolError(f"{target} is too large to edit through chat")
        before = await asyncio.to_thread(file_hash, target)
        diff = make_diff(target, old, args["content"])
        return Plan(
            risk=Risk.WRITE,
            summary=f"write {target} ({len(args['content'])} bytes)",
            detail=policy.redact(diff + gitops_note(target)[0]),
            detail_kind="diff",
            fingerprint_parts=write_parts(target, before),
        )

    @write_file.check_fresh
    async def _fresh_write(args: dict[str, Any]) -> tuple[str, ...]:
        target = writable(args["path"])  # the policy again: the path may have become a link out of the roots
        return write_parts(target, await asyncio.to_thread(file_hash, target))

    return [list_directory, read_file, search_files, write_file]


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _apply_write(target: Path, content: str, backup_dir: Path, unchanged: Callable[[str], None]) -> str:
    unchanged(file_hash(target))  # right before the write: a change since the approval is not overwritten
    backup = ""
    mode = 0o644
    if target.exists():
        mode = stat.S_IMODE(target.stat().st_mode)
        dest = backup_dir / time.strftime("%Y%m%d-%H%M%S") / target.relative_to(target.anchor)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(target, dest)
        backup = f"; previous version kept at {dest}"
    target.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(target, content.encode(), mode)
    return f"wrote {len(content.encode())} bytes to {target}{backup}"


def replace_atomically(target: Path, data: bytes, mode: int) -> None:
    """Write `data` beside `target` and rename it over: readers see the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
