"""A reaction on an approval message → the core's gate decides.

The approval is found by (channel, message id) in the store, never in discord.py's
message cache, so a reaction counts on a message the client never saw: after a restart,
or when another bot process sharing the database posted it. Who may approve is the
gate's business; this only says who reacted and which roles they hold, and tells a person
once why their reaction did nothing.
"""

from __future__ import annotations

import logging

import discord

from adapters import texts
from adapters.approval_notes import reaction_note
from adapters.outbox import Outbox
from core.approval import ApprovalGate, DecideResult
from core.store import Store
from core.store.db import is_unavailable
from core.store.models import Approval

from .api import DiscordApi
from .config import DiscordConfig
from .payloads import PLATFORM, emoji_name

log = logging.getLogger(__name__)


class ApprovalReactions:
    def __init__(
        self,
        api: DiscordApi,
        gate: ApprovalGate,
        store: Store,
        config: DiscordConfig,
        *,
        outbox: Outbox,
    ) -> None:
        self.api = api
        self.gate = gate
        self.store = store
        self.config = config
        self.outbox = outbox
        self._approve = {emoji_name(e) for e in config.approve_reactions}
        self._deny = {emoji_name(e) for e in config.deny_reactions}

    def vote(self, emoji: discord.PartialEmoji | str) -> bool | None:
        """True approves, False denies, None is any other reaction."""
        name = emoji_name(emoji)
        if name in self._approve:
            return True
        if name in self._deny:
            return False
        return None

    async def handle(self, payload: discord.RawReactionActionEvent) -> None:
        """Called for people's reactions only (the adapter drops the bot's own and other bots')."""
        approve = self.vote(payload.emoji)
        if approve is None:
            return
        approval = await self.store.approval_for_message(PLATFORM, str(payload.channel_id), str(payload.message_id))
        if approval is None or approval.id is None:
            return  # a reaction on some other message
        user = str(payload.user_id)
        roles = await self._roles_of(payload)
        try:
            result = await self.gate.decide(approval.id, platform=PLATFORM, user_id=user, approve=approve, roles=roles)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log.error("approval #%s: %s's reaction could not be saved (%s)", approval.id, user, exc)
            await self._say(payload.channel_id, texts.CANNOT_SAVE_VOTE.format(user=user), user=payload.user_id)
            return
        log.info("approval #%s: %s reacted %s → %s", approval.id, user, payload.emoji, result.outcome)
        await self._explain(approval, payload.channel_id, payload.user_id, result)

    async def _roles_of(self, payload: discord.RawReactionActionEvent) -> list[str]:
        """In a server the event carries the member and its roles. In a DM it does not: a role
        held in any server the bot shares with the person counts."""
        if payload.member is not None:
            return [str(r.id) for r in payload.member.roles]
        if str(payload.user_id) in self.config.approvers or not self.config.approver_roles:
            return []
        roles: list[str] = []
        for guild in self.api.client.guilds:
            member = guild.get_member(payload.user_id)
            if member is None:
                try:
                    member = await guild.fetch_member(payload.user_id)
                except discord.HTTPException:  # not a member there (404) or not allowed to ask
                    continue
            roles.extend(str(r.id) for r in member.roles)
        return roles

    async def _explain(self, approval: Approval, channel_id: int, user_id: int, result: DecideResult) -> None:
        note = await reaction_note(self.store, self.gate, approval, platform=PLATFORM, user=str(user_id), result=result)
        if note is not None:
            await self._say(channel_id, note, user=user_id)

    async def _say(self, channel_id: int, text: str, *, user: int) -> None:
        await self.outbox.post(str(channel_id), "", {"text": text, "notify": [user]})
