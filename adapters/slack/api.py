"""The Web API as the adapter uses it: one call at a time per channel, paced, lookups cached.

Slack allows about one message post per second per channel. Every post, edit and
file share in a channel takes that channel's turn: calls run one after another, and
the next starts `pace` seconds after the previous one was answered, so Slack never
sees two within a second, whatever the network latency.

Posts, edits, reactions and uploads are made by the outbox (`adapters.outbox`) through
`SlackDelivery`, on a client that does not retry 429s itself: a 429 goes back to the
outbox, which retries after Slack's `Retry-After` for as long as it takes, and holds the
channel's turn meanwhile. The live part of a stream (`adapters.slack.stream`) takes the same
turns on the same client; its end is an outbox entry like a post. Lookups (auth.test,
users.info, …) keep slack_sdk's own retries.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import ClientError
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.outbox import Delivery, Payload, RetryLater, Undeliverable

from . import messages as m
from .config import SlackConfig
from .payloads import PLATFORM

log = logging.getLogger(__name__)

GROUP_CACHE_SECONDS = 60.0
USER_CACHE_SECONDS = 3600.0


#: Errors after which trying again later may work (besides HTTP 429 and 5xx).
RETRYABLE_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"})
#: Refusals that mean the bot cannot post in that place at all: no point saying so there.
CANNOT_POST_HERE = frozenset(
    {"channel_not_found", "not_in_channel", "is_archived", "invalid_auth", "account_inactive", "token_revoked",
     "not_authed", "missing_scope", "restricted_action", "thread_not_found"}
)  # fmt: skip
#: A stream that is over (it expired, or the person stopped it); its message stays as it is.
STREAM_GONE = frozenset(
    {"message_not_in_streaming_state", "message_not_found", "stopped_by_user", "streaming_state_conflict"}
)


def make_client(config: SlackConfig, *, max_retries: int = 6) -> AsyncWebClient:
    """slack_sdk retries only connection errors by default; 429s are retried too unless `max_retries`
    is 0 (the outbox's client: it retries them itself)."""
    handlers: list[AsyncRetryHandler] = [AsyncConnectionErrorRetryHandler(max_retry_count=2)]
    if max_retries:
        handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=max_retries))
    return AsyncWebClient(token=config.bot_token, base_url=config.api_url, retry_handlers=handlers)


@dataclass(slots=True)
class Turn:
    """A channel's turn; `posted` False when the call turned out to post nothing (it was refused
    for good), so the next call need not wait for it."""

    posted: bool = True


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
    def __init__(self, client: AsyncWebClient, *, pace: float, sender: AsyncWebClient | None = None) -> None:
        self.client = client
        #: Posts, edits, reactions and uploads (the outbox's calls); by default the same client.
        self.sender = sender or client
        self.pace = pace
        self._turns: dict[str, asyncio.Lock] = {}
        self._last_answer: dict[str, float] = {}
        self._identity: Identity | None = None
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._names: dict[str, tuple[float, str]] = {}

    # ---- messages ----------------------------------------------------------------
    @asynccontextmanager
    async def turn(self, channel: str) -> AsyncIterator[Turn]:
        """This channel's turn: one call at a time, `pace` seconds after the last answer (unless
        the call posted nothing: `Turn.posted` False)."""
        async with self._turns.setdefault(channel, asyncio.Lock()):
            before = self._last_answer.get(channel, float("-inf"))
            wait = before + self.pace - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            turn = Turn()
            try:
                yield turn
            finally:
                self._last_answer[channel] = time.monotonic() if turn.posted else before

    def hold(self, channel: str, seconds: float) -> None:
        """After a 429: the channel's next call waits `seconds` (Slack's Retry-After)."""
        self._last_answer[channel] = max(self._last_answer.get(channel, 0.0), time.monotonic() + seconds - self.pace)

    async def post(self, channel: str, text: str, *, thread: str = "") -> str:
        """Post a message (in `thread` when given); returns its ts."""
        args: dict[str, Any] = {"channel": channel, "text": text, "unfurl_links": False, "unfurl_media": False}
        if thread:
            args["thread_ts"] = thread
        async with self.turn(channel):
            resp = await self.sender.chat_postMessage(**args)
        return str(resp["ts"])

    async def ephemeral(self, channel: str, user: str, text: str, *, thread: str = "") -> None:
        """A message only `user` sees (in `thread` when given, else right under their post)."""
        async with self.turn(channel):
            await self.sender.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread or None)

    async def update(self, channel: str, ts: str, text: str) -> None:
        async with self.turn(channel):
            await self.sender.chat_update(channel=channel, ts=ts, text=text)

    async def react(self, channel: str, ts: str, name: str) -> None:
        """Add a reaction; one that is already there is fine. (reactions.* are not paced per channel.)"""
        try:
            await self.sender.reactions_add(channel=channel, timestamp=ts, name=name)
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
            await self.sender.files_upload_v2(**args)

    async def stop_stream(self, channel: str, ts: str, chunks: list[dict[str, Any]]) -> None:
        """End a stream with its last chunks (task states, the answer); it takes the channel's turn."""
        async with self.turn(channel):
            await self.sender.chat_stopStream(channel=channel, ts=ts, chunks=chunks)

    async def set_status(self, channel: str, thread: str, status: str) -> None:
        """The assistant status under the thread ("<app> is thinking…"); Slack clears it when the app
        posts there, or after two minutes. Only assistant threads have one: elsewhere Slack refuses.
        Cosmetic, so on the client that does not wait out 429s: a late status would outlive the reply."""
        await self.sender.assistant_threads_setStatus(channel_id=channel, thread_ts=thread, status=status)

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


