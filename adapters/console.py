"""The console: the embedded default adapter (`orchestrator chat` and `orchestrator ask`).

Shows what the chat adapters show: thinking and the answer as they stream, each tool call
with a short result, an approval prompt for every risky action. The approver is the local
user; a line `y`/`yes` approves, anything else or end of input denies. When stdin is
not a terminal the same lines are read from it.

At a terminal, lines are edited with prompt_toolkit (arrows, history kept in the data dir
when a path is given, Ctrl-R search); Ctrl-C clears the line being typed, or cancels the
run in flight at once (its last line says so; an approval it waited for expires with it);
Ctrl-D on an empty line leaves.

SIGTERM while a question runs stops it the way the bot stops its runs (`Agent.stop_runs`):
the run ends with the line saying so, an approval prompt is given up (not denied), and the
command exits with status 143. Input is read without a thread where it can be (terminals,
pipes), so nothing is left blocked on stdin when the command exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Literal

from adapters import texts
from core.agent import Agent
from core.approval import ApprovalGate, Outcome
from core.events import (
    Answer,
    ApprovalRequested,
    ApprovalResolved,
    Event,
    Failed,
    InputFile,
    Partial,
    Phase,
    Request,
    Thinking,
    ToolCall,
    ToolResult,
    WorkflowPhase,
)
from core.runs import CANCELLED, INTERRUPTION_LINES
from core.store.models import Run

PLATFORM = "console"
EXIT_STOPPED = 128 + signal.SIGTERM  # what a shell reports for a command ended by SIGTERM
EXIT_CANCELLED = 128 + signal.SIGINT  # `ask` cancelled with Ctrl-C
INTERRUPTED_ON_START = "Your question “{text}” (run #{id}) was interrupted: {line}"


class ConsoleAdapter:
    """The terminal: `ask(text)` for one question, `chat()` for a conversation. Steps are printed
    as they stream, an approval is a `[y/N]` prompt decided through the gate as this user, Ctrl-C
    cancels the run and SIGTERM stops it (the run is stored as interrupted either way)."""

    def __init__(
        self,
        agent: Agent,
        gate: ApprovalGate,
        *,
        out: IO[str] | None = None,
        err: IO[str] | None = None,
        inp: IO[str] | None = None,
        user: str | None = None,
        color: bool | None = None,
        history: Path | None = None,
    ) -> None:
        self.agent = agent
        self.gate = gate
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.inp = inp or sys.stdin
        self.user = user or getpass.getuser()
        self.color = self.out.isatty() if color is None else color
        self.stopped = False  # SIGTERM arrived: what runs ends, nothing new starts
        self._stop = asyncio.Event()
        self._pending = b""  # bytes read from a descriptor after the last full line
        self._eof = False
        self._on_sigterm = False  # the handler is installed (chat() around ask())
        self._interrupted = False  # the last prompt at a terminal ended with Ctrl-C
        self.history = history  # where typed lines are kept between sessions (a terminal only)
        self._editor: Any = None  # the prompt_toolkit session, made on the first prompt at a terminal
        self._current: Request | None = None  # the question in flight
        self._cancelled = False  # Ctrl-C cancelled the question in flight
        self._live: Literal["thinking", "text"] | None = None  # the kind of piece the line ends in
        self._streamed: dict[str, str] = {"thinking": "", "text": ""}  # this turn, as shown live

    # ---- output --------------------------------------------------------------
    def _style(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def _print(self, text: str = "", *, stream: IO[str] | None = None) -> None:
        print(text, file=stream or self.out, flush=True)

    def _at_terminal(self) -> bool:
        try:
            return self.inp.isatty() and self.out.isatty()
        except (AttributeError, ValueError):
            return False

    async def _readline(self, prompt: str) -> str | None:
        """A line, or None at the end of input or once stopped. At a terminal Ctrl-C gives "" and
        sets `_interrupted` (the caller decides: clear the line, or cancel the run)."""
        if self._at_terminal():
            return await self._edit_line(prompt)
        self.out.write(prompt)
        self.out.flush()
        line = await self._read_line()
        if self.stopped:
            return None
        if not self.inp.isatty() and line:
            self._print(line.rstrip("\n"))  # echo piped answers so a transcript reads naturally
        return line if line else None

    async def _edit_line(self, prompt: str) -> str | None:
        from prompt_toolkit import PromptSession  # a terminal only: not loaded for pipes
        from prompt_toolkit.history import FileHistory, History, InMemoryHistory

        if self._editor is None:
            history: History = InMemoryHistory()
            if self.history is not None:
                with contextlib.suppress(OSError):
                    self.history.parent.mkdir(parents=True, exist_ok=True)
                    self.history.touch(mode=0o600, exist_ok=True)
                    history = FileHistory(str(self.history))
            self._editor = PromptSession(history=history, enable_history_search=True)
        self._interrupted = False
        editor = self._editor

        async def line() -> str | None:
            # Caught here, in the task: a KeyboardInterrupt leaving a task would stop the loop itself.
            try:
                return str(await editor.prompt_async(prompt)) + "\n"
            except KeyboardInterrupt:
                self._interrupted = True
                return ""
            except EOFError:
                return None

        typed = asyncio.ensure_future(line())
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait([typed, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not typed.done():  # SIGTERM: give the terminal back as it was
            typed.cancel()
            with contextlib.suppress(BaseException):
                await typed
            return None
        return typed.result()

    async def _read_line(self) -> str:
        """Like `readline()`: a line with its newline, the last one without, "" at the end."""
        try:
            fd = self.inp.fileno()
        except (AttributeError, OSError, ValueError):
            return self.inp.readline()  # in memory (tests): never blocks
        loop = asyncio.get_running_loop()
        while b"\n" not in self._pending and not self._eof:
            got: asyncio.Future[object] = loop.create_future()

            def readable(got: asyncio.Future[object] = got) -> None:
                chunk = os.read(fd, 4096)
                self._pending += chunk
                self._eof = not chunk
                if (self._eof or b"\n" in chunk) and not got.done():
                    got.set_result(None)

            try:
                loop.add_reader(fd, readable)
            except (OSError, ValueError, NotImplementedError):  # a regular file: reading it cannot hang
                return await asyncio.to_thread(self.inp.readline)
            stop: asyncio.Future[object] = asyncio.ensure_future(self._stop.wait())
            try:
                await asyncio.wait([got, stop], return_when=asyncio.FIRST_COMPLETED)
            finally:
                loop.remove_reader(fd)
                stop.cancel()
            if self.stopped:
                return ""
        if b"\n" in self._pending:
            raw, _, self._pending = self._pending.partition(b"\n")
            return raw.decode(errors="replace") + "\n"
        raw, self._pending = self._pending, b""
        return raw.decode(errors="replace")

    # ---- stopping ------------------------------------------------------------------
    def stop(self) -> None:
        """SIGTERM: the run in flight ends with its line; the prompt waiting for input gives up."""
        self.stopped = True
        self._stop.set()
        self.agent.stop_runs()

    @contextlib.contextmanager
    def _stop_on_sigterm(self) -> Iterator[None]:
        if self._on_sigterm:
            yield
            return
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGTERM, self.stop)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
            yield
            return
        self._on_sigterm = True
        try:
            yield
        finally:
            self._on_sigterm = False
            loop.remove_signal_handler(signal.SIGTERM)

    def announce_interrupted(self, runs: Sequence[Run]) -> None:
        """At start-up: the console questions a crash interrupted (other platforms tell their threads)."""
        for run in runs:
            if run.platform == PLATFORM:
                text = texts.short(" ".join(run.request_text.split()), lines=1, chars=60)
                self._print(INTERRUPTED_ON_START.format(text=text, id=run.id, line=run.error), stream=self.err)

    def _show_partial(self, ev: Partial) -> None:
        """A streamed piece, printed as it comes: thinking dim after "… ", text as the answer will read."""
        if ev.kind != self._live:
            if self._live is not None:
                self.out.write("\n")
            self.out.write(self._style("… ", "2") if ev.kind == "thinking" else "\n")
            self._live = ev.kind
        self.out.write(self._style(ev.text, "2") if ev.kind == "thinking" else ev.text)
        self.out.flush()
        self._streamed[ev.kind] += ev.text

    def _end_live(self) -> None:
        if self._live is not None:
            self._print()
            self._live = None

    def _after_streamed(self, text: str) -> str:
        """The end of `text` past what streamed of it, when what streamed is its beginning."""
        shown = self._streamed["text"].split()
        if not shown or text.split()[: len(shown)] != shown:
            return ""
        position = 0
        for word in shown:
            position = text.index(word, position) + len(word)
        return text[position:].strip()

    def _was_streamed(self, text: str, *kinds: str) -> bool:
        words = text.split()
        return bool(words) and any(words == self._streamed[kind].split() for kind in kinds)

    async def render(self, ev: Event) -> None:
        if isinstance(ev, Partial):
            self._show_partial(ev)
            return
        self._end_live()
        streamed = self._was_streamed(ev.text, "thinking", "text") if isinstance(ev, Thinking) else False
        if isinstance(ev, Answer):
            streamed = self._was_streamed(ev.text, "text")
            if not streamed and (rest := self._after_streamed(ev.text)):
                self._streamed = {"thinking": "", "text": ""}
                self._print()
                self._print(rest)  # what the agent added to the streamed answer (a workflow's verdict)
                return
        if not isinstance(ev, Thinking | Phase):  # a workflow's verdict comes between the answer and its end
            self._streamed = {"thinking": "", "text": ""}  # the turn is over
        if streamed:
            return  # already on screen, as it streamed
        match ev:
            case Thinking(text=text):
                self._print(self._style("… " + texts.short(text, lines=12, chars=1200), "2"))
            case ToolCall(tool=tool, args=args):
                self._print(self._style(f"→ {tool}({texts.format_args(args)})", "36"))
            case ToolResult(ok=ok):
                mark = "←" if ok else "✗"
                self._print(self._style(f"{mark} " + texts.short(ev.shown).replace("\n", "\n  "), "2" if ok else "33"))
            case ApprovalRequested():
                await self._ask_approval(ev)
            case ApprovalResolved():
                self._print(self._style(texts.resolution_line(ev), "32" if ev.approved else "33"))
            case Phase(phase=WorkflowPhase.COMPLETE, verdict=verdict):
                self._print(self._style(texts.phase_line(ev, chars=2000), "1;32" if verdict == "PASS" else "1;31"))
            case Phase(phase=phase, text=text):
                self._print(self._style(f"== {phase.value} ==", "1"))
                if text:
                    self._print("  " + text.replace("\n", "\n  "))
            case Answer(text=text):
                self._print()
                self._print(text)
            case Failed(error=error) if error in INTERRUPTION_LINES:
                self._print(error, stream=self.err)
            case Failed(error=error):
                self._print(f"error: {error}", stream=self.err)

    async def _ask_approval(self, ev: ApprovalRequested) -> None:
        self._print()
        self._print(self._style(texts.approval_header(ev), "1;33"))
        if ev.detail_kind == "argv":
            self._print(f"  $ {ev.detail}")
        else:
            self._print(ev.detail)
        line = await self._readline("Approve? [y/N] ")
        if self.stopped:
            self._print()
            return  # given up, not denied: the run ends as stopped and the approval expires with it
        if self._interrupted:
            self._cancel()  # Ctrl-C at the prompt: the run ends, the approval expires with it
            return
        approve = line is not None and line.strip().lower() in {"y", "yes"}
        result = await self.gate.decide(
            ev.approval_id,
            platform=PLATFORM,
            user_id=self.user,
            approve=approve,
            reason="" if approve else ("no input" if line is None else "denied at the console"),
        )
        if result.outcome not in {Outcome.APPROVED, Outcome.DENIED}:
            self._print(f"({result.message})", stream=self.err)

    # ---- entry points ----------------------------------------------------------
    def request(self, text: str, thread: str, attachments: tuple[InputFile, ...] = ()) -> Request:
        return Request(
            platform=PLATFORM, user_id=self.user, user_name=self.user, channel="console", thread=thread,
            text=text, is_private=True, attachments=attachments,
        )  # fmt: skip

    def _cancel(self) -> None:
        """Ctrl-C while a question runs: it ends at once, with the line saying so."""
        if self._current is not None and self.agent.stop_conversation(self._current.conversation_key, CANCELLED):
            self._cancelled = True

    @contextlib.contextmanager
    def _cancel_on_sigint(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, self._cancel)
        except (NotImplementedError, RuntimeError, ValueError):
            yield
            return
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    async def ask(self, text: str, *, thread: str | None = None, attachments: tuple[InputFile, ...] = ()) -> int:
        """One question; returns the exit status (0 answered, 1 failed, 130 cancelled with Ctrl-C,
        143 stopped by SIGTERM)."""
        status = 1
        self._current = self.request(text, thread or f"ask-{time.time_ns()}", attachments)
        self._cancelled = False
        try:
            with self._stop_on_sigterm(), self._cancel_on_sigint():
                async for ev in self.agent.run(self._current):
                    await self.render(ev)
                    if isinstance(ev, Answer):
                        status = 0
        finally:
            self._current = None
        if self.stopped:
            return EXIT_STOPPED
        return EXIT_CANCELLED if self._cancelled else status

    async def chat(self) -> int:
        thread = f"chat-{time.time_ns()}"
        interactive = self.inp.isatty()
        if interactive:
            self._print("AI Orchestrator — ask about this host. Empty line or Ctrl-D to leave.")
        status = 0
        with self._stop_on_sigterm():
            while not self.stopped:
                line = await self._readline("you> " if interactive else "")
                if line == "" and self._interrupted:
                    continue  # Ctrl-C at the prompt clears the line
                if line is None or not line.strip() or line.strip() in {"exit", "quit", "/exit"}:
                    break
                status = await self.ask(line.strip(), thread=thread)
                if status == EXIT_CANCELLED:
                    status = 0  # a cancelled question does not end the conversation
        return EXIT_STOPPED if self.stopped else status
