"""A reaction on an approval message → the core's gate decides.

The approval is found by (channel, message ts) in the store, not in memory, so a
reaction still counts after the adapter restarts or when another bot process posted
the message. Who may approve is the gate's business; this only says who reacted and
which user groups they are in, and tells a person once why their reaction did nothing.
"""

from __future__ import annotations

import json
import logging

from adapters import texts
from core.approval import ApprovalGate, DecideResult, Outcome
from core.store import Store
from core.store.models import Approval

from . import messages as m
from .api import SlackApi
from .config import SlackConfig
from .payloads import PLATFORM, ReactionEvent

log = logging.getLogger(__name__)


def reaction_name(raw: str) -> str:
    """`+1::skin-tone-3` → `+1`."""
    return raw.split("::", 1)[0].strip(":")


class ReactionDecider:
    def __init__(self, api: SlackApi, gate: ApprovalGate, store: Store, config: SlackConfig) -> None:
        self.api = api
        self.gate = gate
        self.store = store
        self.config = config

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
        if event_id and not await self.store.first_time(f"{PLATFORM}:{event_id}"):
            return  # Slack redelivered the event
        result = await self.gate.decide(
            approval.id, platform=PLATFORM, user_id=user, approve=approve, roles=await self._groups_of(user)
        )
        log.info("approval #%s: %s reacted %s → %s", approval.id, user, event.get("reaction"), result.outcome)
        await self._explain(approval, user, result)

    async def _groups_of(self, user: str) -> list[str]:
        if user in self.config.approvers:
            return []  # already an approver: no need to ask Slack about groups
        return [g for g in self.config.approver_groups if user in await self.api.group_members(g)]

    async def _explain(self, approval: Approval, user: str, result: DecideResult) -> None:
        """Approve/deny are rendered by the run itself; the other outcomes need a word here."""
        match result.outcome:
            case Outcome.APPROVED | Outcome.DENIED | Outcome.UNKNOWN:
                return
            case Outcome.VOTE_RECORDED:
                text = texts.VOTE_RECORDED.format(user=user, remaining=await self._remaining(approval))
            case Outcome.NOT_APPROVER:
                text = texts.NOT_AN_APPROVER.format(user=user)
            case Outcome.SELF_APPROVAL:
                text = texts.SELF_APPROVAL.format(user=user)
            case Outcome.ALREADY_DECIDED:
                # Re-read: when the gate has just expired it, the row it returns is the stale one.
                now = await self.store.get_approval(approval.id or 0)
                status = now.status if now is not None else "decided"
                text = m.ALREADY_DECIDED.format(user=user, id=approval.id, status=status)
        if not await self._first_telling(approval, user, result):
            return  # told once already; more reactions from them stay quiet
        await self.api.post(approval.channel, text, thread=approval.thread)

    async def _first_telling(self, approval: Approval, user: str, result: DecideResult) -> bool:
        # Kept in the store, so "once" holds across restarts and bot processes.
        return await self.store.first_time(f"{PLATFORM}:told:{approval.id}:{user}:{result.outcome}")

    async def _remaining(self, approval: Approval) -> int:
        row = await self.store.get_approval(approval.id or 0)
        votes = json.loads(row.votes_json) if row is not None else []
        return max(1, self.gate.rules.needed(approval.risk) - len(votes))
