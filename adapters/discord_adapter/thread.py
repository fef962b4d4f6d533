"""One agent run rendered where its conversation lives: a thread, or a DM.

The run gets one progress message (edited and coalesced by `ProgressView`), one message
per approval request (with ✅ / ❌, its id stored on the approval row as soon as Discord
has it), and the final answer or a one-line failure. Nothing is cut silently: long answers
are split on the 2,000-character limit with code blocks kept whole, or attached as a file.

Nothing here waits for Discord: every post, edit and reaction is queued in the outbox
(`adapters.outbox`), which delivers them in order, paced, through 429s.
"""

from __future__ import annotations

from adapters.outbox import Outbox, Payload
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

from . import messages as m
from .api import Upload, as_files
from .config import DiscordConfig
from .payloads import PLATFORM

PROGRESS_LIMIT = 1900  # under Discord's 2,000, with room for the header
PROGRESS_LINES = 15


class _ProgressSink:
    """Where ProgressView posts and edits: the outbox (which paces the calls)."""

    def __init__(self, outbox: Outbox, channel_id: int) -> None:
        self.outbox = outbox
        self.lane = str(channel_id)

    async def post(self, text: str) -> str:
        return await self.outbox.post(self.lane, "", {"text": text})

    async def edit(self, message_id: str, text: str) -> None:
        await self.outbox.edit(self.lane, "", message_id, {"text": text})


def approval_key(approval_id: int) -> str:
    """The outbox key of an approval's message: queued once, whoever renders it again."""
    return f"{PLATFORM}:approval:{approval_id}"


class ThreadRun:
    def __init__(self, outbox: Outbox, config: DiscordConfig, *, target: int, thread: str) -> None:
        self.outbox = outbox
        self.config = config
        self.target = target  # the channel id posts go to: the thread, or the DM channel
        self.thread = thread  # the conversation's thread id ("" in a DM)
        self.lane = str(target)  # one outbox lane per Discord channel (a thread is one)
        self.view = ProgressView(
            _ProgressSink(outbox, target), self.lane, limit=PROGRESS_LIMIT, max_lines=PROGRESS_LINES
        )
        self._approval_messages: dict[int, tuple[str, str]] = {}  # approval id -> (outbox key, text)

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
                await self._post({"text": m.failure_line(ev.error)})

    async def close(self) -> None:
        """Hand the last progress edit to the outbox (safe to call twice)."""
        await self.view.finish()

    async def post_long(self, text: str, *, filename: str, note: str) -> list[str]:
        """Split on the 2,000-character limit without breaking code blocks; a file when very long.
        Returns the outbox keys of the parts."""
        if len(text) > self.config.answer_file_chars:
            files = as_files([Upload(filename, text.encode())])
            return [await self._post({"text": note.format(chars=len(text)), "files": files})]
        return [await self._post({"text": part}) for part in split_message(text, m.LIMIT)]

    async def _post(self, payload: Payload, *, key: str = "") -> str:
        return await self.outbox.post(self.lane, "", payload, key=key)

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
        key = approval_key(ev.approval_id)
        # The outbox attaches the message id to the approval row as soon as Discord has it, before
        # the reactions below are added, so the first click can already be looked up, by this process
        # or any other sharing the database, and after a restart.
        payload = {
            "text": text, "files": as_files(files), "notify": notify,
            "approval": {"id": ev.approval_id, "thread": self.thread},
        }  # fmt: skip
        await self._post(payload, key=key)
        self._approval_messages[ev.approval_id] = (key, text)
        for emoji in (self.config.approve_reactions[0], self.config.deny_reactions[0]):
            await self.outbox.react(self.lane, "", key, {"emoji": emoji}, key=f"{key}:react:{emoji}")

    async def _show_resolution(self, ev: ApprovalResolved) -> None:
        line = m.resolution(ev)
        posted = self._approval_messages.pop(ev.approval_id, None)
        if posted is not None:
            key, text = posted
            # The last line was "react to approve…": replace it with the outcome.
            outcome = {"text": text.rsplit("\n", 1)[0] + "\n" + line}
            await self.outbox.edit(self.lane, "", key, outcome, key=f"{key}:outcome")
        if not ev.approved:  # an edit shows no "new message"; a denial or a timeout should be seen
            await self._post({"text": line}, key=f"{approval_key(ev.approval_id)}:denied")
