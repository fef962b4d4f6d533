"""Every sentence the Discord adapter posts, and the markdown around them.

Shared sentences live in `adapters.texts`; the ones here only make sense in Discord
(reactions, `<@id>` mentions, `<t:…>` timestamps). Discord renders the model's Markdown as
it is; mentions in untrusted text never ping because every post sets allowed mentions.
"""

from __future__ import annotations

from dataclasses import replace

from adapters import texts
from core.events import ApprovalRequested, ApprovalResolved

from .payloads import discord_user

LIMIT = 2000  # characters per message, Discord's hard limit

HELP = "Ask me about this server, for example: <@{bot}> why is the disk full?"
APPROVAL_HINT = "React {approve} to approve or {deny} to deny. {who}"
APPROVERS = "Approvers: {names}."
NO_APPROVERS = "Nobody is configured to approve (DISCORD_APPROVERS, DISCORD_APPROVER_ROLES), so this will expire."
REQUESTED_BY = "Approval #{id} · asked by {requester} · expires <t:{at}:T> (<t:{at}:R>)"
DETAIL_ATTACHED = "The full {what} ({lines} lines) is attached; the preview above is cut."
RESULT = "**Result:** {line}"
INTERNAL_ERROR = "the Discord adapter hit an internal error ({kind}); the bot's log has the details"
THREAD_NAME_LIMIT = 90  # Discord allows 100
SUMMARY_LIMIT = 200  # the summary repeats the command; the code block below has it in full


def code_block(text: str, lang: str = "") -> str:
    # A literal ``` inside would close the block early; a zero-width space keeps it visible.
    return f"```{lang}\n" + text.replace("```", "`\u200b``") + "\n```"


def mention_list(users: frozenset[str], roles: frozenset[str]) -> str:
    names = ", ".join([f"<@{u}>" for u in sorted(users)] + [f"<@&{r}>" for r in sorted(roles)])
    # A long list would push the action itself out of the 2,000 characters.
    return names if len(names) <= 400 else f"{len(users)} people and {len(roles)} role(s) (see DISCORD_APPROVERS)"


def person(decider: str) -> str:
    """`discord:4001` → `<@4001>` (Discord shows the name); anything else (timeout, restart) as is."""
    user = discord_user(decider)
    return f"<@{user}>" if user is not None else decider


def approval_message(
    ev: ApprovalRequested,
    *,
    approvers: frozenset[str],
    roles: frozenset[str],
    approve: str,
    deny: str,
    limit: int = LIMIT,
) -> tuple[str, bool]:
    """The approval message (the exact action in a code block) and whether the detail must be attached."""
    names = mention_list(approvers, roles)
    who = APPROVERS.format(names=names) if names else NO_APPROVERS
    if ev.detail_kind == "argv":
        shown, lang = f"$ {ev.detail}", ""
    else:
        shown, lang = ev.detail, "diff" if ev.detail_kind == "diff" else ""
    summary = ev.summary if len(ev.summary) <= SUMMARY_LIMIT else ev.summary[: SUMMARY_LIMIT - 1] + "…"
    head = [f"⚠️ **{texts.approval_header(ev)}**", summary]
    tail = [
        REQUESTED_BY.format(id=ev.approval_id, requester=person(ev.requested_by), at=int(ev.expires_at)),
        APPROVAL_HINT.format(approve=approve, deny=deny, who=who),
    ]
    full = "\n".join([*head, code_block(shown, lang), *tail])
    if len(full) <= limit:
        return full, False
    # Too long for one message: a preview here, the exact text attached to the same message.
    what = texts.DETAIL_FILE_NOUN.get(ev.detail_kind, "action")
    note = DETAIL_ATTACHED.format(what=what, lines=len(shown.splitlines()))
    budget = max(100, limit - len("\n".join([*head, note, *tail])) - 40)
    preview = shown[:budget]
    if "\n" in preview:
        preview = preview.rsplit("\n", 1)[0]
    return "\n".join([*head, code_block(preview + "\n…", lang), note, *tail]), True


def with_names(ev: ApprovalResolved) -> ApprovalResolved:
    """`discord:1,discord:2` → `<@1>, <@2>` so the thread shows who decided."""
    names = [person(d) for d in ev.decided_by.split(",") if d]
    return replace(ev, decided_by=", ".join(names) or ev.decided_by)


def resolution(ev: ApprovalResolved) -> str:
    icon = "▶️" if ev.approved else "⛔"
    return f"{icon} " + RESULT.format(line=texts.resolution_line(with_names(ev)))


def failure_line(error: str) -> str:
    """One readable line, however long or multi-line the error."""
    return "❌ " + texts.failure_text(error)


def thread_name(question: str, fallback: str) -> str:
    first = " ".join(question.split())
    if not first:
        return fallback
    return first if len(first) <= THREAD_NAME_LIMIT else first[: THREAD_NAME_LIMIT - 1] + "…"
