"""What to tell someone whose reaction on an approval message did not simply approve or deny.

Both chat adapters use this: the note is said once per approval, person and outcome (kept in the
store, so "once" holds across restarts and bot processes); approve and deny are rendered by the
run itself.
"""

from __future__ import annotations

import json

from adapters import texts
from core.approval import ApprovalGate, DecideResult, Outcome
from core.store import Store
from core.store.models import Approval


async def reaction_note(
    store: Store, gate: ApprovalGate, approval: Approval, *, platform: str, user: str, result: DecideResult
) -> str | None:
    """The sentence to post for this outcome, or None when there is nothing (more) to say."""
    match result.outcome:
        case Outcome.APPROVED | Outcome.DENIED | Outcome.UNKNOWN:
            return None
        case Outcome.VOTE_RECORDED:
            row = await store.get_approval(approval.id or 0)
            votes = json.loads(row.votes_json) if row is not None else []
            remaining = max(1, gate.rules.needed(approval.risk) - len(votes))
            text = texts.VOTE_RECORDED.format(user=user, remaining=remaining)
        case Outcome.NOT_APPROVER:
            text = texts.NOT_AN_APPROVER.format(user=user)
        case Outcome.SELF_APPROVAL:
            text = texts.SELF_APPROVAL.format(user=user)
        case Outcome.OWNER_GONE:
            text = texts.OWNER_GONE.format(user=user, id=approval.id)
        case Outcome.ALREADY_DECIDED:
            # Re-read: when the gate has just expired it, the row it returned is the stale one.
            now = await store.get_approval(approval.id or 0)
            status = now.status if now is not None else "decided"
            text = texts.ALREADY_DECIDED.format(user=user, id=approval.id, status=status)
    if result.outcome is not Outcome.VOTE_RECORDED and not await store.first_time(
        f"{platform}:told:{approval.id}:{user}:{result.outcome}"
    ):
        return None  # told once already; more reactions from them stay quiet
    return text
