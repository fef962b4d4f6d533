"""What the private test servers (tests/support/postgres.py, tests/support/chroma.py) share.

Each server lives in a short temp directory marked as ours, with the pid and start time of
the test process that owns it, so a later session can clean what a killed one left behind.
Each runs in its own session and gets SIGTERM (or the signal given) if the test process dies
without stopping it.

Whether a server must run is one environment variable per server: ``auto`` (the default:
skip with the reason when it cannot start), ``require`` (fail instead: the default when
``CI=true``, since CI installs everything through .ci/system-deps.sh) or ``skip``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

OWNER_FILE = "owner.json"
_PR_SET_PDEATHSIG = 1
_OFF = {"skip", "off", "0", "no", "false"}


# ---- mode: run, skip or require ------------------------------------------------------------------
def mode(variable: str) -> str:
    """``auto``, ``require`` or ``skip`` for the server `variable` controls (``require`` in CI)."""
    value = os.environ.get(variable, "").strip().lower()
    if not value:
        return "require" if os.environ.get("CI", "").strip().lower() == "true" else "auto"
    return "skip" if value in _OFF else value


def skip_unless_wanted(variable: str, what: str) -> None:
    """Skip at once when `variable` says so."""
    if mode(variable) == "skip":
        pytest.skip(f"{variable}={os.environ.get(variable)}: {what} tests disabled")


def cannot_start(variable: str, reason: str) -> NoReturn:
    """The server cannot run here: fail under ``require`` (CI), skip with the reason otherwise."""
    if mode(variable) == "require":
        why = f"{variable}=require" if os.environ.get(variable) else "CI=true"
        pytest.fail(f"{why} but {reason}", pytrace=False)
    pytest.skip(reason)


# ---- what ran against a server (printed at the end of the run, for the CI log) -----------------------
class Tally:
    """The tests that used one server and how each ended (``passed``, ``failed``, ``skipped``)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.server = ""  # e.g. "PostgreSQL 15 on 127.0.0.1:41234", once started
        self.outcomes: dict[str, str] = {}

    def used_by(self, nodeid: str) -> None:
        self.outcomes.setdefault(nodeid, "passed")

    def record(self, report: pytest.TestReport) -> None:
        """The first phase that did not pass decides (a failed teardown fails a passed test)."""
        if self.outcomes.get(report.nodeid) != "passed" or report.passed:
            return
        self.outcomes[report.nodeid] = "xfailed" if hasattr(report, "wasxfail") else report.outcome

    def line(self) -> str | None:
        if not self.outcomes:
            return None
        counts: dict[str, int] = {}
        for outcome in self.outcomes.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        detail = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        tests = f"{len(self.outcomes)} test{'' if len(self.outcomes) == 1 else 's'}"
        return f"{self.what}: {tests} ran against {self.server or 'it'} ({detail})"


# ---- processes -------------------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the server binds it a moment later: retry on a clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A `preexec_fn`: the child gets `sig` when the test process dies without stopping it.
    (Set after any change of user, which would clear it.)"""

    def arm() -> None:
        with contextlib.suppress(Exception):
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, sig)

    return arm


def stop_process(proc: subprocess.Popen[bytes], first: int = signal.SIGTERM, *, timeout: float = 15.0) -> None:
    """`first`, then SIGKILL if it is still there after `timeout` seconds."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(first)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def start_time(pid: int) -> str:
    """The kernel's start time of `pid` ("" if it is gone): a pid with another start time is another process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


# ---- temp directories ------------------------------------------------------------------------------
def short_tmp() -> str:
    """/tmp when writable: unix socket paths must stay under 108 bytes."""
    return "/tmp" if os.path.isdir("/tmp") and os.access("/tmp", os.W_OK) else tempfile.gettempdir()


def make_root(prefix: str, marker: str) -> Path:
    """A fresh marked temp directory owned by this test process."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=short_tmp()))
    (root / marker).write_text("private test server started by tests/support\n")
    (root / OWNER_FILE).write_text(json.dumps({"owner_pid": os.getpid(), "owner_start": start_time(os.getpid())}))
    return root


def sweep_stale(prefix: str, marker: str, stop: Callable[[Path], None]) -> None:
    """Stop and remove what a test process that died without cleaning up left under `prefix`."""
    for root in Path(short_tmp()).glob(prefix + "*"):
        if not (root / marker).exists():
            continue
        try:
            owner = json.loads((root / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # being set up right now
        pid = int(owner.get("owner_pid", 0))
        if pid and start_time(pid) == owner.get("owner_start"):
            continue  # its owner is alive: a concurrent test session
        with contextlib.suppress(Exception):
            stop(root)
        shutil.rmtree(root, ignore_errors=True)


def pids_referencing(root: Path) -> list[int]:
    """Pids whose command line names `root` (the server a dead session left running)."""
    needle = str(root).encode()
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if needle in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def kill_all(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        if pid != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def wait_until(ready: Callable[[], str | None], *, alive: Callable[[], str | None], timeout: float) -> str | None:
    """Poll `ready` (None: ready; otherwise the last error) until `timeout`; `alive` returns why the
    process died, if it did. Returns None when ready, or the reason it never was."""
    deadline = time.monotonic() + timeout
    last = "never answered"
    while time.monotonic() < deadline:
        died = alive()
        if died is not None:
            return died
        error = ready()
        if error is None:
            return None
        last = error
        time.sleep(0.1)
    return f"not ready after {timeout:.0f}s ({last})"
