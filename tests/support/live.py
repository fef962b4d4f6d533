"""Test support for live runs: an agent stand-in that yields exactly the events a test hands it.

The real agent (core.agent) streams a model's turn as `Partial` pieces, then stores and
yields the completed steps. Where a test needs to see the thread *between* two events (the
thinking visible before the turn ends), or a stream faster than any model, `EventFeed` takes
the agent's place in the adapter: each event is handed over by the test, in order, when the
test says so. Everything else (the adapter, the outbox, the store, the platform stand-in) is
real.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterable

from core.events import Answer, Event, Partial, Request, Thinking, ToolCall, ToolResult

_runs = itertools.count(900)


class EventFeed:
    """An `AgentRunner` whose runs yield what `give` hands over, until `end`."""

    def __init__(self) -> None:
        self.run_id = next(_runs)
        self.requests: list[Request] = []
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._taken = asyncio.Event()

    async def run(self, request: Request) -> AsyncIterator[Event]:
        self.requests.append(request)
        while (ev := await self._queue.get()) is not None:
            yield ev
            if self._queue.empty():
                self._taken.set()

    def give(self, *events: Event) -> None:
        self._taken.clear()
        for ev in events:
            self._queue.put_nowait(ev)

    def end(self) -> None:
        self._queue.put_nowait(None)

    async def taken(self) -> None:
        """Until the adapter has taken (and rendered) everything handed over so far."""
        while not self._queue.empty() or not self._taken.is_set():
            await self._taken.wait()
            await asyncio.sleep(0)

    # ---- events as the agent makes them -----------------------------------------------------
    def thinking_pieces(self, text: str) -> list[Partial]:
        """`text` as the model streams it: a word a piece."""
        return [Partial(self.run_id, "thinking", word) for word in _pieces(text)]

    def draft_pieces(self, text: str) -> list[Partial]:
        return [Partial(self.run_id, "text", word) for word in _pieces(text)]

    def thought(self, text: str) -> Thinking:
        return Thinking(self.run_id, text)

    def call(self, n: int, command: str) -> ToolCall:
        return ToolCall(self.run_id, f"{self.run_id}.{n}", "run_command", {"command": command})

    def result(self, n: int, output: str, *, ok: bool = True) -> ToolResult:
        return ToolResult(self.run_id, f"{self.run_id}.{n}", "run_command", ok, output)

    def answer(self, text: str) -> Answer:
        return Answer(self.run_id, text)


def _pieces(text: str) -> Iterable[str]:
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
