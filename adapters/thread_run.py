"""One agent run shown in its conversation: the state machine both chat adapters share.

A run gets one progress stream, one message per approval request (with the approve and deny
reactions, its reference stored on the approval row as soon as the platform has it), and
the final answer or a one-line failure. Nothing is cut silently: long answers are split or
attached, long tool output is attached as a file.

The progress stream is either
- the platform's own live message (`LiveStream`: Slack's chat.*Stream), a timeline of tasks
  (the model thinking, each tool call) with the answer at the end, or
- one message edited as steps arrive (`ProgressView`): Discord, and Slack wherever streaming
  is refused. A stream that breaks mid-run hands the rest of the run to such a message.

While the model streams a turn, `Partial` pieces update a live part (the latest words of
its thinking or its draft: a progress message's last line, or a stream's task); the turn's
stored step then takes their place. A draft opens nothing until it is long enough to be
worth watching (and a stream, which would keep a task for it, shows only a long one), so a
short direct answer is just the answer; a long one is watched as it is written, in the
message that then becomes the answer (or in a stream's "Writing…" task).

The platform packages only translate (`ThreadPlatform`): markup and escaping, limits, the
approval message, the shape of an upload. Every post, edit, reaction and upload goes
through the outbox, so nothing here waits for the platform.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from adapters import texts
from adapters.progress import ProgressView, split_message
from adapters.texts import LiveKind, step_line, tail
from core.events import (
    Answer,
    ApprovalRequested,
    ApprovalResolved,
    Event,
    Failed,
    Partial,
    Phase,
    Thinking,
    ToolCall,
    ToolResult,
    WorkflowPhase,
)

log = logging.getLogger(__name__)

TaskStatus = Literal["pending", "in_progress", "complete", "error"]
Payload = dict[str, Any]
UNLIMITED = sys.maxsize


@dataclass(frozen=True, slots=True)
class Task:
    """One step of a run as a timeline shows it: the model thinking, or a tool call."""

    id: str
    title: str
    status: TaskStatus
    details: str = ""
    output: str = ""


@dataclass(frozen=True, slots=True)
class FileUpload:
    """A file posted in the thread (long output, a long answer, an approval's full detail)."""

    filename: str
    content: str
    title: str = ""


@dataclass(frozen=True, slots=True)
class ApprovalPost:
    """A platform's approval message: its text, what else its post carries (files, who to
    notify), a file to upload after it, and the reactions the bot adds (approve, deny)."""

    text: str
    reactions: tuple[str, str]
    extra: Payload = field(default_factory=dict)
    detail: FileUpload | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """A platform's sizes, in characters unless said otherwise."""

    progress_chars: int
    progress_lines: int
    answer_part: int  # one message of an answer
    answer_max_parts: int = UNLIMITED  # more parts than this: the answer is attached as a file
    answer_file_chars: int = UNLIMITED  # a longer answer is attached as a file
    output_attach_lines: int = 20  # tool output longer than this is attached in full
    output_attach_chars: int = 2000
    live_every: float = 1.0  # seconds between two edits that only move the live line
    live_chars: int = 300  # how much of the current turn the live line shows
    draft_opens_after: int = 300  # a draft alone shows nothing before it is this long
    stream_answer_chars: int = 12_000  # a longer answer leaves the stream and is posted


class LiveStream(Protocol):
    """A platform's own streaming message (stream-append): tasks shown live, the answer at the end."""

    @property
    def broken(self) -> bool:
        """The platform refused the stream (or it ended under us): show the rest another way."""
        ...

    def show(self, tasks: Sequence[Task]) -> None:
        """The newest state of these tasks; sent coalesced, at the platform's pace."""
        ...

    def when_broken(self, callback: Callable[[], None]) -> None:
        """Call `callback` as soon as the stream breaks (once)."""
        ...

    async def finish(self, tasks: Sequence[Task], *, answer: str = "", fallback: str = "") -> bool:
        """Hand the last task states and the answer (platform markup) over for good, through the
        outbox; `fallback` is posted instead should the stream be gone by then. False when the
        stream never started or broke: nothing was handed over."""
        ...


class ThreadTransport(Protocol):
    """The ways a run reaches its thread. All but `stream` queue in the outbox and return its key."""

    lane: str  # for logs: where the run is shown

    async def post(self, text: str, *, key: str = "", extra: Payload | None = None) -> str: ...

    async def edit(self, target: str, text: str, *, key: str = "") -> str: ...

    async def react(self, target: str, emoji: str, *, key: str = "") -> str: ...

    async def upload(self, file: FileUpload, *, comment: str = "", key: str = "") -> str: ...

    def stream(self) -> LiveStream | None:
        """The platform's live message for this run, where it has one (and may use it here)."""
        ...


class ThreadPlatform(ThreadTransport, Protocol):
    """A platform's side of a run: its transport, and how it writes what the run shows."""

    limits: Limits

    def progress_text(self, text: str) -> str:
        """A progress message (steps quote model and tool text) in the platform's markup."""
        ...

    def answer_text(self, markdown: str) -> str:
        """The model's Markdown as the platform shows it in a message."""
        ...

    def stream_text(self, text: str) -> str:
        """Text for the live stream (its own Markdown)."""
        ...

    def failure_line(self, error: str) -> str: ...

    def approval(self, ev: ApprovalRequested) -> ApprovalPost: ...

    def approval_key(self, approval_id: int) -> str:
        """The outbox key of an approval's message: queued once, whoever renders it again."""
        ...

    def resolution(self, ev: ApprovalResolved) -> str:
        """The outcome line of an approval (on its message, and posted when it was denied)."""
        ...

    async def named(self, ev: ApprovalResolved) -> ApprovalResolved:
        """The deciders by name, for the progress line."""
        ...


@dataclass
class _Turn:
    """What the model has streamed in its current turn."""

    number: int = 0
    thinking: str = ""
    draft: str = ""
    open: bool = False  # pieces are still arriving
    thinking_done: bool = False  # a stored step took the thinking's place
    draft_done: bool = False


class ThreadRun:
    """One run shown in its conversation, the same for Slack and Discord: `render(ev)` for each
    event turns it into the progress message (or Slack's live timeline), the approval post, the
    attachments of long output and the answer. What differs by platform is the `ThreadPlatform`
    it is given."""

    def __init__(self, platform: ThreadPlatform) -> None:
        self.platform = platform
        self.limits = platform.limits
        self.view = ProgressView(
            _Sink(platform), platform.lane, limit=self.limits.progress_chars, max_lines=self.limits.progress_lines,
            escape=platform.progress_text, live_every=self.limits.live_every, live_chars=self.limits.live_chars,
        )  # fmt: skip
        self.stream = platform.stream()
        if self.stream is not None:
            self.stream.when_broken(self._check_stream)  # the rest of the run goes on at once, in a message
        self._turn = _Turn()
        self._steps: list[Event] = []  # what the progress showed (replayed into the view if the stream breaks)
        self._tasks: dict[str, Task] = {}  # the stream's tasks, newest state
        self._call_id = ""  # the tool call the approval events are about
        self._call_titles: dict[str, str] = {}
        self._plain_thoughts = 0
        self._opened = False  # something is shown (a stream or a progress message)
        self._finished = False
        self._approval_messages: dict[int, tuple[str, str]] = {}  # approval id -> (outbox key, text)
        self._phases: list[str] = []  # a change workflow's phase tasks, in order
        self._phase_task: Task | None = None  # the phase under way

    @property
    def streaming(self) -> bool:
        return self.stream is not None and not self.stream.broken

    async def render(self, ev: Event) -> None:
        if isinstance(ev, Partial):
            self._partial(ev)
            return
        self._check_stream()
        self._turn.open = False
        match ev:
            case Thinking():
                self._step(ev, self._thought(ev))
            case ToolCall(call_id=call_id):
                self._call_id = call_id
                self._call_titles[call_id] = self._title(ev)
                self._step(ev, self._call_task(call_id, "pending"))
            case ToolResult(call_id=call_id, ok=ok):
                self._step(ev, self._call_task(call_id, "complete" if ok else "error", output=self._short(ev.shown)))
                await self._attach_long_output(ev)
            case ApprovalRequested():
                waiting = texts.WAITING_FOR_APPROVAL.format(id=ev.approval_id)
                self._step(ev, self._call_task(self._call_id, "pending", note=waiting))
                await self._ask_approval(ev)
            case Phase():
                self._phase(ev)
            case ApprovalResolved():
                named = await self.platform.named(ev)
                line = texts.resolution_line(named)
                status: TaskStatus = "in_progress" if ev.approved else "error"
                self._step(named, self._call_task(self._call_id, status, output="" if ev.approved else line))
                await self._show_resolution(ev)
            case Answer():
                await self._answer(ev)
            case Failed():
                await self._failed(ev)

    async def close(self) -> None:
        """Hand the last of the progress over (safe to call twice). A failure is logged, not raised:
        the answer must still be posted. A stream the run left open (it was stopped) is ended."""
        try:
            if self.streaming and self._opened and not self._finished:
                self._finished = True
                assert self.stream is not None
                await self.stream.finish(self._close_tasks("error"))
            await self.view.finish()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("the progress in %s could not be updated", self.platform.lane, exc_info=True)

    # ---- live pieces ---------------------------------------------------------------
    def _partial(self, ev: Partial) -> None:
        turn = self._turn
        if not turn.open:  # the first piece of a new turn
            self._turn = turn = _Turn(number=turn.number + 1, open=True)
        if ev.kind == "thinking":
            turn.thinking += ev.text
        else:
            turn.draft += ev.text
        self._check_stream()
        long_draft = len(turn.draft) >= self.limits.draft_opens_after
        # A draft is worth watching once it is long. Before that, a progress message shows it in
        # its live line (which the step then replaces); a stream would keep a task for it.
        worth = ev.kind == "thinking" or long_draft or (self._opened and not self.streaming)
        if not worth:
            return
        self._opened = True
        if self.streaming:
            assert self.stream is not None
            self.stream.show([self._live_task(ev.kind)])
        else:
            self.view.live(ev.kind, turn.draft if ev.kind == "text" else turn.thinking)

    def _live_task(self, kind: LiveKind) -> Task:
        turn = self._turn
        words = turn.thinking if kind == "thinking" else turn.draft
        label = texts.THINKING_LIVE if kind == "thinking" else texts.WRITING_LIVE
        title = f"{label} {tail(words, 120)}" if words.strip() else label
        task = Task(self._live_id(kind), self.platform.stream_text(title), "in_progress")
        self._tasks[task.id] = task
        return task

    def _live_id(self, kind: LiveKind) -> str:
        return f"t{self._turn.number}.{'think' if kind == 'thinking' else 'text'}"

    def _thought(self, ev: Thinking) -> Task:
        """The task a stored thought completes: the live thinking, the live draft (what the model
        said before a tool call), or a new one when nothing of it was streamed."""
        turn = self._turn
        if turn.thinking and not turn.thinking_done:
            turn.thinking_done = True
            task_id = self._live_id("thinking")
        elif turn.draft and not turn.draft_done:
            turn.draft_done = True
            task_id = self._live_id("text")
        else:
            self._plain_thoughts += 1
            task_id = f"s{self._plain_thoughts}"
        return Task(task_id, self._title(ev), "complete")

    # ---- steps -----------------------------------------------------------------------
    def _phase(self, ev: Phase) -> None:
        """A workflow phase: a heading among the steps and in the message's header, or in a stream
        a task of its own, in progress until the next phase (the verdict's task ends PASS or FAIL)."""
        self.view.header = texts.WORKING_IN_PHASE.format(phase=ev.phase.value)
        if self._phase_task is not None:
            done = self._phase_task
            self._tasks[done.id] = Task(done.id, done.title, "complete")
            if self.streaming:
                assert self.stream is not None
                self.stream.show([self._tasks[done.id]])
        final = ev.phase is WorkflowPhase.COMPLETE
        status: TaskStatus = ("complete" if ev.verdict == "PASS" else "error") if final else "in_progress"
        task = Task(f"phase.{len(self._phases) + 1}", self._title(ev), status)
        self._phases.append(task.id)
        self._phase_task = None if final else task
        self._step(ev, task)

    def _step(self, ev: Event, task: Task) -> None:
        self._steps.append(ev)
        self._opened = True
        if self.streaming:
            assert self.stream is not None
            self._tasks[task.id] = task
            self.stream.show([task])
        else:
            self.view.add(ev)

    def _call_task(self, call_id: str, status: TaskStatus, *, note: str = "", output: str = "") -> Task:
        """A tool call's task in a new state: its title is the call (and `note`, while it waits)."""
        title = self._call_titles.get(call_id, call_id)
        if note:
            title = f"{title} ({self.platform.stream_text(note)})"
        return Task(call_id, title, status, output=output)

    def _title(self, ev: Event) -> str:
        return self.platform.stream_text(step_line(ev) or "")

    def _short(self, output: str) -> str:
        lines = output.strip().splitlines()
        head = " ".join(lines[0].split()) if lines else "(no output)"
        more = f" (+{len(lines) - 1} lines)" if len(lines) > 1 else ""
        return self.platform.stream_text((head[:200] + more)[:250])

    def _check_stream(self) -> None:
        if self.stream is not None and self.stream.broken:
            log.info("the live stream in %s ended; the run goes on in an edited message", self.platform.lane)
            self._fall_back()

    def _fall_back(self) -> None:
        """No stream (any more): the rest of the run, and what it had shown, goes to a progress message."""
        if self.stream is None:
            return
        self.stream = None
        for ev in self._steps:
            self.view.add(ev)
        turn = self._turn
        if turn.open and self._opened:
            kind: LiveKind = "text" if turn.draft else "thinking"
            self.view.live(kind, turn.draft or turn.thinking)

    def _close_tasks(self, status: TaskStatus) -> list[Task]:
        """The tasks still going, ended with `status` (the run is over)."""
        ended: list[Task] = []
        for task in self._tasks.values():
            if task.status in ("pending", "in_progress"):
                title = task.title
                if task.id == self._live_id("text") and status == "complete":
                    title = self.platform.stream_text(texts.ANSWER_WRITTEN)
                ended.append(Task(task.id, title, status))
        return ended

    # ---- the end ------------------------------------------------------------------------
    async def _answer(self, ev: Answer) -> None:
        text = ev.text
        if self.streaming and self._opened:
            assert self.stream is not None
            self._finished = True
            parts, as_file = self._answer_parts(text)
            # In the stream when it is one message's worth (and can be posted as one, should the
            # stream be gone by then); a longer answer is posted below it, split or attached.
            fits = len(text) <= self.limits.stream_answer_chars and len(parts) == 1 and not as_file
            answer = self.platform.stream_text(text if fits else texts.ANSWER_BELOW)
            handed = await self.stream.finish(
                self._close_tasks("complete"), answer=answer, fallback=parts[0] if fits else ""
            )
            if handed:
                if not fits:
                    await self._post_answer(text)
                return
            self._fall_back()  # it never started, or broke: show the run the other way
        if self.view.lines:
            self.view.add(ev)  # 🏁 done
            await self._close_view()
            await self._post_answer(text)
        elif self.view.opened:  # only the live draft was shown: that message becomes the answer
            await self._answer_in_place(text)
        else:  # a run that answers straight away gets no progress message at all: just the answer
            await self._post_answer(text)

    async def _failed(self, ev: Failed) -> None:
        line = self.platform.failure_line(ev.error)
        if self.streaming and self._opened:
            assert self.stream is not None
            self._finished = True
            if await self.stream.finish(self._close_tasks("error")):
                await self.platform.post(line)
                return
            self._fall_back()
        if self.view.lines:
            self.view.add(ev)  # ❌ the error
            await self._close_view()
            await self.platform.post(line)
        elif self.view.opened:  # only a live line was shown: the failure takes its place
            self.view.replace(line)
            await self._close_view()
        else:
            await self.platform.post(line)

    async def _close_view(self) -> None:
        await self.close()

    def _answer_parts(self, text: str) -> tuple[list[str], bool]:
        """The answer's messages, and whether it goes as a file instead."""
        parts = split_message(self.platform.answer_text(text), self.limits.answer_part)
        as_file = len(text) > self.limits.answer_file_chars or len(parts) > self.limits.answer_max_parts
        return parts, as_file

    async def _post_answer(self, text: str) -> None:
        parts, as_file = self._answer_parts(text)
        if as_file:
            note = self.platform.answer_text(texts.ANSWER_ATTACHED.format(chars=len(text)))
            await self.platform.upload(FileUpload("answer.md", text, "Answer"), comment=note)
            return
        for part in parts:
            await self.platform.post(part)

    async def _answer_in_place(self, text: str) -> None:
        """The live message becomes the answer's first part (or its preview, when it is attached)."""
        parts, as_file = self._answer_parts(text)
        if as_file:
            note = self.platform.answer_text(texts.ANSWER_CONTINUED.format(chars=len(text)))
            preview = split_message(self.platform.answer_text(text), self.limits.answer_part - len(note) - 16)[0]
            self.view.replace(preview + "\n" + note)
            await self._close_view()
            note = self.platform.answer_text(texts.ANSWER_ATTACHED.format(chars=len(text)))
            await self.platform.upload(FileUpload("answer.md", text, "Answer"), comment=note)
            return
        self.view.replace(parts[0])
        await self._close_view()
        for part in parts[1:]:
            await self.platform.post(part)

    # ---- attachments and approvals -------------------------------------------------------
    async def _attach_long_output(self, ev: ToolResult) -> None:
        lines = ev.output.count("\n") + 1
        if lines <= self.limits.output_attach_lines and len(ev.output) <= self.limits.output_attach_chars:
            return
        comment = self.platform.progress_text(texts.OUTPUT_ATTACHED.format(tool=ev.tool, lines=lines))
        file = FileUpload(f"{ev.tool}-{ev.call_id}.txt", ev.output, f"{ev.tool} output")
        await self.platform.upload(file, comment=comment)

    async def _ask_approval(self, ev: ApprovalRequested) -> None:
        post = self.platform.approval(ev)
        key = self.platform.approval_key(ev.approval_id)
        # The outbox attaches the message's reference to the approval row as soon as the platform
        # has it, before the reactions below are added, so the first click can already be looked up,
        # by this process or any other sharing the database (and after a restart).
        await self.platform.post(post.text, key=key, extra=post.extra)
        self._approval_messages[ev.approval_id] = (key, post.text)
        for emoji in post.reactions:
            await self.platform.react(key, emoji, key=f"{key}:react:{emoji}")
        if post.detail is not None:
            await self.platform.upload(post.detail, key=f"{key}:detail")

    async def _show_resolution(self, ev: ApprovalResolved) -> None:
        line = self.platform.resolution(ev)
        posted = self._approval_messages.pop(ev.approval_id, None)
        if posted is not None:
            key, text = posted
            # The last line was "react to approve…": replace it with the outcome.
            await self.platform.edit(key, text.rsplit("\n", 1)[0] + "\n" + line, key=f"{key}:outcome")
        if not ev.approved:  # an edit notifies nobody; a denial or a timeout should be seen
            await self.platform.post(line, key=f"{self.platform.approval_key(ev.approval_id)}:denied")


class _Sink:
    """Where the progress view posts and edits: the platform's transport (the outbox)."""

    def __init__(self, platform: ThreadTransport) -> None:
        self.platform = platform

    async def post(self, text: str) -> str:
        return await self.platform.post(text)

    async def edit(self, message_id: str, text: str) -> None:
        await self.platform.edit(message_id, text)
