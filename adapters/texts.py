"""Every user-facing sentence the adapters post, in one place."""

from __future__ import annotations

import json
from typing import Any

from core.events import ApprovalRequested, ApprovalResolved

NOT_AN_APPROVER = "<@{user}> you are not an approver for this action, so your reaction was ignored."
SELF_APPROVAL = "<@{user}> self-approval is disabled here: another approver has to decide."
ALREADY_DECIDED = "<@{user}> approval #{id} is already {status}; your reaction changed nothing."
VOTE_RECORDED = "Approval from <@{user}> noted; {remaining} more approver(s) needed."
EXPIRED_ON_RESTART = (
    "Approval #{id} ({summary}) expired: the bot restarted before anyone decided. Ask again if it is still needed."
)
WORKING = "Working on it…"
RUN_FAILED = "Sorry, that failed: {error}"


def failure_text(error: str, *, limit: int = 300) -> str:
    """A run's error as one readable line, however long or multi-line the error."""
    first = " ".join(error.split())
    if len(first) > limit:
        first = first[: limit - 1] + "…"
    return RUN_FAILED.format(error=first)


def format_args(args: dict[str, Any], limit: int = 200) -> str:
    text = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in args.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short(text: str, *, lines: int = 8, chars: int = 600) -> str:
    """A preview of long output; the full text stays in the store."""
    out = text.strip("\n").splitlines()
    cut = len(out) > lines
    preview = "\n".join(out[:lines])
    if len(preview) > chars:
        preview, cut = preview[:chars], True
    return preview + ("\n…" if cut else "")


def approval_header(ev: ApprovalRequested) -> str:
    what = {"argv": "command", "diff": "file change", "text": "action"}.get(ev.detail_kind, "action")
    return f"Approval needed ({ev.risk} on {ev.host}): {ev.tool} wants to run this {what}"


def resolution_line(ev: ApprovalResolved) -> str:
    if ev.approved:
        return f"Approved by {ev.decided_by}."
    if ev.decided_by == "timeout":
        return f"Not approved in time: denied ({ev.reason})."
    return f"Denied by {ev.decided_by}" + (f": {ev.reason}" if ev.reason and ev.reason != "denied" else ".")
