"""Slack event payloads at the edge: typed shapes, filters, and translation to `Request`.

Raw payloads stay in this module and the adapter; the core only ever sees a `Request`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypedDict, cast

from core.events import InputFile, Request

PLATFORM = "slack"

# Message subtypes that are a person saying something; the rest (edits, deletions,
# joins, bot_message…) are never a request.
_HUMAN_SUBTYPES = frozenset({"", "file_share", "thread_broadcast"})
_PRIVATE_TYPES = frozenset({"im", "mpim", "group"})


class MessageEvent(TypedDict, total=False):
    """`message` and `app_mention` events (the fields the adapter reads)."""

    type: str
    subtype: str
    user: str
    bot_id: str
    text: str
    ts: str
    thread_ts: str
    channel: str
    channel_type: str  # channel | group | im | mpim (absent on app_mention)
    files: list[dict[str, Any]]  # what the person attached (`name`, `mimetype`, `size`, `url_private`…)


class ReactionItem(TypedDict, total=False):
    type: str
    channel: str
    ts: str


class ReactionEvent(TypedDict, total=False):
    type: str
    user: str
    reaction: str
    item: ReactionItem
    event_ts: str


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message that may be for the bot, normalised."""

    channel: str
    ts: str
    thread: str  # the thread the conversation lives in (the message itself when top level)
    user: str
    text: str
    in_thread: bool  # a reply inside an existing thread
    is_dm: bool
    is_private: bool
    mentions_bot: bool
    attachments: tuple[InputFile, ...] = ()  # names, types and sizes; an image's bytes are fetched later, if wanted


def as_message(event: dict[str, Any]) -> MessageEvent:
    return cast(MessageEvent, event)


def as_reaction(event: dict[str, Any]) -> ReactionEvent:
    return cast(ReactionEvent, event)


def from_a_bot(event: MessageEvent | ReactionEvent, bot_user_id: str) -> bool:
    """Our own events and every other bot's: answering them is how bots loop."""
    if event.get("user") == bot_user_id:
        return True
    if event.get("type") == "reaction_added":
        return False
    msg = cast(MessageEvent, event)
    return bool(msg.get("bot_id")) or msg.get("subtype") == "bot_message"


def normalise(event: MessageEvent, bot_user_id: str) -> Incoming | None:
    """None for anything that is not a person's message (edits, joins, bot posts…)."""
    if event.get("subtype", "") not in _HUMAN_SUBTYPES or from_a_bot(event, bot_user_id):
        return None
    channel, ts, user = event.get("channel", ""), event.get("ts", ""), event.get("user", "")
    if not (channel and ts and user):
        return None
    thread_ts = event.get("thread_ts", "")
    channel_type = event.get("channel_type") or _type_from_id(channel)
    raw = event.get("text", "")
    return Incoming(
        channel=channel,
        ts=ts,
        thread=thread_ts or ts,
        user=user,
        text=strip_mention(raw, bot_user_id),
        in_thread=bool(thread_ts) and thread_ts != ts,
        is_dm=channel_type == "im",
        is_private=channel_type in _PRIVATE_TYPES,
        mentions_bot=_mention(bot_user_id).search(raw) is not None or event.get("type") == "app_mention",
        attachments=tuple(_input_file(f) for f in event.get("files") or () if isinstance(f, dict)),
    )


def _input_file(file: dict[str, Any]) -> InputFile:
    name = str(file.get("name") or file.get("title") or "file")
    return InputFile(
        name,
        str(file.get("mimetype") or "application/octet-stream"),
        int(file.get("size") or 0),
        url=str(file.get("url_private_download") or file.get("url_private") or ""),
    )


def _type_from_id(channel: str) -> str:
    # app_mention carries no channel_type; ids tell DMs (D…) and old private groups (G…) apart.
    return {"D": "im", "G": "group"}.get(channel[:1], "channel")


def _mention(bot_user_id: str) -> re.Pattern[str]:
    return re.compile(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>")


def strip_mention(text: str, bot_user_id: str) -> str:
    """The question without the bot's own mention (`<@UBOT>` or `<@UBOT|name>`)."""
    return _mention(bot_user_id).sub("", text).strip()


def to_request(msg: Incoming, *, user_name: str = "") -> Request:
    return Request(
        platform=PLATFORM,
        user_id=msg.user,
        user_name=user_name,
        channel=msg.channel,
        thread=msg.thread,
        text=msg.text,
        is_private=msg.is_private,
        attachments=msg.attachments,
    )


def slack_user(decider: str) -> str | None:
    """`slack:U123` (how the gate names deciders) → `U123`."""
    platform, _, user = decider.partition(":")
    return user if platform == PLATFORM and user else None
