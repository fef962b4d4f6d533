"""Reports channels for a process that serves no chat: `orchestrator run scheduler`.

Such a process posts the health incidents and the daily report (and an incident's follow-up
run, shown in its thread) through the chat adapters' own methods, as `report … --post` does,
and never listens for questions. Slack posts through its Web API without serving. Discord
posts only over a live gateway session: a fresh adapter is connected while something is being
posted and disconnected once nothing is (a closed discord.py client does not connect again).
While it is connected, that adapter also handles the events Discord sends it, as during
`report --post`; a post-only mode of the Discord adapter would end that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from adapters.base import ChatAdapter
from core.events import Event, Report, Request

log = logging.getLogger(__name__)

T = TypeVar("T")


class PostingOutlet:
    """One platform, used to post only (`core.health.outlets.Outlet`)."""

    def __init__(self, make: Callable[[], ChatAdapter]) -> None:
        self._make = make
        self._adapter: ChatAdapter | None = make()  # a configuration mistake shows at start, not at the first post
        self.platform = self._adapter.platform
        self._serving: asyncio.Task[None] | None = None
        self._users = 0
        self._lock = asyncio.Lock()

    async def post_report(self, channel: str, report: Report) -> str:
        return await self._with_adapter(lambda a: a.post_report(channel, report))

    async def post_in_thread(self, channel: str, thread: str, text: str) -> str:
        return await self._with_adapter(lambda a: a.post_in_thread(channel, thread, text))

    async def run_request(self, request: Request) -> list[Event]:
        return await self._with_adapter(lambda a: a.run_request(request))

    async def aclose(self) -> None:
        async with self._lock:
            await self._disconnect()
            adapter, self._adapter = self._adapter, None
        await _close(adapter)

    async def _with_adapter(self, work: Callable[[ChatAdapter], Awaitable[T]]) -> T:
        async with self._connected() as adapter:
            return await work(adapter)

    @contextlib.asynccontextmanager
    async def _connected(self) -> AsyncIterator[ChatAdapter]:
        async with self._lock:
            if self._adapter is None:
                self._adapter = self._make()
            adapter = self._adapter
            if not getattr(adapter, "posts_without_serving", True) and self._serving is None:
                self._serving = asyncio.create_task(adapter.serve(), name=f"post-{self.platform}")
            self._users += 1
        try:
            yield adapter
        finally:
            async with self._lock:
                self._users -= 1
                if not self._users and self._serving is not None:
                    await self._disconnect()
                    self._adapter = None  # served once: the next post gets a fresh one

    async def _disconnect(self) -> None:
        serving, self._serving = self._serving, None
        if serving is None:
            return
        serving.cancel()
        [outcome] = await asyncio.gather(serving, return_exceptions=True)
        if isinstance(outcome, Exception):
            log.warning("%s: the connection for posting ended: %s", self.platform, outcome)


async def _close(adapter: Any) -> None:
    closer = getattr(adapter, "close", None)
    if adapter is not None and closer is not None:
        try:
            await closer()
        except Exception as exc:
            log.warning("closing the %s adapter failed: %s", getattr(adapter, "platform", "?"), exc)
