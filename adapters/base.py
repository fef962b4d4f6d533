"""What every chat adapter offers the application."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.events import Event, Report, Request
from core.store.models import Approval


class ChatAdapter(Protocol):
    platform: str

    async def serve(self) -> None:
        """Connect and handle events until cancelled. Logs one line when connected."""

    async def post_report(self, channel: str, report: Report) -> str:
        """Post a scheduled report (text and attachments) to a channel; returns the message reference."""

    async def post_in_thread(self, channel: str, thread: str, text: str) -> str:
        """Post a plain message in a thread (incident updates, expiry notices); returns its reference."""

    async def announce_expired(self, approvals: Sequence[Approval]) -> None:
        """Tell each thread whose pending approval was expired by a restart."""

    async def run_request(self, request: Request) -> list[Event]:
        """Run the agent for a request that no chat message started (an incident opened by a
        scheduled check), rendering it in `request.thread` exactly like a conversation, approvals
        included. Returns the run's events once it has finished."""
