"""Where reports and incident threads go: the part of a chat adapter the health package needs.

Chat adapters satisfy `Outlet` as they are (`adapters.base.ChatAdapter`); core never imports them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from core.events import Event, Report, Request

log = logging.getLogger(__name__)


class Outlet(Protocol):
    platform: str

    async def post_report(self, channel: str, report: Report) -> str: ...

    async def post_in_thread(self, channel: str, thread: str, text: str) -> str: ...

    async def run_request(self, request: Request) -> list[Event]: ...


@dataclass(frozen=True)
class Destination:
    """An outlet and the channel reports go to on it (`reports.slack_channel`, `reports.discord_channel`)."""

    outlet: Outlet
    channel: str

    @property
    def platform(self) -> str:
        return self.outlet.platform


async def publish(report: Report, destinations: Sequence[Destination]) -> dict[str, str]:
    """Post to every destination; one failing platform does not stop the others. Returns platform → ref."""
    refs: dict[str, str] = {}
    for dest in destinations:
        try:
            refs[dest.platform] = await dest.outlet.post_report(dest.channel, report)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("posting the %s report to %s:%s failed", report.kind, dest.platform, dest.channel)
    return refs
