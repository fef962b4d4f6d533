"""`orchestrator chat` at a real terminal (a pty): line editing and history, Ctrl-C clears the
line or cancels the run in flight at once, Ctrl-D leaves cleanly."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlmodel import select as sql_select

from core.runs import CANCELLED
from core.store import Store
from core.store.models import Run, RunStatus
from tests.fakes.ollama import FakeOllama, Reply

WAIT = 30.0
LEFT = "\x1b[D"
UP = "\x1b[A"


def _own_terminal() -> None:
    """In the child: a session of its own with the pty as its controlling terminal, so Ctrl-C
    typed there is SIGINT to it, as at a real terminal."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """The CLI on the follower side of a pty; what it prints is collected from the leader."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.fd, follower = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "chat"], env=env, cwd=cwd,
            stdin=follower, stdout=follower, stderr=follower, preexec_fn=_own_terminal,
        )  # fmt: skip
        os.close(follower)
        self.seen = ""

    def read(self) -> None:
        while select.select([self.fd], [], [], 0.02)[0]:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            if not data:
                return
            self.seen += data.decode(errors="replace")

    @property
    def text(self) -> str:
        """What the terminal shows, without its control sequences."""
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.seen)

    def until(self, predicate: Callable[[str], bool], what: str) -> None:
        """Wait until `predicate(text shown)` holds."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            self.read()
            if predicate(self.text):
                return
            if self.proc.poll() is not None:
                self.read()
                if predicate(self.text):
                    return
                break
        raise AssertionError(f"timed out waiting for {what}; the terminal shows:\n{self.text[-2000:]}")

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def prompts(self) -> int:
        """How many prompts the line editor has opened (each turns bracketed paste on)."""
        return self.seen.count("\x1b[?2004h")


@pytest.fixture
def terminal(tmp_path: Path, fake_ollama: FakeOllama) -> Iterator[Terminal]:
    root = tmp_path / "ws"
    root.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "SLACK_", "DISCORD_"))}
    env = base | {
        "ORCHESTRATOR_DATA_DIR": str(tmp_path / "data"),
        "OLLAMA_HOST": fake_ollama.url,
        "ORCHESTRATOR_FILE_ROOTS": str(root),
        "ORCHESTRATOR_MEMORY": "false",
        "ORCHESTRATOR_SCHEDULER": "false",
        "ORCHESTRATOR_CONSOLE_APPROVERS": "cli-user",
        "TERM": "xterm",
        "PROMPT_TOOLKIT_NO_CPR": "1",
    }
    term = Terminal(env, tmp_path)
    yield term
    if term.proc.poll() is None:
        term.proc.kill()
    term.proc.wait(WAIT)
    os.close(term.fd)


def questions(fake: FakeOllama) -> list[str]:
    return [next(m["content"] for m in reversed(r["messages"]) if m["role"] == "user") for r in fake.chat_requests]


def test_a_line_is_edited_with_the_arrows_and_the_last_one_comes_back_with_up(
    terminal: Terminal, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(content="It is 41% full."), Reply(content="Still 41%."))
    terminal.until(lambda s: terminal.prompts() >= 1, "the prompt")
    terminal.type("disk?" + LEFT * 5 + "why is the " + "\r")
    terminal.until(lambda s: "41% full" in s and terminal.prompts() >= 2, "the answer and the next prompt")
    terminal.type(UP + "\r")  # the same question again, from the history
    terminal.until(lambda s: "Still 41%" in s, "the second answer")
    assert questions(fake_ollama) == ["why is the disk?", "why is the disk?"]
    assert "^[[D" not in terminal.seen


def test_ctrl_c_clears_the_line_and_ctrl_d_leaves_cleanly(terminal: Terminal, fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply(content="Hello there."))
    terminal.until(lambda s: terminal.prompts() >= 1, "the prompt")
    terminal.type("rm everything")
    terminal.until(lambda s: "rm everything" in s, "the typed text")
    terminal.type("\x03")  # Ctrl-C: the line is dropped, a new prompt comes
    terminal.until(lambda s: terminal.prompts() >= 2, "a fresh prompt")
    terminal.type("hello\r")
    terminal.until(lambda s: "Hello there." in s and terminal.prompts() >= 3, "the answer")
    terminal.type("\x04")  # Ctrl-D on an empty line
    assert terminal.proc.wait(WAIT) == 0
    assert questions(fake_ollama) == ["hello"]


def test_ctrl_c_during_a_run_cancels_it_at_once_and_the_prompt_comes_back(
    terminal: Terminal, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    fake_ollama.script(Reply(thinking="Let me look at every file on this disk one by one", content="Done."))
    fake_ollama.stall_next(120, after=3)  # the model stops in the middle of its thinking
    terminal.until(lambda s: terminal.prompts() >= 1, "the prompt")
    terminal.type("why is the disk full?\r")
    terminal.until(lambda s: "Let me look" in s, "the thinking, live")
    terminal.type("\x03")  # Ctrl-C while the model is thinking
    terminal.until(lambda s: CANCELLED in s and terminal.prompts() >= 2, "the run cancelled and a new prompt")
    fake_ollama.release()
    assert terminal.proc.poll() is None, "Ctrl-C cancels the run, not the chat"
    store = Store(f"sqlite:///{tmp_path / 'data' / 'orchestrator.db'}")
    try:
        run = store.run_sync(lambda s: s.exec(sql_select(Run)).one())
    finally:
        store.engine.dispose()
    assert run.status == RunStatus.INTERRUPTED and run.error == CANCELLED
    terminal.type("\x04")
    assert terminal.proc.wait(WAIT) == 0
