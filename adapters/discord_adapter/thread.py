"""One agent run rendered where its conversation lives: a thread, or a DM.

The run gets one progress message (edited, coalesced and paced by `ProgressView`), one
message per approval request (with ✅ / ❌, its id stored on the approval row), and the
final answer or a one-line failure. Nothing is cut silently: long answers are split on
the 2,000-character limit with code blocks kept whole, or attached as a file.
"""

from __future__ import annotations

from adapters.progress import ProgressView, split_message
from core.events import (
    Answer,
    ApprovalRequested,
    ApprovalResolved,
    Event,
    Failed,
    Thinking,
    ToolCall,
    ToolResult,
)
from core.store import Store

from . import messages as m
from .api import DiscordApi, Upload
from .config import DiscordConfig

PROGRESS_LIMIT = 1900  # under Discord's 2,000, with room for the header
PROGRESS_LINES = 15


class _ProgressSink:
    """Where ProgressView posts; it paces itself, so these calls are not paced again."""

    def __init__(self, api: DiscordApi, channel_id: int) -> None:
        self.api = api
        self.channel_id = channel_id

    async def post(self, text: str) -> str:
        return str(await self.api.send(self.channel_id, text, paced=False))

    async def edit(self, message_id: str, text: str) -> None:
        await self.api.edit(self.channel_id, int(message_id), text, paced=False)


class ThreadRun:
    def __init__(self, api: DiscordApi, store: Store, config: DiscordConfig, *, target: int, thread: str) -> None:
        self.api = api
        self.store = store
        self.config = config
        self.target = target  # the channel id posts go to: the thread, or the DM channel
        self.thread = thread  # the conversation's thread id ("" in a DM)
        self.view = ProgressView(
            _ProgressSink(api, target), api.pacer, str(target), limit=PROGRESS_LIMIT, max_lines=PROGRESS_LINES
        )
        self._approval_messages: dict[int, tuple[int, str]] = {}  # approval id -> (message id, text)

    async def render(self, ev: Event) -> None:
        match ev:
            case Thinking() | ToolCall() | ToolResult():
                self.view.add(ev)
            case ApprovalRequested():
                self.view.add(ev)
                await self._ask_approval(ev)
            case ApprovalResolved():
                self.view.add(m.with_names(ev))
                await self._show_resolution(ev)
            case Answer():
                await self._close_view(ev)
                await self.post_long(ev.text, filename="answer.md", note=m.ANSWER_ATTACHED)
            case Failed():
                await self._close_view(ev)
                await self.api.send(self.target, m.failure_line(ev.error))

    async def close(self) -> None:
        """Let the last progress edit land (safe to call twice)."""
        await self.view.finish()

    async def post_long(self, text: str, *, filename: str, note: str) -> int:
        """Split on the 2,000-character limit without breaking code blocks; a file when very long."""
        if len(text) > self.config.answer_file_chars:
            upload = Upload(filename, text.encode())
            return await self.api.send(self.target, note.format(chars=len(text)), files=[upload])
        ids = [await self.api.send(self.target, part) for part in split_message(text, m.LIMIT)]
        return ids[0]

    # ---- pieces ------------------------------------------------------------------
    async def _close_view(self, ev: Answer | Failed) -> None:
        # A run that answers straight away gets no progress message at all: just the answer.
        if self.view.lines:
            self.view.add(ev)
        await self.view.finish()

    async def _ask_approval(self, ev: ApprovalRequested) -> None:
        text, attach = m.approval_message(
            ev,
            approvers=self.config.approvers,
            roles=self.config.approver_roles,
            approve=self.config.approve_reactions[0],
            deny=self.config.deny_reactions[0],
        )
        files: list[Upload] = []
        if attach:
            kind = "diff" if ev.detail_kind == "diff" else "txt"
            files.append(Upload(f"approval-{ev.approval_id}.{kind}", ev.detail.encode()))
        # Approvers named by id are notified; roles are not (a role may be large).
        notify = [int(u) for u in self.config.approvers if u.isdigit()]
        message_id = await self.api.send(self.target, text, files=files, notify=notify)
        # Stored before the reactions exist, so the first click can already be looked up,
        # by this process or any other sharing the database, and after a restart.
        await self.store.attach_approval_message(
            ev.approval_id, channel=str(self.target), thread=self.thread, message_ref=str(message_id)
        )
        self._approval_messages[ev.approval_id] = (message_id, text)
        await self.api.react(self.target, message_id, self.config.approve_reactions[0])
        await self.api.react(self.target, message_id, self.config.deny_reactions[0])

    async def _show_resolution(self, ev: ApprovalResolved) -> None:
        line = m.resolution(ev)
        posted = self._approval_messages.pop(ev.approval_id, None)
        if posted is not None:
            message_id, text = posted
            # The last line was "react to approve…": replace it with the outcome.
            await self.api.edit(self.target, message_id, text.rsplit("\n", 1)[0] + "\n" + line)
        if not ev.approved:  # an edit shows no "new message"; a denial or a timeout should be seen
            await self.api.send(self.target, line)
