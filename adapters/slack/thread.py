"""One agent run rendered in its Slack thread.

The thread gets one progress message (edited, coalesced and paced by `ProgressView`),
one message per approval request (with the ✅/❌ reactions, its ts stored on the
approval row), and the final answer or a one-line failure. Nothing is cut silently:
long answers are split or attached, long tool output is attached as a file.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

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
from .api import SlackApi
from .config import SlackConfig
from .payloads import slack_user

log = logging.getLogger(__name__)

PROGRESS_LIMIT = 3500  # characters; Slack shows up to 4000 before "show more"
PROGRESS_LINES = 30
ANSWER_LIMIT = 3500
ANSWER_MAX_PARTS = 4  # more than this reads better as a file
APPROVAL_LIMIT = 3000
OUTPUT_ATTACH_LINES = 20  # tool output longer than this is attached in full
OUTPUT_ATTACH_CHARS = 2000


class _ProgressSink:
    """Where ProgressView posts and edits (escaped: steps quote model and tool text)."""

    def __init__(self, api: SlackApi, channel: str, thread: str) -> None:
        self.api = api
        self.channel = channel
        self.thread = thread

    async def post(self, text: str) -> str:
        return await self.api.post(self.channel, m.escape(text), thread=self.thread)

    async def edit(self, message_id: str, text: str) -> None:
        await self.api.update(self.channel, message_id, m.escape(text))


class ThreadRun:
    def __init__(self, api: SlackApi, store: Store, config: SlackConfig, *, channel: str, thread: str) -> None:
        self.api = api
        self.store = store
        self.config = config
        self.channel = channel
        self.thread = thread
        self.view = ProgressView(
            _ProgressSink(api, channel, thread), api.pacer, channel, limit=PROGRESS_LIMIT, max_lines=PROGRESS_LINES
        )
        self._approval_messages: dict[int, tuple[str, str]] = {}  # approval id -> (ts, text)

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
                await self.api.post(self.channel, m.failure_line(ev.error), thread=self.thread)

    async def close(self) -> None:
        """Let the last progress edit land (safe to call twice). A progress message Slack kept
        refusing is logged, not raised: the answer must still be posted."""
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

    async def _post(self, text: str) -> str:
        return await self.api.post(self.channel, text, thread=self.thread)

    async def _post_answer(self, text: str) -> None:
        parts = split_message(m.mrkdwn(text), ANSWER_LIMIT)
        if len(parts) <= ANSWER_MAX_PARTS:
            for part in parts:
                await self._post(part)
            return
        await self.api.upload(
            self.channel,
            text,
            filename="answer.md",
            title="Answer",
            thread=self.thread,
            comment=m.ANSWER_ATTACHED.format(chars=len(text)),
        )

    async def _attach_long_output(self, ev: ToolResult) -> None:
        lines = ev.output.count("\n") + 1
        if lines <= OUTPUT_ATTACH_LINES and len(ev.output) <= OUTPUT_ATTACH_CHARS:
            return
        await self.api.upload(
            self.channel,
            ev.output,
            filename=f"{ev.tool}-{ev.call_id}.txt",
            title=f"{ev.tool} output",
            thread=self.thread,
            comment=m.OUTPUT_ATTACHED.format(tool=m.escape(ev.tool), lines=lines),
        )

    async def _ask_approval(self, ev: ApprovalRequested) -> None:
        text, attach = m.approval_message(
            ev, approvers=self.config.approvers, groups=self.config.approver_groups, limit=APPROVAL_LIMIT
        )
        ts = await self._post(text)
        # Stored before the reactions exist, so the first click can already be looked up,
        # by this process or any other sharing the database (and after a restart).
        await self.store.attach_approval_message(
            ev.approval_id, channel=self.channel, thread=self.thread, message_ref=ts
        )
        self._approval_messages[ev.approval_id] = (ts, text)
        await self.api.react(self.channel, ts, self.config.approve_reactions[0])
        await self.api.react(self.channel, ts, self.config.deny_reactions[0])
        if attach:
            kind = "diff" if ev.detail_kind == "diff" else "txt"
            await self.api.upload(
                self.channel,
                ev.detail,
                filename=f"approval-{ev.approval_id}.{kind}",
                title=f"Approval #{ev.approval_id}",
                thread=self.thread,
            )

    async def _show_resolution(self, ev: ApprovalResolved) -> None:
        line = m.resolution(ev)
        posted = self._approval_messages.pop(ev.approval_id, None)
        if posted is not None:
            ts, text = posted
            # The last line was "react to approve…": replace it with the outcome.
            await self.api.update(self.channel, ts, text.rsplit("\n", 1)[0] + "\n" + line)
        if not ev.approved:  # an edit does not notify anyone; a denial or timeout should
            await self._post(line)

    async def _named(self, ev: ApprovalResolved) -> ApprovalResolved:
        """The progress line names deciders by display name (it is escaped, so no <@mention>)."""
        names: list[str] = []
        for decider in ev.decided_by.split(","):
            user = slack_user(decider)
            names.append("@" + (await self.api.user_name(user) or user) if user else decider)
        return replace(ev, decided_by=", ".join(names))
