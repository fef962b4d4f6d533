"""The Web API as the adapter uses it: one call at a time per channel, paced, lookups cached.

Slack allows about one message post per second per channel. Every post, edit and
file share in a channel takes that channel's turn: calls run one after another, and
the next starts `pace` seconds after the previous one was answered, so Slack never
sees two within a second, whatever the network latency. A 429 is retried by slack_sdk
after `Retry-After` while the turn is held, so nothing queued behind it jumps ahead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.progress import Pacer

from .config import SlackConfig

log = logging.getLogger(__name__)

GROUP_CACHE_SECONDS = 60.0
USER_CACHE_SECONDS = 3600.0


def make_client(config: SlackConfig, *, max_retries: int = 6) -> AsyncWebClient:
    """slack_sdk retries only connection errors by default; 429s must be retried too."""
    handlers: list[AsyncRetryHandler] = [
        AsyncConnectionErrorRetryHandler(max_retry_count=2),
        AsyncRateLimitErrorRetryHandler(max_retry_count=max_retries),
    ]
    return AsyncWebClient(token=config.bot_token, base_url=config.api_url, retry_handlers=handlers)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the bot is, from auth.test."""

    team: str
    team_id: str
    user: str
    user_id: str
    bot_id: str
    url: str


class SlackApi:
    def __init__(self, client: AsyncWebClient, *, pace: float) -> None:
        self.client = client
        self.pace = pace
        #: For ProgressView: it waits for its slot before rendering, which is what
        #: coalesces a burst of steps into one edit.
        self.pacer = Pacer(1, pace)
        self._turns: dict[str, asyncio.Lock] = {}
        self._last_answer: dict[str, float] = {}
        self._identity: Identity | None = None
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._names: dict[str, tuple[float, str]] = {}

    # ---- messages ----------------------------------------------------------------
    @asynccontextmanager
    async def turn(self, channel: str) -> AsyncIterator[None]:
        """This channel's turn: one call at a time, `pace` seconds after the last answer."""
        async with self._turns.setdefault(channel, asyncio.Lock()):
            wait = self._last_answer.get(channel, float("-inf")) + self.pace - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                yield
            finally:
                self._last_answer[channel] = time.monotonic()

    async def post(self, channel: str, text: str, *, thread: str = "") -> str:
        """Post a message (in `thread` when given); returns its ts."""
        args: dict[str, Any] = {"channel": channel, "text": text, "unfurl_links": False, "unfurl_media": False}
        if thread:
            args["thread_ts"] = thread
        async with self.turn(channel):
            resp = await self.client.chat_postMessage(**args)
        return str(resp["ts"])

    async def update(self, channel: str, ts: str, text: str) -> None:
        async with self.turn(channel):
            await self.client.chat_update(channel=channel, ts=ts, text=text)

    async def react(self, channel: str, ts: str, name: str) -> None:
        """Add a reaction; one that is already there is fine. (reactions.* are not paced per channel.)"""
        try:
            await self.client.reactions_add(channel=channel, timestamp=ts, name=name)
        except SlackApiError as exc:
            if exc.response.get("error") != "already_reacted":
                raise

    async def upload(
        self,
        channel: str,
        content: bytes | str,
        *,
        filename: str,
        title: str = "",
        thread: str = "",
        comment: str = "",
    ) -> None:
        """files_upload_v2; sharing it posts a message, so it takes the channel's turn."""
        args: dict[str, Any] = {"channel": channel, "content": content, "filename": filename}
        if title:
            args["title"] = title
        if thread:
            args["thread_ts"] = thread
        if comment:
            args["initial_comment"] = comment
        async with self.turn(channel):
            await self.client.files_upload_v2(**args)

    # ---- lookups -------------------------------------------------------------------
    async def identity(self) -> Identity:
        if self._identity is None:
            r = await self.client.auth_test()
            self._identity = Identity(
                team=str(r.get("team", "")),
                team_id=str(r.get("team_id", "")),
                user=str(r.get("user", "")),
                user_id=str(r.get("user_id", "")),
                bot_id=str(r.get("bot_id", "")),
                url=str(r.get("url", "")),
            )
        return self._identity

    async def group_members(self, group: str) -> frozenset[str]:
        """Members of a user group, cached for a minute (membership changes are rare)."""
        now = time.monotonic()
        cached = self._groups.get(group)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            resp = await self.client.usergroups_users_list(usergroup=group)
            users: list[Any] = resp.get("users") or []
            members = frozenset(str(u) for u in users)
        except SlackApiError as exc:
            log.warning(
                "cannot list members of user group %s (%s); check the usergroups:read scope",
                group,
                exc.response.get("error"),
            )
            members = frozenset()
        self._groups[group] = (now + GROUP_CACHE_SECONDS, members)
        return members

    async def user_name(self, user: str) -> str:
        """A display name for the run record; empty when Slack will not say."""
        now = time.monotonic()
        cached = self._names.get(user)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            resp = await self.client.users_info(user=user)
            info = resp.get("user") or {}
            profile = info.get("profile") or {}
            name = str(profile.get("display_name") or info.get("real_name") or info.get("name") or "")
        except SlackApiError as exc:
            log.debug("users.info %s failed: %s", user, exc.response.get("error"))
            name = ""
        self._names[user] = (now + USER_CACHE_SECONDS, name)
        return name


async def read_bytes(path: str) -> bytes:
    """Attachments are read in a worker thread: the event loop never waits on the disk."""
    return await asyncio.to_thread(Path(path).read_bytes)
