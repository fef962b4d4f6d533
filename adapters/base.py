"""What every chat adapter offers the application."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.events import Report
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
