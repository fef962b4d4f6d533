"""REST calls as the adapter makes them: by channel id, paced per channel, never pinging by accident.

Every create or edit of a message goes through `Pacer` (Discord allows about 5 per 5 s per
channel, and a thread is a channel of its own). A 429 is still possible (a proxy, another
process on the same token); discord.py retries it after the delay Discord gives, up to five
times, then raises `HTTPException` (status 429). That is where the outbox takes over:
`DiscordDelivery` sorts the failure, and the outbox retries after Discord's delay for as
long as it takes, so a sustained storm makes a post late, never lost.

Channels are addressed by id through `PartialMessageable`, so a thread or DM that is not
in discord.py's cache (after a restart, for example) works the same.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import discord

from adapters.outbox import Delivery, Payload, RetryLater, Undeliverable
from adapters.progress import Pacer

from . import messages as m
from .payloads import PLATFORM


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    data: bytes


MAX_FILES = 10  # per message


def mentions(users: Sequence[int] = ()) -> discord.AllowedMentions:
    """Model output, commands and tool output may contain @everyone or role mentions: only the
    people a message is meant for are notified."""
    return discord.AllowedMentions(
        everyone=False, roles=False, replied_user=False, users=[discord.Object(u) for u in users]
    )


class DiscordApi:
    def __init__(self, client: discord.Client, pacer: Pacer) -> None:
        self.client = client
        self.pacer = pacer

    def channel(self, channel_id: int) -> discord.PartialMessageable:
        return self.client.get_partial_messageable(channel_id)

    async def send(
        self,
        channel_id: int,
        text: str,
        *,
        files: Sequence[Upload] = (),
        notify: Sequence[int] = (),
        paced: bool = True,
    ) -> int:
        """Post a message; returns its id."""
        if paced:
            await self.pacer.acquire(str(channel_id))
        message = await self.channel(channel_id).send(
            content=text or None,
            files=[discord.File(io.BytesIO(f.data), filename=f.filename) for f in files],
            allowed_mentions=mentions(notify),
        )
        return message.id

    async def edit(self, channel_id: int, message_id: int, text: str, *, paced: bool = True) -> None:
        if paced:
            await self.pacer.acquire(str(channel_id))
        await self.channel(channel_id).get_partial_message(message_id).edit(content=text, allowed_mentions=mentions())

    async def react(self, channel_id: int, message_id: int, emoji: str) -> None:
        """Reactions have their own, separate rate limit; discord.py paces them."""
        await self.channel(channel_id).get_partial_message(message_id).add_reaction(emoji)

    async def unreact(self, channel_id: int, message_id: int, emoji: str) -> None:
        """Remove the bot's own reaction (removing everyone's would need Manage Messages)."""
        me = self.client.user
        if me is not None:
            await self.channel(channel_id).get_partial_message(message_id).remove_reaction(emoji, me)


class DiscordDelivery:
    """The outbox's transport: one entry → one REST call, its failure sorted into retry or refusal.

    Payloads: a post has `text`, and optionally `files` (`filename`, `data` in base64) and
    `notify` (user ids to ping); an update has `text`; a reaction has `emoji`. The lane's
    channel is where it goes: a thread, a DM or a text channel."""

    platform = PLATFORM

    def __init__(self, api: DiscordApi) -> None:
        self.api = api

    async def deliver(self, item: Delivery) -> str:
        payload, channel_id = item.payload, int(item.channel)
        try:
            if item.kind == "update":
                await self.api.edit(channel_id, int(item.target_ref), str(payload["text"]))
                return item.target_ref
            if item.kind == "reaction":
                await self.api.react(channel_id, int(item.target_ref), str(payload["emoji"]))
                return ""
            files = [Upload(str(f["filename"]), base64.b64decode(f["data"])) for f in payload.get("files", ())]
            notify = [int(u) for u in payload.get("notify", ())]
            return str(await self.api.send(channel_id, str(payload.get("text", "")), files=files, notify=notify))
        except discord.HTTPException as exc:
            raise self.sorted(item.channel, exc) from exc
        except discord.RateLimited as exc:  # only with `max_ratelimit_timeout` set on the client
            raise RetryLater(f"rate limited by Discord for {exc.retry_after:.1f} s", after=exc.retry_after) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise RetryLater(f"{type(exc).__name__}: {exc}") from exc

    def sorted(self, channel: str, exc: discord.HTTPException) -> RetryLater | Undeliverable:
        """Whether a failed call in `channel` may pass (429: after Discord's delay; 5xx) or not."""
        if exc.status == 429:
            after = retry_after(exc.response.headers)
            self.api.pacer.delay_all(channel, after)
            return RetryLater(f"rate limited by Discord ({exc.text or 429})", after=after)
        if exc.status >= 500:
            return RetryLater(f"Discord answered {exc.status}")
        return Undeliverable(f"{type(exc).__name__}: {exc}")

    def notice(self, item: Delivery, reason: str) -> Payload | None:
        if reason.startswith("NotFound"):  # the channel or message is gone: nowhere to say it
            return None
        return {"text": m.failure_line(m.INTERNAL_ERROR.format(kind=reason))}


def retry_after(headers: Mapping[str, str]) -> float:
    """Discord's delay in seconds: `X-RateLimit-Reset-After` (precise), else `Retry-After`."""
    for name in ("X-RateLimit-Reset-After", "Retry-After"):
        try:
            return max(0.0, float(headers[name]))
        except (KeyError, TypeError, ValueError):
            continue
    return 1.0


def as_files(uploads: Sequence[Upload]) -> list[dict[str, str]]:
    """Uploads as an outbox payload keeps them (the bytes in base64)."""
    return [{"filename": u.filename, "data": base64.b64encode(u.data).decode()} for u in uploads]


async def read_upload(path: str, filename: str = "") -> Upload:
    """Files are read in a worker thread: the event loop never waits on the disk."""
    data = await asyncio.to_thread(Path(path).read_bytes)
    return Upload(filename or Path(path).name, data)
