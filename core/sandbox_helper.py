"""The program that runs inside a long-lived sandbox and starts free commands in it.

`core.sandbox` starts it once, as `python -I -S -c <this file's text> FD` under the same
bubblewrap view a single command would get (everything read-only, secrets hidden, no
capabilities, no new privileges, environment cleared), so each command costs a fork and an
exec instead of a new set of namespaces. It imports nothing from the project: the file is
read by the bot and passed as text, so it runs even when the project lies in a directory
the sandbox hides.

The protocol, on the SOCK_SEQPACKET socket FD, one JSON object per message:

- bot -> helper: {"id", "argv", "cwd", "env"} with two file descriptors (stdout, stderr),
  or {"kill": id};
- helper -> bot: {"ready": true} once; then per command {"id", "pid"} or
  {"id", "error": "not_found" | "cannot_execute", "detail"}, and {"id", "exit": status}.

When the bot's end closes (the bot stopped, or died: the kernel closes its end), every command
still running is killed with its process group and the helper exits. (The session is started
without bubblewrap's --die-with-parent for that reason: the helper must outlive the bot long
enough to kill what it started.) It also makes itself non-dumpable, so a command
cannot ptrace it or read its memory to change what later commands run.
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
from typing import Any

_PR_SET_DUMPABLE = 4
_MAX_MESSAGE = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)


def _send(sock: socket.socket, message: dict[str, object]) -> None:
    sock.sendall(json.dumps(message).encode())


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass


def _start(sock: socket.socket, request: dict[str, Any], fds: list[int]) -> subprocess.Popen[bytes] | None:
    ident, argv, cwd, env = request.get("id"), request.get("argv"), request.get("cwd"), request.get("env")
    try:
        well_formed = (
            len(fds) == 2
            and isinstance(argv, list)
            and bool(argv)
            and all(isinstance(a, str) for a in argv)
            and isinstance(cwd, str)
            and isinstance(env, dict)
        )
        if not well_formed or not isinstance(argv, list):  # (the second for the type checker)
            _send(sock, {"id": ident, "error": "cannot_execute", "detail": "malformed request"})
            return None
        try:
            proc: subprocess.Popen[bytes] = subprocess.Popen(  # argv from the bot, never a shell
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=fds[0],
                stderr=fds[1],
                start_new_session=True,  # its own process group, killed whole on timeout
                # no preexec_fn: it would turn the vfork into a fork and cost 2.5 ms a command
            )
        except FileNotFoundError as exc:
            kind = "cannot_execute" if exc.filename == cwd else "not_found"
            _send(sock, {"id": ident, "error": kind, "detail": exc.strerror or "not found"})
            return None
        except OSError as exc:
            _send(sock, {"id": ident, "error": "cannot_execute", "detail": exc.strerror or str(exc)})
            return None
    finally:
        for fd in fds:
            os.close(fd)
    _send(sock, {"id": ident, "pid": proc.pid})
    return proc


def main(fd: int) -> None:
    _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    sock = socket.socket(fileno=fd)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, None)
    running: dict[object, tuple[subprocess.Popen[bytes], int]] = {}
    _send(sock, {"ready": True})
    while True:
        for key, _ in selector.select():
            if key.data is not None:  # a command's pidfd: it exited
                ident = key.data
                proc, pidfd = running.pop(ident)
                selector.unregister(pidfd)
                os.close(pidfd)
                _send(sock, {"id": ident, "exit": proc.wait()})
                continue
            try:
                data, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 2)
            except OSError:
                data, fds = b"", []
            if not data:  # the bot is gone: so are its commands
                for proc, _ in running.values():
                    _kill(proc)
                return
            try:
                request = json.loads(data)
            except ValueError:
                request = None
            if not isinstance(request, dict):
                for fd in fds:
                    os.close(fd)
                continue
            if "kill" in request:
                for fd in fds:
                    os.close(fd)
                entry = running.get(request["kill"])
                if entry is not None:
                    _kill(entry[0])
                continue
            started = _start(sock, request, fds)
            if started is not None:
                pidfd = os.pidfd_open(started.pid)
                running[request["id"]] = (started, pidfd)
                selector.register(pidfd, selectors.EVENT_READ, request["id"])


if __name__ == "__main__":
    main(int(sys.argv[1]))
