"""The Web API as the adapter uses it: paced per channel, 429s retried, lookups cached.

Posts and edits go through `Pacer` (about one per second per channel, Slack's limit for
chat.postMessage). A 429 is retried by slack_sdk after `Retry-After`; our retry handler
also pushes the channel's pacer back by the same delay, so the calls queued behind it
wait instead of hitting the limit again.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from adapters.progress import Pacer

from .config import SlackConfig

log = logging.getLogger(__name__)

# The channel of the call in flight, so the 429 handler knows which pacer key to delay.
_channel: contextvars.ContextVar[str] = contextvars.ContextVar("slack_channel", default="")

GROUP_CACHE_SECONDS = 60.0
USER_CACHE_SECONDS = 3600.0


class _PacedRateLimitRetry(AsyncRateLimitErrorRetryHandler):
    def __init__(self, pacer: Pacer, *, max_retry_count: int) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.pacer = pacer

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        channel = _channel.get()
        if response is not None and channel:
            delay = _retry_after(response)
            log.info("Slack rate limit on %s: waiting %.0f s", channel, delay)
            self.pacer.delay_all(channel, delay)
        await super().prepare_for_next_attempt_async(state=state, request=request, response=response, error=error)


def _retry_after(response: HttpResponse) -> float:
    for key, values in response.headers.items():
        if key.lower() == "retry-after" and values:
            try:
                return float(values[0])
            except ValueError:
                break
    return 1.0


def make_client(config: SlackConfig, pacer: Pacer, *, max_retries: int = 6) -> AsyncWebClient:
    handlers: list[AsyncRetryHandler] = [
        AsyncConnectionErrorRetryHandler(max_retry_count=2),
        _PacedRateLimitRetry(pacer, max_retry_count=max_retries),
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
    def __init__(self, client: AsyncWebClient, pacer: Pacer) -> None:
        self.client = client
        self.pacer = pacer
        self._identity: Identity | None = None
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._names: dict[str, tuple[float, str]] = {}

    # ---- messages ----------------------------------------------------------------
    async def post(self, channel: str, text: str, *, thread: str = "", paced: bool = True) -> str:
        """Post a message (in `thread` when given); returns its ts."""
        if paced:
            await self.pacer.acquire(channel)
        args: dict[str, Any] = {"channel": channel, "text": text, "unfurl_links": False, "unfurl_media": False}
        if thread:
            args["thread_ts"] = thread
        with _in_channel(channel):
            resp = await self.client.chat_postMessage(**args)
        return str(resp["ts"])

    async def update(self, channel: str, ts: str, text: str, *, paced: bool = True) -> None:
        if paced:
            await self.pacer.acquire(channel)
        with _in_channel(channel):
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
        """files_upload_v2; sharing it posts a message, so it is paced like one."""
        await self.pacer.acquire(channel)
        args: dict[str, Any] = {"channel": channel, "content": content, "filename": filename}
        if title:
            args["title"] = title
        if thread:
            args["thread_ts"] = thread
        if comment:
            args["initial_comment"] = comment
        with _in_channel(channel):
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
            members = frozenset(str(u) for u in resp.get("users", []))
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


@contextmanager
def _in_channel(channel: str) -> Iterator[None]:
    token = _channel.set(channel)
    try:
        yield
    finally:
        _channel.reset(token)
