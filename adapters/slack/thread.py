"""A run's Slack thread, as `adapters.thread_run.ThreadRun` uses it: Slack's side only.

Where things go (the outbox lane: channel and thread), how they look (mrkdwn, escaping, the
approval message) and Slack's sizes. Where the workspace allows it, the run is shown in
Slack's agent stream (`adapters.slack.stream`); elsewhere, in a progress message edited at
Slack's pace.
"""

from __future__ import annotations

from dataclasses import replace

from adapters.outbox import Outbox, Payload
from adapters.thread_run import ApprovalPost, FileUpload, Limits
from core.events import ApprovalRequested, ApprovalResolved

from . import messages as m
from .api import SlackApi
from .config import SlackConfig
from .payloads import PLATFORM, slack_user
from .stream import Recipient, SlackStream, StreamSupport

PROGRESS_LIMIT = 3500  # characters; Slack shows up to 4000 before "show more"
PROGRESS_LINES = 30
ANSWER_LIMIT = 3500
ANSWER_MAX_PARTS = 4  # more than this reads better as a file
APPROVAL_LIMIT = 3000


def approval_key(approval_id: int) -> str:
    """The outbox key of an approval's message: queued once, whoever renders it again."""
    return f"{PLATFORM}:approval:{approval_id}"


class SlackThread:
    """One run's thread in Slack (a `ThreadPlatform`)."""

    def __init__(
        self,
        api: SlackApi,
        outbox: Outbox,
        config: SlackConfig,
        *,
        channel: str,
        thread: str,
        support: StreamSupport | None = None,
        recipient: Recipient | None = None,
    ) -> None:
        self.api = api
        self.outbox = outbox
        self.config = config
        self.channel = channel
        self.thread = thread
        self.support = support
        self.recipient = recipient
        self.lane = f"{channel}/{thread}"
        # Live edits at Slack's pace (about one post or edit per second per channel); a stream's
        # answer is one message's worth, so that it can be posted as one should the stream be gone.
        self.limits = Limits(
            progress_chars=PROGRESS_LIMIT, progress_lines=PROGRESS_LINES, answer_part=ANSWER_LIMIT,
            answer_max_parts=ANSWER_MAX_PARTS, live_every=config.pace, stream_answer_chars=ANSWER_LIMIT,
        )  # fmt: skip

    # ---- transport ---------------------------------------------------------------------
    async def post(self, text: str, *, key: str = "", extra: Payload | None = None) -> str:
        return await self.outbox.post(self.channel, self.thread, {"text": text, **(extra or {})}, key=key)

    async def edit(self, target: str, text: str, *, key: str = "") -> str:
        return await self.outbox.edit(self.channel, self.thread, target, {"text": text}, key=key)

    async def react(self, target: str, emoji: str, *, key: str = "") -> str:
        return await self.outbox.react(self.channel, self.thread, target, {"name": emoji}, key=key)

    async def upload(self, file: FileUpload, *, comment: str = "", key: str = "") -> str:
        upload = {"content": file.content, "filename": file.filename, "title": file.title, "comment": comment}
        return await self.outbox.post(self.channel, self.thread, {"upload": upload}, key=key)

    def stream(self) -> SlackStream | None:
        """Slack's agent stream, in a thread with someone to stream to, where it was not refused."""
        support, recipient = self.support, self.recipient
        if support is None or recipient is None or not self.thread or not support.streams_in(self.channel):
            return None
        return SlackStream(
            self.api, self.outbox, support, channel=self.channel, thread=self.thread, recipient=recipient,
            backoff=self.config.delivery_backoff,
        )  # fmt: skip

    # ---- how it looks -------------------------------------------------------------------
    def progress_text(self, text: str) -> str:
        return m.escape(text)  # steps quote model and tool text: no mention, no link

    def answer_text(self, markdown: str) -> str:
        return m.mrkdwn(markdown)

    def stream_text(self, text: str) -> str:
        return m.escape(text)  # the stream reads Markdown itself; only Slack's control characters go

    def failure_line(self, error: str) -> str:
        return m.failure_line(error)

    def approval(self, ev: ApprovalRequested) -> ApprovalPost:
        text, attach = m.approval_message(
            ev, approvers=self.config.approvers, groups=self.config.approver_groups, limit=APPROVAL_LIMIT
        )
        detail = None
        if attach:
            kind = "diff" if ev.detail_kind == "diff" else "txt"
            detail = FileUpload(f"approval-{ev.approval_id}.{kind}", ev.detail, f"Approval #{ev.approval_id}")
        reactions = (self.config.approve_reactions[0], self.config.deny_reactions[0])
        extra = {"approval": {"id": ev.approval_id, "thread": self.thread}}
        return ApprovalPost(text, reactions, extra=extra, detail=detail)

    def approval_key(self, approval_id: int) -> str:
        return approval_key(approval_id)

    def resolution(self, ev: ApprovalResolved) -> str:
        return m.resolution(ev)

    async def named(self, ev: ApprovalResolved) -> ApprovalResolved:
        """The progress line names deciders by display name (it is escaped, so no <@mention>)."""
        names: list[str] = []
        for decider in ev.decided_by.split(","):
            user = slack_user(decider)
            names.append("@" + (await self.api.user_name(user) or user) if user else decider)
        return replace(ev, decided_by=", ".join(names))
