"""The kernel sandbox that read-only ("free") commands run in.

The policy's table decides a command may run without approval; the sandbox makes sure
a gap in that table cannot become a write or a secret. Bubblewrap (Debian's
`bubblewrap`, run as argv) builds, for each command:

- a read-only view of the whole filesystem, with a private empty /tmp as the only
  writable place;
- the secrets hidden: /etc/shadow and friends, /root, /home, the bot's data directory
  and configuration files, and what the operator adds (unless under a file root);
- no capabilities at all, even as root, and no new privileges, so /proc/<pid>/root
  and /proc/<pid>/environ of the bot cannot be read;
- the environment cleared to PATH, LANG and TZ; the working directory inside a root.

The host's PID and network namespaces are kept, so `ps aux`, `ss -tlnp` and `ip addr`
show the host. Where bubblewrap cannot set this up, nothing runs freely.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from core.errors import RuntimeFailure
from core.process import ProcessResult, run_process

log = logging.getLogger(__name__)

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Hidden from every free command unless they lie under a file root.
HIDDEN_FILES: tuple[str, ...] = (
    "/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers",
    "/etc/security/opasswd", "/etc/ssh/ssh_host_*_key",
)  # fmt: skip
HIDDEN_DIRS: tuple[str, ...] = ("/root", "/home", "/etc/sudoers.d", "/var/lib/sudo", "/etc/ssl/private")

# Private and empty in the sandbox; /tmp is the only place a free command may write.
_READONLY_EMPTY: tuple[str, ...] = ("/var/tmp", "/dev/shm")
_PRIVATE_DIRS: tuple[str, ...] = ("/tmp", *_READONLY_EMPTY)
_PLAIN_LOCALE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_PLAIN_TZ = re.compile(r":?[A-Za-z0-9_+\-:/.,<>]{1,128}")  # Europe/Paris, :/etc/localtime, CET-1CEST,M3.5.0
_PROBE_TIMEOUT = 10.0


class SandboxUnavailable(RuntimeFailure):
    """The sandbox cannot run a command here; the reason says why and how to fix it."""


@dataclass(frozen=True)
class SandboxStatus:
    available: bool
    reason: str = ""
    fix: str = ""

    def describe(self) -> str:
        if self.available:
            return self.reason or "bubblewrap works"
        return f"{self.reason}; {self.fix}" if self.fix else self.reason


@dataclass(frozen=True)
class SandboxConfig:
    file_roots: tuple[Path, ...] = ()
    hidden: tuple[Path, ...] = ()  # the bot's data directory, its .env / orchestrator.toml, operator extras
    mode: Literal["auto", "bwrap", "off"] = "auto"
    bwrap: str | None = None  # an explicit binary; otherwise looked up in the fixed system PATH
    extra_env: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def find_bwrap() -> str | None:
    for directory in SYSTEM_PATH.split(":"):
        candidate = os.path.join(directory, "bwrap")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


class Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.roots = tuple(Path(os.path.realpath(r)) for r in config.file_roots)
        self._status: SandboxStatus | None = None
        self._lock = asyncio.Lock()
        self._warned = False

    # ---- availability ------------------------------------------------------
    async def probe(self) -> SandboxStatus:
        """Whether a real command runs in the sandbox here (checked once, then cached)."""
        if self._status is not None:
            return self._status
        async with self._lock:
            if self._status is None:
                self._status = await self._probe()
                if not self._status.available and not self._warned:
                    self._warned = True
                    log.warning(
                        "sandbox unavailable: %s. Every command will need approval (nothing runs freely).",
                        self._status.describe(),
                    )
        return self._status

    async def _probe(self) -> SandboxStatus:
        if self.config.mode == "off":
            return SandboxStatus(
                False, "the sandbox is turned off (ORCHESTRATOR_SANDBOX=off)", "set ORCHESTRATOR_SANDBOX=auto to use it"
            )
        binary = self.config.bwrap or find_bwrap()
        if binary is None or not os.access(binary, os.X_OK):
            return SandboxStatus(False, "bubblewrap (bwrap) is not installed", "install it: apt-get install bubblewrap")
        cwd = self.workdir()
        if cwd is None:
            return SandboxStatus(
                False,
                "no file root exists as a directory to run commands in",
                "create it or fix ORCHESTRATOR_FILE_ROOTS",
            )
        argv = [*self._bwrap_args(binary, cwd), "--", "true"]
        result = await run_process(argv, timeout=_PROBE_TIMEOUT, output_cap=4096, env={})
        if result.ok:
            return SandboxStatus(True, f"bubblewrap works ({binary})")
        detail = (result.stderr or result.stdout).strip().splitlines()
        why = detail[-1] if detail else f"exit status {result.exit_status}"
        return SandboxStatus(
            False,
            f"bubblewrap cannot build the sandbox here ({why})",
            "allow user and mount namespaces: in a container, run it with --security-opt seccomp=unconfined "
            "(and --security-opt apparmor=unconfined where AppArmor is on; --privileged is not needed, see "
            "docs/deploy.md), or enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)",
        )

    def workdir(self) -> Path | None:
        for root in self.roots:
            if root.is_dir():
                return root
        return None

    # ---- the sandbox view ------------------------------------------------------
    def _under_root(self, path: Path) -> bool:
        return any(path == r or r in path.parents for r in self.roots)

    def _hidden(self) -> tuple[list[Path], list[Path]]:
        """(directories, files) to hide, resolved, existing, and not under a file root."""
        dirs: list[Path] = []
        files: list[Path] = []
        candidates: list[str] = [*HIDDEN_DIRS, *HIDDEN_FILES, *(str(p) for p in self.config.hidden)]
        for pattern in candidates:
            for raw in sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]:
                try:
                    real = Path(os.path.realpath(raw))
                    if not real.exists() or self._under_root(real):
                        continue
                    (dirs if real.is_dir() else files).append(real)
                except OSError:
                    continue
        return sorted(set(dirs)), sorted(set(files))

    def _env(self) -> list[str]:
        env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"}
        lang = os.environ.get("LANG", "")
        if lang and _PLAIN_LOCALE.fullmatch(lang):
            env["LANG"] = lang
        tz = os.environ.get("TZ", "")
        if tz and _PLAIN_TZ.fullmatch(tz):
            env["TZ"] = tz
        env.update(dict(self.config.extra_env))
        args: list[str] = ["--clearenv"]
        for key, value in env.items():
            args += ["--setenv", key, value]
        return args

    def _bwrap_args(self, binary: str, cwd: Path) -> list[str]:
        args = [
            binary,
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--proc", "/proc",
            "--ro-bind", "/proc/sys", "/proc/sys",
            *(arg for d in _PRIVATE_DIRS for arg in ("--tmpfs", d)),
            "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            # No --new-session: run_process already starts bwrap in a session of its own with no
            # terminal, and a second session would put the command's children out of reach of the
            # timeout's process-group kill (and their open pipes would keep run_process waiting).
            "--die-with-parent",
            "--cap-drop", "ALL",
        ]  # fmt: skip
        if os.path.exists("/proc/sysrq-trigger"):
            args += ["--ro-bind", "/proc/sysrq-trigger", "/proc/sysrq-trigger"]
        hidden_dirs, hidden_files = self._hidden()
        for d in hidden_dirs:
            args += ["--tmpfs", str(d)]
        for f in hidden_files:
            args += ["--ro-bind", "/dev/null", str(f)]
        # A root inside a hidden or private directory (/home/alice/project, /tmp/x) stays visible.
        covered = [*hidden_dirs, *(Path(p) for p in _PRIVATE_DIRS)]
        for root in self.roots:
            if root.is_dir() and any(d in root.parents for d in covered):
                args += ["--ro-bind", str(root), str(root)]
        # Only /tmp stays writable: the other empty directories become read-only, last (after
        # the roots are bound back into them).
        for empty in [*_READONLY_EMPTY, *(str(h) for h in hidden_dirs)]:
            args += ["--remount-ro", empty]
        # The fresh /dev tmpfs and /proc are writable as bwrap mounts them: /dev would be a second
        # writable place, and /proc/<pid>/oom_score_adj and friends of the bot would be writable.
        args += ["--remount-ro", "/dev", "--remount-ro", "/proc"]
        args += self._env()
        args += ["--chdir", str(cwd)]
        return args

    def wrap(self, argv: Sequence[str], *, cwd: Path) -> list[str]:
        """The bwrap argv that runs `argv` in the sandbox, in `cwd` (which must be inside a root)."""
        binary = self.config.bwrap or find_bwrap()
        if binary is None:
            raise SandboxUnavailable("bubblewrap (bwrap) is not installed; install it: apt-get install bubblewrap")
        real = Path(os.path.realpath(cwd))
        if not self._under_root(real) or not real.is_dir():
            raise SandboxUnavailable(f"{cwd} is not a directory inside the file roots")
        return [*self._bwrap_args(binary, real), "--", *argv]

    async def run(self, argv: Sequence[str], *, cwd: Path, timeout: float, output_cap: int) -> ProcessResult:  # noqa: ASYNC109 - passed to run_process
        """Run argv in the sandbox. Raises SandboxUnavailable rather than running it unconfined."""
        status = await self.probe()
        if not status.available:
            raise SandboxUnavailable(status.describe())
        result = await run_process(self.wrap(argv, cwd=cwd), timeout=timeout, output_cap=output_cap, env={})
        # show the command as the approver or the model wrote it, not bwrap's argv
        return ProcessResult(
            tuple(argv),
            result.exit_status,
            result.stdout,
            result.stderr,
            timed_out=result.timed_out,
            truncated=result.truncated,
            not_found=result.not_found,
        )
