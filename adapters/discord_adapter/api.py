"""REST calls as the adapter makes them: by channel id, paced per channel, never pinging by accident.

Every create or edit of a message goes through `Pacer` (Discord allows about 5 per 5 s per
channel, and a thread is a channel of its own). A 429 is still possible (a proxy, another
process on the same token); discord.py retries it after the delay Discord gives, so the
call returns late but never fails or drops the text.

Channels are addressed by id through `PartialMessageable`, so a thread or DM that is not
in discord.py's cache (after a restart, for example) works the same.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import discord

from adapters.progress import Pacer


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


async def read_upload(path: str, filename: str = "") -> Upload:
    """Files are read in a worker thread: the event loop never waits on the disk."""
    data = await asyncio.to_thread(Path(path).read_bytes)
    return Upload(filename or Path(path).name, data)