class SlackDelivery:
    """The outbox's transport: one entry → one Web API call, its failure sorted into retry or refusal.

    Payloads: a post has `text`, and optionally `thread_ts` (overrides the lane's thread; "" for
    none), `ephemeral_to` (a user: only they see it), `upload` (`content` or `content_b64`,
    `filename`, `title`, `comment`) or `stream` (`ts`, `chunks`: the end of a stream, whose
    `text`, if any, is posted instead when the stream is already over); an update has `text`; a
    reaction has `name`."""

    platform = PLATFORM

    def __init__(self, api: SlackApi) -> None:
        self.api = api

    async def deliver(self, item: Delivery) -> str:
        payload, channel = item.payload, item.channel
        thread = str(payload.get("thread_ts", item.thread) or "")
        try:
            if item.kind == "update":
                await self.api.update(channel, item.target_ref, str(payload["text"]))
                return item.target_ref
            if item.kind == "reaction":
                await self.api.react(channel, item.target_ref, str(payload["name"]))
                return ""
            if upload := payload.get("upload"):
                content = upload.get("content")
                data: bytes | str = base64.b64decode(upload["content_b64"]) if content is None else str(content)
                await self.api.upload(
                    channel, data, filename=str(upload["filename"]), title=str(upload.get("title", "")),
                    thread=thread, comment=str(upload.get("comment", "")),
                )  # fmt: skip
                return ""
            if stream := payload.get("stream"):
                return await self._stop_stream(channel, thread, stream, str(payload.get("text") or ""))
            if user := payload.get("ephemeral_to"):
                await self.api.ephemeral(channel, str(user), str(payload["text"]), thread=thread)
                return ""
            return await self.api.post(channel, str(payload["text"]), thread=thread)
        except SlackApiError as exc:
            raise self._sorted(channel, exc) from exc
        except (ClientError, OSError, TimeoutError) as exc:
            raise RetryLater(f"{type(exc).__name__}: {exc}") from exc

    async def _stop_stream(self, channel: str, thread: str, stream: Payload, fallback: str) -> str:
        ts = str(stream["ts"])
        try:
            await self.api.stop_stream(channel, ts, list(stream.get("chunks") or []))
            return ts
        except SlackApiError as exc:
            sorted_ = self._sorted(channel, exc)
            if isinstance(sorted_, RetryLater):
                raise
            if not fallback:
                if sorted_.reason in STREAM_GONE:
                    return ts  # over already, with nothing more to say
                raise
            log.info("the stream %s in %s could not be ended (%s); posting its answer", ts, channel, sorted_.reason)
        return await self.api.post(channel, fallback, thread=thread)  # nothing lost: the answer as a message

    def _sorted(self, channel: str, exc: SlackApiError) -> RetryLater | Undeliverable:
        status = int(getattr(exc.response, "status_code", 200) or 200)
        error = str(exc.response.get("error") or f"HTTP {status}")
        if status == 429 or error == "ratelimited":
            after = retry_after(exc.response.headers)
            self.api.hold(channel, after)
            return RetryLater(f"rate limited by Slack ({error})", after=after)
        if status >= 500 or error in RETRYABLE_ERRORS:
            return RetryLater(f"Slack answered {error}")
        return Undeliverable(error)

    def notice(self, item: Delivery, reason: str) -> Payload | None:
        if reason in CANNOT_POST_HERE:
            return None
        return {"text": m.failure_line(m.NOT_DELIVERED.format(error=reason))}


def retry_after(headers: Any) -> float:
    """Slack's Retry-After in seconds (whole seconds in practice; a fraction is taken as given)."""
    try:
        value = headers.get("Retry-After") or headers.get("retry-after")
        if isinstance(value, list):
            value = value[0]
        return max(0.0, float(value))
    except (AttributeError, TypeError, ValueError):
        return 1.0


async def read_bytes(path: str) -> bytes:
    """Attachments are read in a worker thread: the event loop never waits on the disk."""
    return await asyncio.to_thread(Path(path).read_bytes)
