"""The program that runs inside a long-lived sandbox and starts free commands in it.

`core.sandbox` starts it once, as `python -I -S -c <this file's text> FD` under the same
bubblewrap view a single command would get (everything read-only, secrets hidden, no
capabilities, no new privileges, environment cleared), so each command costs a fork and an
exec instead of a new set of namespaces. It imports nothing from the project: the file is
read by the bot and passed as text, so it runs even when the project lies in a directory
the sandbox hides. It also reads the commands' output, capped, so the bot's event loop
handles one message per command instead of two pipes.

The protocol, on the SOCK_SEQPACKET socket FD, one JSON object per message:

- bot -> helper: {"id", "argv", "cwd", "env", "cap"}, or {"kill": id};
- helper -> bot: {"ready": true} once; then per command {"id", "pid"} or
  {"id", "error": "not_found" | "cannot_execute", "detail"}; then any number of
  {"id", "out" | "err": text} (the output, in parts that fit a message), and last
  {"id", "exit": status, "truncated": bool}.

A killed command's output is given up after GRACE seconds if something it started in another
session still holds its pipes. When the bot's end closes (the bot stopped, or died: the kernel
closes its end), every command still running is killed with its process group and the helper
exits. (The session is started without bubblewrap's --die-with-parent for that reason: the
helper must outlive the bot long enough to kill what it started.) It also makes itself
non-dumpable, so a command cannot ptrace it or read its memory to change what later commands run.
"""

from __future__ import annotations

import ctypes
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from typing import Any

_PR_SET_DUMPABLE = 4
_MAX_MESSAGE = 1 << 20
_PART = 16_000  # characters of output per message (JSON may escape each into six bytes)
GRACE = 2.0

_libc = ctypes.CDLL(None, use_errno=True)


def _send(sock: socket.socket, message: dict[str, object]) -> None:
    sock.sendall(json.dumps(message).encode())


class Job:
    def __init__(self, ident: object, proc: subprocess.Popen[bytes], cap: int) -> None:
        self.ident, self.proc, self.cap = ident, proc, cap
        self.kept: dict[str, list[bytes]] = {"out": [], "err": []}
        self.size = {"out": 0, "err": 0}
        self.open: dict[int, str] = {}
        self.truncated = False
        self.status: int | None = None
        self.killed_at: float | None = None

    def take(self, name: str, data: bytes) -> None:
        room = self.cap - self.size[name]
        if room > 0:
            self.kept[name].append(data[:room])
        if len(data) > room:
            self.truncated = True  # keep reading, so the command never blocks on a full pipe
        self.size[name] += len(data)

    def kill(self) -> None:
        if self.status is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        if self.killed_at is None:
            self.killed_at = time.monotonic()


class Helper:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.selector = selectors.DefaultSelector()
        self.selector.register(sock, selectors.EVENT_READ, None)
        self.jobs: dict[object, Job] = {}

    def serve(self) -> None:
        _send(self.sock, {"ready": True})
        while True:
            for key, _ in self.selector.select(self._next_deadline()):
                if key.data is None:
                    if not self._request():
                        for job in self.jobs.values():
                            job.kill()
                        return
                    continue
                what, job = key.data
                if what == "exit":
                    job.status = job.proc.wait()
                    self.selector.unregister(key.fd)
                    os.close(key.fd)
                else:
                    self._read(key.fd, job)
                self._finish_if_done(job)
            self._give_up_held_pipes()

    # ---- requests ------------------------------------------------------------------
    def _request(self) -> bool:
        """Handle one message from the bot; False when the bot is gone."""
        try:
            data, fds, _, _ = socket.recv_fds(self.sock, _MAX_MESSAGE, 4)
        except OSError:
            return False
        for fd in fds:  # the bot passes none; anything passed is not ours to keep
            os.close(fd)
        if not data:
            return False
        try:
            request = json.loads(data)
        except ValueError:
            return True
        if not isinstance(request, dict):
            return True
        if "kill" in request:
            job = self.jobs.get(request["kill"])
            if job is not None:
                job.kill()
            return True
        self._start(request)
        return True

    def _start(self, request: dict[str, Any]) -> None:
        ident, argv, cwd = request.get("id"), request.get("argv"), request.get("cwd")
        env, cap = request.get("env"), request.get("cap")
        if not (
            isinstance(argv, list)
            and argv
            and all(isinstance(a, str) for a in argv)
            and isinstance(cwd, str)
            and isinstance(env, dict)
            and isinstance(cap, int)
        ):
            _send(self.sock, {"id": ident, "error": "cannot_execute", "detail": "malformed request"})
            return
        try:
            proc: subprocess.Popen[bytes] = subprocess.Popen(  # argv from the bot, never a shell
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group, killed whole on timeout
                # no preexec_fn: it would turn the vfork into a fork and cost 2.5 ms a command
            )
        except FileNotFoundError as exc:
            kind = "cannot_execute" if exc.filename == cwd else "not_found"
            _send(self.sock, {"id": ident, "error": kind, "detail": exc.strerror or "not found"})
            return
        except OSError as exc:
            _send(self.sock, {"id": ident, "error": "cannot_execute", "detail": exc.strerror or str(exc)})
            return
        job = Job(ident, proc, cap)
        self.jobs[ident] = job
        for name, stream in (("out", proc.stdout), ("err", proc.stderr)):
            assert stream is not None
            fd = os.dup(stream.fileno())
            stream.close()
            os.set_blocking(fd, False)
            job.open[fd] = name
            self.selector.register(fd, selectors.EVENT_READ, ("read", job))
        self.selector.register(os.pidfd_open(proc.pid), selectors.EVENT_READ, ("exit", job))
        _send(self.sock, {"id": ident, "pid": proc.pid})

    # ---- output ---------------------------------------------------------------------
    def _read(self, fd: int, job: Job) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            job.take(job.open[fd], data)
        else:
            self._close(fd, job)

    def _close(self, fd: int, job: Job) -> None:
        self.selector.unregister(fd)
        os.close(fd)
        del job.open[fd]

    def _finish_if_done(self, job: Job) -> None:
        if job.status is None or job.open:
            return
        del self.jobs[job.ident]
        for name in ("out", "err"):
            text = b"".join(job.kept[name]).decode("utf-8", "replace")
            for start in range(0, len(text), _PART):
                _send(self.sock, {"id": job.ident, name: text[start : start + _PART]})
        _send(self.sock, {"id": job.ident, "exit": job.status, "truncated": job.truncated})

    def _next_deadline(self) -> float | None:
        held = [j.killed_at + GRACE for j in self.jobs.values() if j.killed_at is not None and j.open]
        return max(0.0, min(held) - time.monotonic()) if held else None

    def _give_up_held_pipes(self) -> None:
        now = time.monotonic()
        for job in list(self.jobs.values()):
            if job.killed_at is not None and job.status is not None and now >= job.killed_at + GRACE:
                for fd in list(job.open):
                    self._close(fd, job)
                self._finish_if_done(job)


def main(fd: int) -> None:
    _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    Helper(socket.socket(fileno=fd)).serve()


if __name__ == "__main__":
    main(int(sys.argv[1]))
