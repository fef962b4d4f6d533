"""A run's Discord channel, as `adapters.thread_run.ThreadRun` uses it: Discord's side only.

Where things go (one outbox lane per Discord channel: the run's thread, or the DM), how they
look (Discord renders the model's Markdown as it is; mentions never ping, every post sets
allowed mentions) and Discord's sizes. Discord has no streaming message: the run is shown in
one progress message, edited within Discord's 5 creates-or-edits per 5 s per channel
(`DiscordApi` paces every call; live edits are spaced to fit in that budget).
"""

from __future__ import annotations

from adapters.outbox import Outbox, Payload
from adapters.thread_run import ApprovalPost, FileUpload, Limits, LiveStream
from core.events import ApprovalRequested, ApprovalResolved

from . import messages as m
from .api import Upload, as_files
from .config import DiscordConfig
from .payloads import PLATFORM

PROGRESS_LIMIT = 1900  # under Discord's 2,000, with room for the header
PROGRESS_LINES = 15


def approval_key(approval_id: int) -> str:
    """The outbox key of an approval's message: queued once, whoever renders it again."""
    return f"{PLATFORM}:approval:{approval_id}"


class DiscordThread:
    """One run's channel in Discord (a `ThreadPlatform`)."""

    def __init__(self, outbox: Outbox, config: DiscordConfig, *, target: int, thread: str) -> None:
        self.outbox = outbox
        self.config = config
        self.target = target  # the channel id posts go to: the thread, or the DM channel
        self.thread = thread  # the conversation's thread id ("" in a DM)
        self.lane = str(target)  # one outbox lane per Discord channel (a thread is one)
        # A live line alone moves at most once per 1/5 of the pace window, so that steps,
        # approvals and the answer still find room in the channel's 5 per 5 s.
        every = (config.pace_window + config.pace_margin) / max(1, config.pace_ops)
        self.limits = Limits(
            progress_chars=PROGRESS_LIMIT, progress_lines=PROGRESS_LINES, answer_part=m.LIMIT,
            answer_file_chars=config.answer_file_chars, live_every=every,
        )  # fmt: skip

    # ---- transport ---------------------------------------------------------------------
    async def post(self, text: str, *, key: str = "", extra: Payload | None = None) -> str:
        return await self.outbox.post(self.lane, "", {"text": text, **(extra or {})}, key=key)

    async def edit(self, target: str, text: str, *, key: str = "") -> str:
        return await self.outbox.edit(self.lane, "", target, {"text": text}, key=key)

    async def react(self, target: str, emoji: str, *, key: str = "") -> str:
        return await self.outbox.react(self.lane, "", target, {"emoji": emoji}, key=key)

    async def upload(self, file: FileUpload, *, comment: str = "", key: str = "") -> str:
        files = as_files([Upload(file.filename, file.content.encode())])
        return await self.outbox.post(self.lane, "", {"text": comment, "files": files}, key=key)

    def stream(self) -> LiveStream | None:
        return None  # Discord has no streaming message: an edited one it is

    # ---- how it looks -------------------------------------------------------------------
    def progress_text(self, text: str) -> str:
        return text

    def answer_text(self, markdown: str) -> str:
        return markdown

    def stream_text(self, text: str) -> str:
        return text

    def failure_line(self, error: str) -> str:
        return m.failure_line(error)

    def approval(self, ev: ApprovalRequested) -> ApprovalPost:
        approve, deny = self.config.approve_reactions[0], self.config.deny_reactions[0]
        text, attach = m.approval_message(
            ev, approvers=self.config.approvers, roles=self.config.approver_roles, approve=approve, deny=deny
        )
        files: list[Upload] = []
        if attach:  # on the approval message itself
            kind = "diff" if ev.detail_kind == "diff" else "txt"
            files.append(Upload(f"approval-{ev.approval_id}.{kind}", ev.detail.encode()))
        # Approvers named by id are notified; roles are not (a role may be large).
        notify = [int(u) for u in self.config.approvers if u.isdigit()]
        extra = {"files": as_files(files), "notify": notify, "approval": {"id": ev.approval_id, "thread": self.thread}}
        return ApprovalPost(text, (approve, deny), extra=extra)

    def approval_key(self, approval_id: int) -> str:
        return approval_key(approval_id)

    def resolution(self, ev: ApprovalResolved) -> str:
        return m.resolution(ev)

    async def named(self, ev: ApprovalResolved) -> ApprovalResolved:
        return m.with_names(ev)
