"""A recording chat platform: the test kit's adapter for any test that needs one without Slack or Discord.

`RecordingAdapter` implements the `adapters.base.ChatAdapter` protocol: it records every
report and thread message, runs requests through the real agent rendering each step with
the shared `adapters.texts.step_line` (as the chat adapters' progress messages do), and decides approvals
through the real `ApprovalGate` as a reaction from `approver` would.

To run these tests against the Slack or Discord stand-ins instead, give a fixture that
returns an adapter plus an object with the same read side (`reports`, `thread(ref)`,
`requests`) built from the fake's recorded API calls.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.texts import step_line
from bot.settings import ReportSettings, Settings
from core.agent import Agent
from core.approval import ApprovalGate
from core.events import ApprovalRequested, Event, Report, Request
from core.store.models import Approval

APPROVER = {"slack": "U0APPROVER", "discord": "900000000000000001"}
CHANNEL = {"slack": "C0REPORTS", "discord": "800000000000000001"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Posted:
    channel: str
    ref: str
    text: str
    report: Report | None = None
    thread: str = ""


class RecordingAdapter:
    _refs = itertools.count(1)

    def __init__(
        self, agent: Agent, gate: ApprovalGate, *, platform: str = "slack", approve: bool | None = True
    ) -> None:
        self.platform = platform
        self.agent = agent
        self.gate = gate
        self.approve = approve  # None: nobody reacts (the approval times out)
        self.approver = APPROVER.get(platform, "approver")
        self.reports: list[Posted] = []
        self.thread_posts: list[Posted] = []
        self.requests: list[Request] = []
        self.expired: list[Approval] = []

    def _ref(self) -> str:
        return f"{self.platform}-{next(self._refs)}"

    async def serve(self) -> None:
        await asyncio.Event().wait()

    async def post_report(self, channel: str, report: Report) -> str:
        ref = self._ref()
        self.reports.append(Posted(channel, ref, f"{report.title}\n{report.text}", report))
        return ref

    async def post_in_thread(self, channel: str, thread: str, text: str) -> str:
        ref = self._ref()
        self.thread_posts.append(Posted(channel, ref, text, thread=thread))
        return ref

    async def announce_expired(self, approvals: Sequence[Approval]) -> None:
        self.expired.extend(approvals)

    async def run_request(self, request: Request) -> list[Event]:
        self.requests.append(request)
        events: list[Event] = []
        async for ev in self.agent.run(request):
            events.append(ev)
            line = step_line(ev)
            if line:
                self.thread_posts.append(Posted(request.channel, self._ref(), line, thread=request.thread))
            if isinstance(ev, ApprovalRequested) and self.approve is not None:
                await self.gate.decide(ev.approval_id, platform=self.platform, user_id=self.approver,
                                       approve=self.approve, reason="" if self.approve else "not now")  # fmt: skip
        return events

    def thread(self, ref: str) -> list[str]:
        return [p.text for p in self.thread_posts if p.thread == ref]


def health_settings(tmp_path: Path, ollama_url: str, workspace: Path, **reports: Any) -> Settings:
    """Settings with a reports channel per platform and an approver on each."""
    return Settings(
        ORCHESTRATOR_DATA_DIR=str(tmp_path / "data"),
        OLLAMA_HOST=ollama_url,
        ORCHESTRATOR_FILE_ROOTS=str(workspace),
        ORCHESTRATOR_CONSOLE_APPROVERS="tester",
        ORCHESTRATOR_APPROVAL_TIMEOUT=30,
        SLACK_APPROVERS=APPROVER["slack"],
        DISCORD_APPROVERS=APPROVER["discord"],
        reports=ReportSettings(slack_channel=CHANNEL["slack"], discord_channel=CHANNEL["discord"], **reports),
    )


def png_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of a PNG, after checking its signature."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
