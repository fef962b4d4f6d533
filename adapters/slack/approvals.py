"""A reaction on an approval message → the core's gate decides.

The approval is found by (channel, message ts) in the store, not in memory, so a
reaction still counts after the adapter restarts or when another bot process posted
the message. Who may approve is the gate's business; this only says who reacted and
which user groups they are in, and tells a person once why their reaction did nothing.
"""

from __future__ import annotations

import logging

from adapters import texts
from adapters.approval_notes import reaction_note
from adapters.intake import Intake, StoreUnavailable
from adapters.outbox import Outbox
from core.approval import ApprovalGate, DecideResult
from core.store import Store
from core.store.db import is_unavailable
from core.store.models import Approval

from .api import SlackApi
from .config import SlackConfig
from .payloads import PLATFORM, ReactionEvent

log = logging.getLogger(__name__)


def reaction_name(raw: str) -> str:
    """`+1::skin-tone-3` → `+1`."""
    return raw.split("::", 1)[0].strip(":")


class ApprovalReactions:
    def __init__(
        self, api: SlackApi, gate: ApprovalGate, store: Store, config: SlackConfig, *, outbox: Outbox, intake: Intake
    ) -> None:
        self.api = api
        self.gate = gate
        self.store = store
        self.config = config
        self.outbox = outbox
        self.intake = intake

    def vote(self, reaction: str) -> bool | None:
        """True approves, False denies, None is any other reaction."""
        name = reaction_name(reaction)
        if name in self.config.approve_reactions:
            return True
        if name in self.config.deny_reactions:
            return False
        return None

    async def handle(self, event: ReactionEvent, *, event_id: str = "") -> None:
        approve = self.vote(event.get("reaction", ""))
        item = event.get("item") or {}
        channel, ts, user = item.get("channel", ""), item.get("ts", ""), event.get("user", "")
        if approve is None or not (channel and ts and user):
            return
        approval = await self.store.approval_for_message(PLATFORM, channel, ts)
        if approval is None or approval.id is None:
            return  # a reaction on some other message
        try:
            if event_id and not await self.intake.claim(f"{PLATFORM}:{event_id}"):
                return  # Slack redelivered the event
            result = await self.gate.decide(
                approval.id, platform=PLATFORM, user_id=user, approve=approve, roles=await self._groups_of(user)
            )
        except Exception as exc:
            if not (isinstance(exc, StoreUnavailable) or is_unavailable(exc)):
                raise
            log.error("approval #%s: %s's reaction could not be saved (%s)", approval.id, user, exc)
            await self._say(approval, texts.CANNOT_SAVE_VOTE.format(user=user))
            return
        log.info("approval #%s: %s reacted %s → %s", approval.id, user, event.get("reaction"), result.outcome)
        await self._explain(approval, user, result)

    async def _groups_of(self, user: str) -> list[str]:
        if user in self.config.approvers:
            return []  # already an approver: no need to ask Slack about groups
        return [g for g in self.config.approver_groups if user in await self.api.group_members(g)]

    async def _explain(self, approval: Approval, user: str, result: DecideResult) -> None:
        note = await reaction_note(self.store, self.gate, approval, platform=PLATFORM, user=user, result=result)
        if note is not None:
            await self._say(approval, note)

    async def _say(self, approval: Approval, text: str) -> None:
        await self.outbox.post(approval.channel, approval.thread, {"text": text})
