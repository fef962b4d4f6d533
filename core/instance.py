"""Who a bot process is, for the rows it owns: approval waits, runs, the scheduler lease.

An owner id has two parts. The instance id is stable: a file in the data directory, created
once, so a process restarted under another hostname (a recreated container) or another pid
is recognised as the same bot. The process part (pid and a random nonce) tells live processes
of that instance apart.

Each process holds an exclusive `flock` on a file of its own under the data directory for as
long as it lives; the kernel releases it when the process dies, SIGKILL included. So a process
of the same instance knows at once whether an owner is gone: its lock file is there and free.
An owner that cannot be probed (another instance, its file missing, an id from an older
version) is judged by the heartbeat its rows carry. Give each machine its own data directory:
a copy of one (with its instance-id file) would make two machines one instance.

    host:pid:nonce:instance      e.g. web-1:4242:9c0e1f:3f9a2c71d0e4
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

INSTANCE_FILE = "instance-id"
PROCESS_DIR = "processes"
KEEP_DEAD_LOCKS = 86400.0  # seconds a dead process's lock file is kept: long past any lease


@dataclass(frozen=True, slots=True)
class OwnerId:
    host: str  # for people reading a log line; never used to decide anything
    pid: int
    nonce: str
    instance: str

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.nonce}:{self.instance}"

    @classmethod
    def parse(cls, text: str) -> OwnerId | None:
        """None for anything else, such as the host:pid:nonce ids written by older versions."""
        parts = text.split(":")
        if len(parts) != 4 or not parts[1].isdigit() or not parts[2] or not parts[3]:
            return None
        return cls(parts[0], int(parts[1]), parts[2], parts[3])

    @property
    def lock_name(self) -> str:
        return f"{self.pid}-{self.nonce}.lock"


def read_instance_id(data_dir: Path) -> str | None:
    try:
        text = (data_dir / INSTANCE_FILE).read_text().strip()
    except OSError:
        return None
    return text or None


def load_instance_id(data_dir: Path) -> str:
    """The data directory's instance id, created the first time. Two processes starting at once
    agree: the file appears whole (written aside, then linked into place) and the first one wins."""
    existing = read_instance_id(data_dir)
    if existing:
        return existing
    data_dir.mkdir(parents=True, exist_ok=True)
    fresh = uuid.uuid4().hex[:12]
    aside = data_dir / f".{INSTANCE_FILE}.{os.getpid()}.{fresh}"
    aside.write_text(fresh + "\n")
    try:
        os.link(aside, data_dir / INSTANCE_FILE)
    except FileExistsError:
        pass
    finally:
        aside.unlink(missing_ok=True)
    return read_instance_id(data_dir) or fresh


class ProcessIdentity:
    """This process as an owner of rows, and the judge of whether other owners are still there."""

    def __init__(self, owner: OwnerId, *, data_dir: Path | None, lock_fd: int | None) -> None:
        self.id = owner
        self.owner = str(owner)
        self._dir = data_dir / PROCESS_DIR if data_dir is not None else None
        self._fd = lock_fd

    @classmethod
    def start(cls, data_dir: Path) -> ProcessIdentity:
        """Register this process in `data_dir`: its instance id, and a lock held until `close()` or death.
        A data directory where that cannot be done gives an identity nobody can probe (heartbeats only)."""
        nonce = uuid.uuid4().hex[:6]
        try:
            instance = load_instance_id(data_dir)
            owner = OwnerId(socket.gethostname(), os.getpid(), nonce, instance)
            procs = data_dir / PROCESS_DIR
            procs.mkdir(exist_ok=True)
            fd = os.open(procs / owner.lock_name, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise
        except OSError as exc:
            log.warning("cannot register this process in %s (%s): other processes will go by heartbeats", data_dir, exc)
            return cls.ephemeral()
        identity = cls(owner, data_dir=data_dir, lock_fd=fd)
        identity.sweep()
        return identity

    @classmethod
    def ephemeral(cls) -> ProcessIdentity:
        """An identity of its own, with no data directory (tests, a store without one)."""
        owner = OwnerId(socket.gethostname(), os.getpid(), uuid.uuid4().hex[:6], "x" + uuid.uuid4().hex[:11])
        return cls(owner, data_dir=None, lock_fd=None)

    @classmethod
    def observer(cls, data_dir: Path) -> ProcessIdentity:
        """For a command that only reads (`orchestrator jobs`): probes owners, owns nothing."""
        instance = read_instance_id(data_dir) or ("x" + uuid.uuid4().hex[:11])
        owner = OwnerId(socket.gethostname(), os.getpid(), uuid.uuid4().hex[:6], instance)
        return cls(owner, data_dir=data_dir, lock_fd=None)

    def close(self) -> None:
        """Release the lock (the file stays, free): from now on this process counts as gone."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    # ---- judging other owners ------------------------------------------------------------
    def is_dead(self, owner: str) -> bool:
        """True only when `owner` is known to be gone: a process of this instance whose lock is free.
        False when it is alive or cannot be probed (another instance, an old-style id)."""
        if owner == self.owner:
            return self._fd is None and self._dir is not None
        other = OwnerId.parse(owner)
        if other is None or self._dir is None or other.instance != self.id.instance:
            return False
        try:
            fd = os.open(self._dir / other.lock_name, os.O_RDWR)
        except OSError:
            return False  # no file to probe (swept long ago, or another copy of this directory)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # held: that process is alive
        except OSError:
            return False
        finally:
            os.close(fd)  # closing drops our probe lock at once
        return True

    def is_gone(self, owner: str, *, beat: float | None, now: float, lease: float) -> bool:
        """Gone: known dead, or silent for longer than `lease` (its heartbeat stopped)."""
        if self.is_dead(owner):
            return True
        return beat is None or now - beat > lease

    def sweep(self, *, now: float | None = None) -> int:
        """Remove the lock files of processes that have been gone for a day; how many were removed."""
        if self._dir is None:
            return 0
        now = time.time() if now is None else now
        removed = 0
        for path in self._dir.glob("*.lock"):
            try:
                if path.name == self.id.lock_name or now - path.stat().st_mtime < KEEP_DEAD_LOCKS:
                    continue
            except OSError:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
            os.close(fd)
        return removed

    def describe(self, owner: str) -> str:
        """`pid 4242 on web-1` for an owner id, the id itself when it is not one of ours."""
        other = OwnerId.parse(owner)
        return f"pid {other.pid} on {other.host}" if other is not None else owner
