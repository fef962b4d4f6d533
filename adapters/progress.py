"""One progress message per run, edited as steps arrive, within platform rate limits.

Both chat adapters use this: `Pacer` spaces calls per channel (Discord: 5 creates-or-edits
per 5 s), and `ProgressView` coalesces steps so a busy run never waits on its own edits.
The view may condense (it shows the latest steps); the store keeps every step in full.
The view's sink is the outbox, which delivers (and coalesces again) at the platform's pace;
a sink that fails does not stop the view: it tries again with the newest text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from adapters import texts
from adapters.texts import LiveKind, live_line, step_line
from core.events import Event

log = logging.getLogger(__name__)


class Pacer:
    """At most `max_ops` calls per `window` seconds per key (a channel)."""

    def __init__(self, max_ops: int, window: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_ops = max_ops
        self.window = window
        self.clock = clock
        self._stamps: dict[str, deque[float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def acquire(self, key: str) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            stamps = self._stamps.setdefault(key, deque())
            while True:
                now = self.clock()
                while stamps and now - stamps[0] >= self.window:
                    stamps.popleft()
                if len(stamps) < self.max_ops:
                    stamps.append(now)
                    return
                await asyncio.sleep(self.window - (now - stamps[0]) + 0.001)

    def delay_all(self, key: str, seconds: float) -> None:
        """After a 429: make the next calls on this key wait `seconds`."""
        stamps = self._stamps.setdefault(key, deque())
        until = self.clock() + seconds - self.window
        stamps.clear()
        stamps.extend([until] * self.max_ops)


class ThreadSink(Protocol):
    async def post(self, text: str) -> str: ...
    async def edit(self, message_id: str, text: str) -> None: ...


class ProgressView:
    """Coalesced edits of one message; `finish()` waits for the last edit to be handed over.

    Besides the steps, the message may show a live line: the latest words of the model's current
    turn (`live`), replaced by the turn's step once it ends. A live line alone is shown at most
    every `live_every` seconds (a step goes out at once), so a fast stream is one edit per
    interval with the newest text, never an edit per piece. `replace` gives the message its final
    text instead (already in the platform's markup: an answer, say); `escape` is applied to the
    progress text only.

    The flusher survives a failing sink: it logs, waits (`retry_delay`, doubling up to
    `max_retry_delay`) and tries again with the newest text. Once closed it gives up after
    `final_attempts` failures in a row, so a run can always end."""

    def __init__(
        self,
        sink: ThreadSink,
        channel: str,
        *,
        pacer: Pacer | None = None,
        header: str = texts.WORKING,
        limit: int = 1800,
        max_lines: int = 15,
        escape: Callable[[str], str] = str,
        live_every: float = 0.0,
        live_chars: int = 300,
        retry_delay: float = 0.5,
        max_retry_delay: float = 30.0,
        final_attempts: int = 3,
    ) -> None:
        self.sink = sink
        self.pacer = pacer
        self.channel = channel
        self.header = header
        self.limit = limit
        self.max_lines = max_lines
        self.escape = escape
        self.live_every = live_every
        self.live_chars = live_chars
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.final_attempts = final_attempts
        self.lines: list[str] = []
        self.message_id: str | None = None
        self._live: str | None = None  # the live line, when the model is thinking or writing
        self._final: str | None = None  # the message's final text, when `replace` gave one
        self._version = 0  # bumped by every change
        self._shown = 0  # the version the sink has
        self._last_shown = float("-inf")  # monotonic time of the last hand-over
        self._dirty = asyncio.Event()
        self._urgent = asyncio.Event()  # a change that should not wait for `live_every`
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def opened(self) -> bool:
        """Whether the message exists, or is on its way (something was shown)."""
        return self._task is not None

    def render(self) -> str:
        if self._final is not None:
            return self._final
        shown = self.lines[-self.max_lines :]
        hidden = len(self.lines) - len(shown)
        live = [self._live] if self._live else []
        body = ([texts.EARLIER_STEPS.format(hidden=hidden)] if hidden else []) + shown
        text = "\n".join([self.header, *body, *live])
        while len(text) > self.limit and len(body) > 1:
            body = body[1:]
            text = "\n".join([self.header, *body, *live])
        return text[: self.limit]

    def add(self, ev: Event) -> None:
        line = step_line(ev)
        if line is None:
            return
        self.lines.append(line)
        self._live = None  # the step takes the live line's place
        self._changed(urgent=True)

    def live(self, kind: LiveKind, text: str) -> None:
        """Show the latest words of the current turn (`text`: all of it so far)."""
        self._live = live_line(kind, text, self.live_chars)
        self._changed(urgent=False)

    def replace(self, text: str) -> None:
        """The message's final text, in the platform's markup (the answer, when only the live line
        was ever shown)."""
        self._final = text
        self._live = None
        self._changed(urgent=True)

    def _changed(self, *, urgent: bool) -> None:
        self._version += 1
        self._dirty.set()
        if urgent:
            self._urgent.set()
        if self._task is None:
            self._task = asyncio.create_task(self._flusher(), name=f"progress-{self.channel}")

    async def _flusher(self) -> None:
        failures = 0
        while True:
            await self._dirty.wait()
            wait = self._last_shown + self.live_every - time.monotonic()
            if wait > 0 and not self._urgent.is_set() and not self._closed:
                try:  # a live line alone waits its turn; a step or the end cuts the wait short
                    await asyncio.wait_for(self._urgent.wait(), wait)
                except TimeoutError:
                    pass
            if self.pacer is not None:
                await self.pacer.acquire(self.channel)
            self._dirty.clear()
            self._urgent.clear()
            version = self._version
            try:
                await self._show(self.render() if self._final is not None else self.escape(self.render()))
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                self._dirty.set()  # still to show: next time, with the newest text
                self._urgent.set()
                if self._closed and failures >= self.final_attempts:
                    log.error("progress in %s: giving up after %d failures", self.channel, failures, exc_info=True)
                    return
                delay = min(self.max_retry_delay, self.retry_delay * 2 ** (failures - 1))
                log.warning("progress in %s: update failed; trying again in %.1f s", self.channel, delay, exc_info=True)
                await asyncio.sleep(delay)
                continue
            failures = 0
            self._shown = version
            self._last_shown = time.monotonic()
            if self._closed and not self._dirty.is_set():
                return

    async def _show(self, text: str) -> None:
        if self.message_id is None:
            self.message_id = await self.sink.post(text)
        else:
            await self.sink.edit(self.message_id, text)

    async def finish(self) -> None:
        """Close the view: the last text is handed to the sink before this returns (safe twice). A
        closed view shows no live line: the turn it showed is over."""
        if self._live is not None:
            self._live = None
            if self._task is not None:
                self._changed(urgent=True)
        self._closed = True
        self._urgent.set()
        if self._task is None:
            return
        if not self._dirty.is_set() and self._shown == self._version:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            return
        await self._task


def split_message(text: str, limit: int) -> list[str]:
    """Split on line boundaries under `limit`, closing and reopening ``` code blocks across parts."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    current: list[str] = []
    size = 0
    fence = ""  # the opening fence line while inside a code block
    budget = limit - 8  # room for a closing fence
    for raw in text.splitlines():
        pieces = [raw[i : i + budget - 8] for i in range(0, len(raw), budget - 8)] or [""]
        for line in pieces:
            if size + len(line) + 1 > budget and current:
                if fence:
                    current.append("```")
                parts.append("\n".join(current))
                current = [fence] if fence else []
                size = len(fence) + 1 if fence else 0
            current.append(line)
            size += len(line) + 1
            if line.strip().startswith("```"):
                fence = "" if fence else line.strip()
    if current:
        parts.append("\n".join(current))
    return parts
