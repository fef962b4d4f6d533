"""One agent run rendered in its Slack thread.

The thread gets one progress message (edited and coalesced by `ProgressView`), one
message per approval request (with the ✅/❌ reactions, its ts stored on the approval row
as soon as Slack has it), and the final answer or a one-line failure. Nothing is cut
silently: long answers are split or attached, long tool output is attached as a file.

Nothing here waits for Slack: every post, edit, reaction and upload is queued in the
outbox (`adapters.outbox`), which delivers them in order, at Slack's pace, through 429s.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from adapters.outbox import Outbox
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
from .api import SlackApi
from .config import SlackConfig
from .payloads import PLATFORM, slack_user

log = logging.getLogger(__name__)

PROGRESS_LIMIT = 3500  # characters; Slack shows up to 4000 before "show more"
PROGRESS_LINES = 30
ANSWER_LIMIT = 3500
ANSWER_MAX_PARTS = 4  # more than this reads better as a file
APPROVAL_LIMIT = 3000
OUTPUT_ATTACH_LINES = 20  # tool output longer than this is attached in full
OUTPUT_ATTACH_CHARS = 2000


class _ProgressSink:
    """Where ProgressView posts and edits: the outbox (escaped: steps quote model and tool text)."""

    def __init__(self, outbox: Outbox, channel: str, thread: str) -> None:
        self.outbox = outbox
        self.channel = channel
        self.thread = thread

    async def post(self, text: str) -> str:
        return await self.outbox.post(self.channel, self.thread, {"text": m.escape(text)})

    async def edit(self, message_id: str, text: str) -> None:
        await self.outbox.edit(self.channel, self.thread, message_id, {"text": m.escape(text)})


def approval_key(approval_id: int) -> str:
    """The outbox key of an approval's message: queued once, whoever renders it again."""
    return f"{PLATFORM}:approval:{approval_id}"


class ThreadRun:
    def __init__(self, api: SlackApi, outbox: Outbox, config: SlackConfig, *, channel: str, thread: str) -> None:
        self.api = api
        self.outbox = outbox
        self.config = config
        self.channel = channel
        self.thread = thread
        self.view = ProgressView(
            _ProgressSink(outbox, channel, thread), channel, limit=PROGRESS_LIMIT, max_lines=PROGRESS_LINES
        )
        self._approval_messages: dict[int, tuple[str, str]] = {}  # approval id -> (outbox key, text)

    async def render(self, ev: Event) -> None:
        match ev:
            case Thinking() | ToolCall():
                self.view.add(ev)
            case ToolResult():
                self.view.add(ev)
                await self._attach_long_output(ev)
            case ApprovalRequested():
                self.view.add(ev)
                await self._ask_approval(ev)
            case ApprovalResolved():
                self.view.add(await self._named(ev))
                await self._show_resolution(ev)
            case Answer():
                await self._close_view(ev)
                await self._post_answer(ev.text)
            case Failed():
                await self._close_view(ev)
                await self._post(m.failure_line(ev.error))

    async def close(self) -> None:
        """Hand the last progress edit to the outbox (safe to call twice). A failure is logged, not
        raised: the answer must still be posted."""
        try:
            await self.view.finish()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("the progress message in %s/%s could not be updated", self.channel, self.thread, exc_info=True)

    # ---- pieces ------------------------------------------------------------------
    async def _close_view(self, ev: Answer | Failed) -> None:
        # A run that answers straight away gets no progress message at all: just the answer.
        if self.view.lines:
            self.view.add(ev)
        await self.close()

    async def _post(self, text: str, *, key: str = "") -> str:
        return await self.outbox.post(self.channel, self.thread, {"text": text}, key=key)

    async def _upload(self, content: str, *, filename: str, title: str, comment: str = "", key: str = "") -> None:
        upload = {"content": content, "filename": filename, "title": title, "comment": comment}
        await self.outbox.post(self.channel, self.thread, {"upload": upload}, key=key)

    async def _post_answer(self, text: str) -> None:
        parts = split_message(m.mrkdwn(text), ANSWER_LIMIT)
        if len(parts) <= ANSWER_MAX_PARTS:
            for part in parts:
                await self._post(part)
            return
        await self._upload(
            text, filename="answer.md", title="Answer", comment=m.ANSWER_ATTACHED.format(chars=len(text))
        )

    async def _attach_long_output(self, ev: ToolResult) -> None:
        lines = ev.output.count("\n") + 1
        if lines <= OUTPUT_ATTACH_LINES and len(ev.output) <= OUTPUT_ATTACH_CHARS:
            return
        await self._upload(
            ev.output,
            filename=f"{ev.tool}-{ev.call_id}.txt",
            title=f"{ev.tool} output",
            comment=m.OUTPUT_ATTACHED.format(tool=m.escape(ev.tool), lines=lines),
        )

    async def _ask_approval(self, ev: ApprovalRequested) -> None:
        text, attach = m.approval_message(
            ev, approvers=self.config.approvers, groups=self.config.approver_groups, limit=APPROVAL_LIMIT
        )
        key = approval_key(ev.approval_id)
        # The outbox attaches the message's ts to the approval row as soon as Slack has it, before
        # the reactions below are added, so the first click can already be looked up, by this process
        # or any other sharing the database (and after a restart).
        payload = {"text": text, "approval": {"id": ev.approval_id, "thread": self.thread}}
        await self.outbox.post(self.channel, self.thread, payload, key=key)
        self._approval_messages[ev.approval_id] = (key, text)
        for name in (self.config.approve_reactions[0], self.config.deny_reactions[0]):
            await self.outbox.react(self.channel, self.thread, key, {"name": name}, key=f"{key}:react:{name}")
        if attach:
            kind = "diff" if ev.detail_kind == "diff" else "txt"
            await self._upload(
                ev.detail,
                filename=f"approval-{ev.approval_id}.{kind}",
                title=f"Approval #{ev.approval_id}",
                key=f"{key}:detail",
            )

    async def _show_resolution(self, ev: ApprovalResolved) -> None:
        line = m.resolution(ev)
        posted = self._approval_messages.pop(ev.approval_id, None)
        if posted is not None:
            key, text = posted
            # The last line was "react to approve…": replace it with the outcome.
            outcome = {"text": text.rsplit("\n", 1)[0] + "\n" + line}
            await self.outbox.edit(self.channel, self.thread, key, outcome, key=f"{key}:outcome")
        if not ev.approved:  # an edit does not notify anyone; a denial or timeout should
            await self._post(line, key=f"{approval_key(ev.approval_id)}:denied")

    async def _named(self, ev: ApprovalResolved) -> ApprovalResolved:
        """The progress line names deciders by display name (it is escaped, so no <@mention>)."""
        names: list[str] = []
        for decider in ev.decided_by.split(","):
            user = slack_user(decider)
            names.append("@" + (await self.api.user_name(user) or user) if user else decider)
        return replace(ev, decided_by=", ".join(names))
