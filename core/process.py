"""The one place that starts processes.

argv only (never a shell), a timeout that kills the whole process group, and
an output cap so a chatty command cannot fill memory.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_TIMEOUT = 60.0
DEFAULT_OUTPUT_CAP = 64 * 1024
_REAP_GRACE = 2.0  # seconds to wait for a killed child before closing its pipes


@dataclass(frozen=True, slots=True)
class ProcessResult:
    argv: tuple[str, ...]
    exit_status: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated: bool = False
    not_found: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not self.timed_out

    def combined(self) -> str:
        parts = [self.stdout.rstrip("\n")]
        if self.stderr.strip():
            parts.append(self.stderr.rstrip("\n"))
        return "\n".join(p for p in parts if p)


async def read_capped(stream: asyncio.StreamReader | None, cap: int) -> tuple[bytes, bool]:
    if stream is None:
        return b"", False
    chunks: list[bytes] = []
    size = 0
    truncated = False
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            break
        if size < cap:
            keep = chunk[: cap - size]
            chunks.append(keep)
            if len(keep) < len(chunk):
                truncated = True
        else:
            truncated = True  # keep draining so the child never blocks on a full pipe
        size += len(chunk)
    return b"".join(chunks), truncated


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """Wait for the killed child; a descendant that left the process group (setsid) may still
    hold its pipes open, and asyncio's wait() waits for those too: close them instead."""
    try:
        await asyncio.wait_for(proc.wait(), _REAP_GRACE)
    except TimeoutError:
        transport = getattr(proc, "_transport", None)  # asyncio keeps no public handle on the pipes
        if transport is not None:
            transport.close()


async def run_process(
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - a timeout must kill the process group
    output_cap: int = DEFAULT_OUTPUT_CAP,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
) -> ProcessResult:
    """Run argv without a shell; never raises for the command's own failures."""
    argv = tuple(argv)
    if not argv:
        raise ValueError("empty argv")
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,  # own process group, so a timeout kills children too
        )
    except FileNotFoundError:
        return ProcessResult(argv, None, "", f"command not found: {argv[0]}", not_found=True)
    except PermissionError as exc:
        return ProcessResult(argv, None, "", f"cannot execute {argv[0]}: {exc.strerror}")

    async def communicate() -> tuple[tuple[bytes, bool], tuple[bytes, bool]]:
        if stdin is not None and proc.stdin is not None:
            proc.stdin.write(stdin)
            await proc.stdin.drain()
            proc.stdin.close()
        out, err = await asyncio.gather(read_capped(proc.stdout, output_cap), read_capped(proc.stderr, output_cap))
        await proc.wait()
        return out, err

    try:
        (out, out_cut), (err, err_cut) = await asyncio.wait_for(communicate(), timeout)
    except TimeoutError:
        _kill_group(proc)
        await _reap(proc)
        return ProcessResult(argv, proc.returncode, "", f"timed out after {timeout:g} s and was killed", timed_out=True)
    except asyncio.CancelledError:
        _kill_group(proc)
        raise
    return ProcessResult(
        argv,
        proc.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
        truncated=out_cut or err_cut,
    )
