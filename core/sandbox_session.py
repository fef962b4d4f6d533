"""One long-lived sandbox that starts many free commands: a fork and an exec each.

A new bubblewrap for every command costs about 6 ms of namespace and mount set-up on two
cores, which 400 conversations at once turn into seconds. A session builds the same view
once (the argv `Sandbox` would give a single command) with `core/sandbox_helper.py` inside,
and asks it to start each command. The only difference from a bubblewrap of its own is that
nothing is writable, not even /tmp, so one command can leave nothing for the next.

The session belongs to one event loop. It stops when the bot closes it, when its loop
closes, or when it has been idle for IDLE_SECONDS; the next command starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.process import ProcessResult

log = logging.getLogger(__name__)

IDLE_SECONDS = 30.0
MAX_REQUEST = 100_000  # bytes of JSON a request may take (the helper reads up to 1 MiB; argv is far smaller)
_RECEIVE = 1 << 17  # bytes: a helper message holds 16,000 characters of output, six bytes each at worst
_READY_TIMEOUT = 10.0
_REAP_GRACE = 2.0
_HELPER_SOURCE = (Path(__file__).with_name("sandbox_helper.py")).read_text(encoding="utf-8")


class SessionFailed(Exception):
    """The session cannot take a command (it did not start, or it stopped); run it alone."""


def python_candidates() -> tuple[str, ...]:
    """Pythons that can run the helper (3.9 or later), the bot's own first (not a venv's link)."""
    return (os.path.realpath(sys.executable), "/usr/bin/python3", "/usr/local/bin/python3")


class SandboxSession:
    def __init__(self, argv: Sequence[str]) -> None:
        """argv: bubblewrap's, ending with `--` and the Python to run the helper with."""
        self.key = tuple(argv)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[dict[str, object]]] = {}
        self._exits: dict[int, asyncio.Future[_Outcome]] = {}
        self._output: dict[int, dict[str, list[str]]] = {}
        self._ready: asyncio.Future[dict[str, object]] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._write_ready: asyncio.Future[None] | None = None
        self._kills: set[asyncio.Task[None]] = set()
        self._pids: dict[int, int] = {}
        self._retired = False
        self._why = ""  # the helper's last words, when it stopped on its own
        self.closed = False

    # ---- life ----------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ours = await asyncio.to_thread(self._spawn)  # fork/exec off the event loop
        ours.setblocking(False)
        self._loop, self._sock = loop, ours
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._receive)
        # A session its bot forgot (a loop closed under it) still stops when it is collected.
        if self._proc is not None:
            weakref.finalize(self, _stop, ours, self._proc)
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), _READY_TIMEOUT)
        except (TimeoutError, SessionFailed) as exc:
            why = self._why or self._stderr_tail() or str(exc) or "no answer"
            self.close()
            raise SessionFailed(f"the sandbox helper did not start ({why})") from exc
        self._arm_idle()

    def _spawn(self) -> socket.socket:
        """Start bubblewrap with the helper inside (a few ms, once); our end of its socket."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [*self.key, "-I", "-S", "-c", _HELPER_SOURCE, str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(theirs.fileno(),),
                env={},
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            raise SessionFailed(f"bubblewrap did not start: {exc}") from exc
        finally:
            theirs.close()
        return ours

    def _stderr_tail(self) -> str:
        proc = self._proc
        if proc is None or proc.stderr is None or proc.stderr.closed or proc.poll() is None:
            return ""
        lines = proc.stderr.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else ""

    def close(self) -> None:
        """Stop the helper; the commands it still runs are killed with their process groups."""
        if self.closed:
            return
        self.closed = True
        if self._idle is not None:
            self._idle.cancel()
        if self._sock is not None:
            with contextlib.suppress(Exception):
                if self._loop is not None and not self._loop.is_closed():
                    self._loop.remove_reader(self._sock.fileno())
            self._sock.close()  # the helper reads the end of the stream and kills what runs
        failure = SessionFailed("the sandbox session stopped")
        for future in [*self._waiting.values(), *([self._ready] if self._ready else [])]:
            if not future.done():
                future.set_exception(failure)
                future.exception()  # retrieved: nobody may be waiting on it any more
        for exit_future in self._exits.values():
            if not exit_future.done():
                exit_future.set_exception(failure)
                exit_future.exception()
        proc = self._proc
        if proc is not None:
            _reap(proc)
            with contextlib.suppress(OSError, ValueError):
                self._why = self._why or self._stderr_tail()
            if proc.stderr is not None:
                proc.stderr.close()

    def retire(self) -> None:
        """Take no new command; stop once the running ones are done."""
        self._retired = True
        self._arm_idle()

    def usable(self) -> bool:
        loop = asyncio.get_running_loop()
        return (
            not self.closed
            and not self._retired
            and self._loop is loop
            and self._proc is not None
            and self._proc.poll() is None
        )

    def _arm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._loop is None or self._exits or self.closed:
            return
        if self._retired:
            self.close()
        elif not self._loop.is_closed():
            self._idle = self._loop.call_later(IDLE_SECONDS, self.close)

    # ---- messages --------------------------------------------------------------
    def _receive(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(_RECEIVE)  # the largest message the helper sends fits
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the helper is gone: what it started must not outlive it
                self._kill_orphans()
                self.close()
                return
            try:
                message = json.loads(data)
                self._dispatch(message)
            except (ValueError, KeyError, TypeError):
                log.warning("the sandbox helper sent a malformed message; stopping it")
                self.close()
                return

    def _kill_orphans(self) -> None:
        """Kill the groups of commands whose end the helper never told (it sent every exit it
        reaped before its end, in order, so these pids still belong to our commands)."""
        for ident, pid in self._pids.items():
            exited = self._exits.get(ident)
            if exited is not None and not exited.done():
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)

    def _dispatch(self, message: dict[str, object]) -> None:
        if message.get("ready") is True:
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(message)
            return
        ident = int(message["id"])  # type: ignore[call-overload]
        for name in ("out", "err"):
            if name in message:
                self._output.setdefault(ident, {"out": [], "err": []})[name].append(str(message[name]))
                return
        if "exit" in message:
            future = self._exits.get(ident)
            parts = self._output.pop(ident, {"out": [], "err": []})
            if future is not None and not future.done():
                future.set_result(
                    _Outcome(
                        int(message["exit"]),  # type: ignore[call-overload]
                        "".join(parts["out"]),
                        "".join(parts["err"]),
                        bool(message.get("truncated")),
                    )
                )
            return
        if "pid" in message:
            self._pids[ident] = int(message["pid"])  # type: ignore[call-overload]
        waiting = self._waiting.pop(ident, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(message)

    async def _send(self, message: dict[str, object]) -> None:
        assert self._sock is not None and self._loop is not None
        data = json.dumps(message).encode()
        if len(data) > MAX_REQUEST:  # the helper reads at most that much a message
            raise SessionFailed(f"the request is {len(data)} bytes, more than a session message holds")
        while True:
            if self.closed:
                raise SessionFailed("the sandbox session stopped")
            try:
                self._sock.send(data)
                return
            except BlockingIOError:  # the helper is behind: wait with the others until it reads
                await asyncio.shield(self._writable())
            except OSError as exc:
                self.close()
                raise SessionFailed(f"the sandbox helper is gone ({exc})") from exc

    def _writable(self) -> asyncio.Future[None]:
        """One future for every sender waiting on a full socket (add_writer keeps one callback per fd)."""
        assert self._sock is not None and self._loop is not None
        if self._write_ready is None or self._write_ready.done():
            future: asyncio.Future[None] = self._loop.create_future()
            fd, loop = self._sock.fileno(), self._loop

            def ready() -> None:
                loop.remove_writer(fd)
                if not future.done():
                    future.set_result(None)

            loop.add_writer(fd, ready)
            self._write_ready = future
        return self._write_ready

    def _kill(self, ident: int) -> None:
        """Ask the helper to kill a command's process group (queued behind a full socket if need be)."""
        if self.closed or self._sock is None or self._loop is None:
            return
        try:
            self._sock.send(json.dumps({"kill": ident}).encode())
        except BlockingIOError:
            task = self._loop.create_task(self._send({"kill": ident}))
            self._kills.add(task)
            task.add_done_callback(self._kills.discard)
        except OSError:
            self.close()  # the helper is gone, and its commands with it

    # ---- one command -------------------------------------------------------------
    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: dict[str, str],
        timeout: float,  # noqa: ASYNC109 - a timeout must kill the process group
        output_cap: int,
    ) -> ProcessResult:
        """Run argv in the session. Raises SessionFailed only when nothing was started."""
        assert self._loop is not None
        argv = tuple(argv)
        ident = next(self._ids)
        started: asyncio.Future[dict[str, object]] = self._loop.create_future()
        exited: asyncio.Future[_Outcome] = self._loop.create_future()
        self._waiting[ident] = started
        self._exits[ident] = exited
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        try:
            request = {"id": ident, "argv": list(argv), "cwd": str(cwd), "env": env, "cap": output_cap}
            await self._send(request)
            reply = await started
            if "error" in reply:
                if reply["error"] == "not_found":
                    return ProcessResult(argv, None, "", f"command not found: {argv[0]}", not_found=True)
                return ProcessResult(argv, None, "", f"cannot execute {argv[0]}: {reply.get('detail', '')}")
            try:
                outcome = await asyncio.wait_for(asyncio.shield(exited), timeout)
            except SessionFailed:  # it started, so it must not run twice: say what happened
                return ProcessResult(argv, None, "", "killed: the sandbox session stopped while it ran")
            except TimeoutError:
                self._kill(ident)
                with contextlib.suppress(TimeoutError, SessionFailed):
                    await asyncio.wait_for(asyncio.shield(exited), _REAP_GRACE + 1)
                return ProcessResult(argv, None, "", f"timed out after {timeout:g} s and was killed", timed_out=True)
            return ProcessResult(argv, outcome.status, outcome.stdout, outcome.stderr, truncated=outcome.truncated)
        except asyncio.CancelledError:
            self._kill(ident)
            raise
        except BaseException:
            if not started.done():
                self._kill(ident)
            raise
        finally:
            self._waiting.pop(ident, None)
            self._exits.pop(ident, None)
            self._output.pop(ident, None)
            self._pids.pop(ident, None)
            self._arm_idle()


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: int
    stdout: str
    stderr: str
    truncated: bool


def _stop(sock: socket.socket, proc: subprocess.Popen[bytes]) -> None:
    sock.close()
    if proc.stderr is not None:
        proc.stderr.close()
    _reap(proc)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Wait for bubblewrap, which ends once the helper read the end of its socket; kill it if not."""
    try:
        proc.wait(timeout=0.5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
