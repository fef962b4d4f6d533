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

Commands normally start in a shared session (`core.sandbox_session`): the same view built
once, with nothing writable at all, not even /tmp, so commands leave nothing for each other.
Where the session cannot start, or `SandboxConfig.session` is off, each command gets a
bubblewrap of its own, with the private /tmp described above.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from core.errors import RuntimeFailure
from core.process import ProcessResult, run_process
from core.sandbox_session import SandboxSession, SessionFailed, python_candidates

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


_View = tuple[list[Path], list[Path]]  # the directories and the files to hide
_Stats = tuple[tuple[str, tuple[int, int, int] | None], ...]  # each candidate path: (device, inode, mode) or absent


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
    session: bool = True  # start commands in one long-lived sandbox (nothing writable) rather than one each


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
        self._session: SandboxSession | None = None
        self._starting: asyncio.Task[SandboxSession | None] | None = None
        self._session_failed = not config.session
        self._pythons = [Path(os.path.realpath(p)) for p in python_candidates() if os.path.isfile(p)]
        self._python_for: dict[tuple[Path, ...], str | None] = {}
        self._root_texts = tuple(str(r) for r in self.roots)
        self._extra_hidden = tuple(str(p) for p in config.hidden)
        self._hidden_for: tuple[_Stats, _View] | None = None  # the last answer of _hidden(), and what it saw

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
        text = str(path)
        return any(text == r or text.startswith(r + "/") for r in self._root_texts)  # (pathlib is slow here)

    def _hidden(self) -> _View:
        """(directories, files) to hide, resolved, existing, and not under a file root.

        Asked before every command. Resolving each path costs a system call per component, so
        the answer is kept while a stat of every candidate (which follows links) gives the same
        file or the same absence: a path that appears, vanishes, or now leads elsewhere is
        resolved again."""
        seen: list[tuple[str, tuple[int, int, int] | None]] = []
        candidates: list[str] = [*HIDDEN_DIRS, *HIDDEN_FILES, *self._extra_hidden]
        for pattern in candidates:
            for raw in sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]:
                try:
                    st = os.stat(raw)
                    seen.append((raw, (st.st_dev, st.st_ino, st.st_mode)))
                except OSError:
                    seen.append((raw, None))
        key = tuple(seen)
        if self._hidden_for is not None and self._hidden_for[0] == key:
            return self._hidden_for[1]
        dirs: list[Path] = []
        files: list[Path] = []
        for raw, found in key:
            if found is None:
                continue
            real = Path(os.path.realpath(raw))
            if self._under_root(real):
                continue
            (dirs if stat.S_ISDIR(found[2]) else files).append(real)
        view = (sorted(set(dirs)), sorted(set(files)))
        self._hidden_for = (key, view)
        return view

    def _env_vars(self) -> dict[str, str]:
        env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"}
        lang = os.environ.get("LANG", "")
        if lang and _PLAIN_LOCALE.fullmatch(lang):
            env["LANG"] = lang
        tz = os.environ.get("TZ", "")
        if tz and _PLAIN_TZ.fullmatch(tz):
            env["TZ"] = tz
        env.update(dict(self.config.extra_env))
        return env

    def _env(self) -> list[str]:
        args: list[str] = ["--clearenv"]
        for key, value in self._env_vars().items():
            args += ["--setenv", key, value]
        return args

    def _bwrap_args(
        self,
        binary: str,
        cwd: Path,
        *,
        session: bool = False,
        hidden: tuple[list[Path], list[Path]] | None = None,
    ) -> list[str]:
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
            "--cap-drop", "ALL",
        ]  # fmt: skip
        if not session:  # a session's helper kills its commands when the bot goes, then exits itself
            args.append("--die-with-parent")
        if os.path.exists("/proc/sysrq-trigger"):
            args += ["--ro-bind", "/proc/sysrq-trigger", "/proc/sysrq-trigger"]
        hidden_dirs, hidden_files = hidden if hidden is not None else self._hidden()
        for d in hidden_dirs:
            args += ["--tmpfs", str(d)]
        for f in hidden_files:
            args += ["--ro-bind", "/dev/null", str(f)]
        # A root inside a hidden or private directory (/home/alice/project, /tmp/x) stays visible.
        covered = [*hidden_dirs, *(Path(p) for p in _PRIVATE_DIRS)]
        for root in self.roots:
            if root.is_dir() and any(d in root.parents for d in covered):
                args += ["--ro-bind", str(root), str(root)]
        # Only /tmp stays writable, and not in a session that many commands share: the other
        # empty directories become read-only, last (after the roots are bound back into them).
        for empty in [*(_PRIVATE_DIRS if session else _READONLY_EMPTY), *(str(h) for h in hidden_dirs)]:
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
        real = self._checked_cwd(cwd)
        return [*self._bwrap_args(binary, real), "--", *argv]

    def _helper_python(self, hidden_dirs: Sequence[Path]) -> str | None:
        """A Python the session's view shows (the bot's own may live in a hidden /root/.pyenv:
        then the system's), or None: nothing is bound back into a hidden directory for it."""
        key = tuple(hidden_dirs)
        if key not in self._python_for:
            covered = [*hidden_dirs, *(Path(p) for p in _PRIVATE_DIRS)]
            visible = (
                str(real)
                for real in self._pythons
                if not any(d == p or d in p.parents for d in covered for p in (real, real.parent.parent))
            )
            self._python_for = {key: next(visible, None)}  # the hidden directories rarely change
        return self._python_for[key]

    def _checked_cwd(self, cwd: Path) -> Path:
        real = Path(os.path.realpath(cwd))
        if not self._under_root(real) or not real.is_dir():
            raise SandboxUnavailable(f"{cwd} is not a directory inside the file roots")
        return real

    async def run(self, argv: Sequence[str], *, cwd: Path, timeout: float, output_cap: int) -> ProcessResult:  # noqa: ASYNC109 - passed to run_process
        """Run argv in the sandbox. Raises SandboxUnavailable rather than running it unconfined."""
        status = await self.probe()
        if not status.available:
            raise SandboxUnavailable(status.describe())
        binary = self.config.bwrap or find_bwrap()
        if binary is None:
            raise SandboxUnavailable("bubblewrap (bwrap) is not installed; install it: apt-get install bubblewrap")
        real = self._checked_cwd(cwd)
        hidden = self._hidden()  # once per command: a file hidden since the last one is hidden from this one
        session = await self._current_session(binary, hidden)
        if session is not None:
            try:
                return await session.run(argv, cwd=real, env=self._env_vars(), timeout=timeout, output_cap=output_cap)
            except SessionFailed as exc:  # nothing was started: run it alone
                log.warning("the sandbox session stopped (%s); this command runs in a bubblewrap of its own", exc)
        alone = [*self._bwrap_args(binary, real, hidden=hidden), "--", *argv]
        result = await run_process(alone, timeout=timeout, output_cap=output_cap, env={})
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

    # ---- the shared session ----------------------------------------------------
    async def _current_session(self, binary: str, hidden: tuple[list[Path], list[Path]]) -> SandboxSession | None:
        """The session for today's view (a new one when the roots or the hidden files changed)."""
        if self._session_failed:
            return None
        workdir = self.workdir()
        if workdir is None:
            return None
        python = self._helper_python(hidden[0])
        if python is None:
            self._session_failed = True
            log.info("no Python outside the hidden directories for the sandbox session; one bubblewrap per command")
            return None
        key = (*self._bwrap_args(binary, workdir, session=True, hidden=hidden), "--", python)
        current = self._session
        if current is not None and current.key == key and current.usable():
            return current
        loop = asyncio.get_running_loop()
        starting = self._starting
        if starting is None or starting.get_loop() is not loop or starting.done():
            starting = self._starting = loop.create_task(self._start_session(key))
        return await asyncio.shield(starting)

    async def _start_session(self, key: tuple[str, ...]) -> SandboxSession | None:
        old, self._session = self._session, None
        if old is not None:
            old.retire()  # it finishes what it runs, then stops
        session = SandboxSession(key)
        try:
            await session.start()
        except SessionFailed as exc:
            self._session_failed = True
            log.warning("%s; each free command runs in a bubblewrap of its own (slower, same view)", exc)
            return None
        self._session = session
        return session

    def close(self) -> None:
        """Stop the shared session, if one runs (commands still running in it are killed)."""
        if self._session is not None:
            self._session.close()
            self._session = None
