"""The console: the embedded default adapter (`orchestrator chat` and `orchestrator ask`).

Shows what the chat adapters show: thinking, each tool call with a short result, an
approval prompt for every risky action, and the answer. The approver is the local
user; a line `y`/`yes` approves, anything else or end of input denies. When stdin is
not a terminal the same lines are read from it.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
import time
from typing import IO

from adapters import texts
from core.agent import Agent
from core.approval import ApprovalGate
from core.events import (
    Answer,
    ApprovalRequested,
    ApprovalResolved,
    Event,
    Failed,
    Request,
    Thinking,
    ToolCall,
    ToolResult,
)

PLATFORM = "console"


class ConsoleAdapter:
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
    ) -> None:
        self.agent = agent
        self.gate = gate
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.inp = inp or sys.stdin
        self.user = user or getpass.getuser()
        self.color = self.out.isatty() if color is None else color

    # ---- output --------------------------------------------------------------
    def _style(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def _print(self, text: str = "", *, stream: IO[str] | None = None) -> None:
        print(text, file=stream or self.out, flush=True)

    async def _readline(self, prompt: str) -> str | None:
        self.out.write(prompt)
        self.out.flush()
        line = await asyncio.to_thread(self.inp.readline)
        if not self.inp.isatty() and line:
            self._print(line.rstrip("\n"))  # echo piped answers so a transcript reads naturally
        return line if line else None

    async def render(self, ev: Event) -> None:
        match ev:
            case Thinking(text=text):
                self._print(self._style("… " + texts.short(text, lines=12, chars=1200), "2"))
            case ToolCall(tool=tool, args=args):
                self._print(self._style(f"→ {tool}({texts.format_args(args)})", "36"))
            case ToolResult(ok=ok, output=output):
                mark = "←" if ok else "✗"
                self._print(self._style(f"{mark} " + texts.short(output).replace("\n", "\n  "), "2" if ok else "33"))
            case ApprovalRequested():
                await self._ask_approval(ev)
            case ApprovalResolved():
                self._print(self._style(texts.resolution_line(ev), "32" if ev.approved else "33"))
            case Answer(text=text):
                self._print()
                self._print(text)
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
        approve = line is not None and line.strip().lower() in {"y", "yes"}
        result = await self.gate.decide(
            ev.approval_id,
            platform=PLATFORM,
            user_id=self.user,
            approve=approve,
            reason="" if approve else ("no input" if line is None else "denied at the console"),
        )
        if result.outcome.value not in {"approved", "denied"}:
            self._print(f"({result.message})", stream=self.err)

    # ---- entry points ----------------------------------------------------------
    def request(self, text: str, thread: str) -> Request:
        return Request(
            platform=PLATFORM, user_id=self.user, user_name=self.user, channel="console", thread=thread,
            text=text, is_private=True,
        )  # fmt: skip

    async def ask(self, text: str, *, thread: str | None = None) -> int:
        """One question; returns the exit status (0 answered, 1 failed)."""
        status = 1
        async for ev in self.agent.run(self.request(text, thread or f"ask-{time.time_ns()}")):
            await self.render(ev)
            if isinstance(ev, Answer):
                status = 0
        return status

    async def chat(self) -> int:
        thread = f"chat-{time.time_ns()}"
        interactive = self.inp.isatty()
        if interactive:
            self._print("AI Orchestrator — ask about this host. Empty line or Ctrl-D to leave.")
        status = 0
        while True:
            line = await self._readline("you> " if interactive else "")
            if line is None or not line.strip() or line.strip() in {"exit", "quit", "/exit"}:
                return status
            status = await self.ask(line.strip(), thread=thread)
