"""Scopes, authors and sources: who may see a memory, who may change it, who said it where and when."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from core.errors import InvalidArgument
from core.events import Request
from core.memory import texts
from core.memory.model import SHARED_SCOPE, SYSTEM_AUTHOR, Memory, private_scope

# Requesters that are not people: the scheduled checks (core.health.monitor.SCHEDULER_USER).
SYSTEM_USERS: Final = frozenset({"scheduler"})


def requester_scope(request: Request) -> str | None:
    """The requester's private scope, or None when the platform/user cannot name one."""
    try:
        return private_scope(request.platform, request.user_id)
    except InvalidArgument:
        return None


def write_scope(request: Request) -> str:
    """Where a memory told in this request goes: private in a DM (or the console), shared in a channel."""
    if request.is_private:
        scope = requester_scope(request)
        if scope is None:
            raise ValueError(f"cannot keep a private memory for {request.platform}:{request.user_id!r}")
        return scope
    return SHARED_SCOPE


def read_scopes(request: Request) -> list[str]:
    """What may be recalled for a request: the shared memories, plus the requester's own private ones
    only in a private conversation. In a channel everyone reads the answer, so DM memories stay out."""
    private = requester_scope(request) if request.is_private else None
    return [SHARED_SCOPE] if private is None else [SHARED_SCOPE, private]


def author_of(request: Request) -> str:
    """Who a memory stored for ``request`` is written by: ``platform:user``, or ``system`` for the scheduler."""
    if request.user_id in SYSTEM_USERS:
        return SYSTEM_AUTHOR
    return f"{request.platform}:{request.user_id}"


def owns(memory: Memory, request: Request) -> bool:
    """Whether the requester may change ``memory`` without an approval: they wrote it."""
    return bool(memory.owner) and memory.owner == author_of(request)


def author_label(memory: Memory) -> str:
    """``Alice (slack:U-alice)``, ``the system``, or ``nobody recorded`` for memories older than authors."""
    if not memory.owner:
        return texts.AUTHOR_UNKNOWN
    if memory.owner == SYSTEM_AUTHOR:
        return texts.AUTHOR_SYSTEM
    name = memory.author_name
    if not name and memory.source.get("user") and memory.owner.endswith(":" + memory.source["user"]):
        name = memory.source.get("user_name", "")
    return texts.AUTHOR_NAMED.format(name=name, author=memory.owner) if name else memory.owner


def source_of(request: Request) -> dict[str, str]:
    """What a memory keeps of where it came from (the store adds the time)."""
    source = {
        "platform": request.platform,
        "channel": request.channel,
        "thread": request.thread,
        "user": request.user_id,
        "user_name": request.user_name,
    }
    return {key: value for key, value in source.items() if value}


def _parse(stamp: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def short_date(stamp: str) -> str:
    when = _parse(stamp)
    return when.astimezone(UTC).strftime("%Y-%m-%d") if when else texts.WHEN_UNKNOWN


def long_date(stamp: str) -> str:
    when = _parse(stamp)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if when else texts.WHEN_UNKNOWN


def who(source: Mapping[str, str], *, detailed: bool = False) -> str:
    name, user, platform = source.get("user_name", ""), source.get("user", ""), source.get("platform", "")
    if detailed and name and user:
        return texts.WHO_NAMED.format(name=name, platform=platform or "?", user=user)
    return name or user or texts.WHO_UNKNOWN


def where(memory: Memory) -> str:
    platform, channel = memory.platform, memory.channel
    if memory.scope != SHARED_SCOPE:
        return texts.WHERE_DM.format(platform=platform or "?")
    if channel:
        return texts.WHERE_CHANNEL.format(channel=channel, platform=platform or "?")
    return texts.WHERE_PLATFORM.format(platform=platform) if platform else texts.WHERE_UNKNOWN


def describe_source(memory: Memory, *, detailed: bool = False) -> str:
    """``Alice, in channel C-ops on slack, 2025-01-03`` (detailed: with user id and time of day)."""
    if detailed:
        return texts.SOURCE_LONG.format(
            who=who(memory.source, detailed=True), where=where(memory), when=long_date(memory.updated_at)
        )
    return texts.SOURCE_SHORT.format(who=who(memory.source), where=where(memory), when=short_date(memory.updated_at))
