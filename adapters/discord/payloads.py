"""Discord objects at the edge: which messages are for the bot, and their translation to `Request`.

discord.py objects stay in the adapter; the core only ever sees a `Request`.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass

import discord

from core.events import InputFile, Request

PLATFORM = "discord"

# A person typing (or replying). Joins, pins, "thread created" notices and the like are never a request.
_HUMAN_TYPES = frozenset({discord.MessageType.default, discord.MessageType.reply})


@dataclass(frozen=True, slots=True)
class Incoming:
    """A person's message that may be for the bot, normalised."""

    message_id: int
    channel_id: int  # where it was posted: a text channel, a thread or a DM
    parent_id: int  # the text channel (a thread's parent; the channel itself otherwise)
    thread_id: int | None  # the thread it was posted in, if any
    user_id: int
    user_name: str
    text: str  # without the bot's mention
    is_dm: bool
    mentions_bot: bool
    in_bot_thread: bool  # posted in a thread the bot opened: a follow-up, no mention needed
    attachments: tuple[InputFile, ...] = ()  # names, types and sizes; the bytes are fetched later, if wanted

    @property
    def for_bot(self) -> bool:
        return self.is_dm or self.mentions_bot or self.in_bot_thread


def normalise(message: discord.Message, me: discord.abc.User, *, channel: object = None) -> Incoming | None:
    """None for anything that is not a person's message: our own posts, other bots, webhooks, system notices.

    `channel` is the message's channel when discord.py did not have it cached (it then gives a
    `PartialMessageable`, which cannot say whether it is a thread, or whose).
    """
    if message.author.bot or message.author.id == me.id or message.webhook_id is not None:
        return None
    if message.type not in _HUMAN_TYPES:
        return None
    channel = message.channel if channel is None else channel
    is_dm = message.guild is None
    thread = channel if isinstance(channel, discord.Thread) else None
    self_role = message.guild.self_role if message.guild is not None else None
    role_ids = [self_role.id] if self_role is not None else []
    mentions_bot = any(u.id == me.id for u in message.mentions) or any(r in message.raw_role_mentions for r in role_ids)
    return Incoming(
        message_id=message.id,
        channel_id=message.channel.id,
        parent_id=thread.parent_id if thread is not None else message.channel.id,
        thread_id=thread.id if thread is not None else None,
        user_id=message.author.id,
        user_name=message.author.display_name,
        text=strip_mention(message.content, me.id, role_ids),
        is_dm=is_dm,
        mentions_bot=mentions_bot,
        in_bot_thread=thread is not None and thread.owner_id == me.id,
        attachments=tuple(
            InputFile(
                a.filename,
                a.content_type or mimetypes.guess_type(a.filename)[0] or "application/octet-stream",
                a.size,
                url=a.url,
            )
            for a in message.attachments
        ),
    )


def strip_mention(text: str, bot_id: int, role_ids: list[int]) -> str:
    """The question without the bot's mention (`<@id>`, `<@!id>`, or its managed role `<@&id>`)."""
    text = re.sub(rf"<@!?{bot_id}>", "", text)
    for role in role_ids:
        text = text.replace(f"<@&{role}>", "")
    return text.strip()


def to_request(msg: Incoming, *, thread_id: int | None) -> Request:
    """The conversation is the thread (or the whole DM): its id keys the history."""
    return Request(
        platform=PLATFORM,
        user_id=str(msg.user_id),
        user_name=msg.user_name,
        channel=str(msg.parent_id),
        thread=str(thread_id) if thread_id is not None else "",
        text=msg.text,
        attachments=msg.attachments,
        is_private=msg.is_dm,
    )


def discord_user(decider: str) -> int | None:
    """`discord:4001` (how the gate names deciders) → 4001."""
    platform, _, user = decider.partition(":")
    return int(user) if platform == PLATFORM and user.isdigit() else None


def emoji_name(emoji: discord.PartialEmoji | str) -> str:
    """A unicode emoji without its variation selector, so ✔ and ✔️ compare equal; custom ones as `name`."""
    name = emoji if isinstance(emoji, str) else (emoji.name or "")
    return name.replace("\ufe0f", "")
