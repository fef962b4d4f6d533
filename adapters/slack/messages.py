"""Every sentence the Slack adapter posts, and the mrkdwn around them.

Shared sentences live in `adapters.texts`; the ones here only make sense in Slack
(reactions, mentions, `<!date>` stamps). Untrusted text (model output, commands, tool
output) is always escaped so it can never ping `@channel` or forge a mention.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace

from adapters import texts
from core.events import ApprovalRequested, ApprovalResolved

from .payloads import slack_user

HELP = "Ask me about this server in this thread, for example: <@{bot}> why is the disk full?"
APPROVAL_HINT = "React :white_check_mark: to approve or :x: to deny. {who}"
APPROVERS = "Approvers: {names}."
NO_APPROVERS = "Nobody is configured to approve (SLACK_APPROVERS), so this will expire."
REQUESTED_BY = "Approval #{id} · asked by {requester} · expires <!date^{at}^{{time}}|{fallback}>"
DETAIL_ATTACHED = "The full {what} ({lines} lines) is attached below; the preview above is cut."
RESULT = "*Result:* {line}"
INTERNAL_ERROR = "the Slack adapter hit an internal error ({kind}); the bot's log has the details"
NOT_DELIVERED = "Slack refused one of my messages here ({error}), so something above may be missing"


def escape(text: str) -> str:
    """Slack's three control characters; everything else is shown as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code_block(text: str) -> str:
    # A literal ``` inside would close the block early; a zero-width space keeps it visible.
    return "```\n" + escape(text).replace("```", "`\u200b``") + "\n```"


_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_STRIKE = re.compile(r"~~(.+?)~~")


def mrkdwn(markdown: str) -> str:
    """The model writes Markdown; Slack reads mrkdwn. Code blocks pass through untouched."""
    out: list[str] = []
    in_code = False
    for line in escape(markdown).splitlines():
        if line.strip().startswith("```"):
            in_code = not in_code
            out.append(line)
            continue
        if not in_code:
            heading = _HEADING.match(line)
            if heading:
                line = f"*{heading.group(1)}*"
            line = _BOLD.sub(lambda m: f"*{m.group(1) or m.group(2)}*", line)
            line = _STRIKE.sub(r"~\1~", line)
            line = _LINK.sub(r"<\2|\1>", line)
        out.append(line)
    return "\n".join(out)


def mention_list(users: frozenset[str], groups: tuple[str, ...]) -> str:
    names = [f"<@{u}>" for u in sorted(users)] + [f"<!subteam^{g}>" for g in groups]
    return ", ".join(names)


_USER_ID = re.compile(r"[UW][A-Z0-9]+")


def requester(requested_by: str) -> str:
    """`slack:U123` → a mention; anything else (`slack:scheduler`, `timeout`) as plain text."""
    user = slack_user(requested_by)
    if user and _USER_ID.fullmatch(user):
        return f"<@{user}>"
    return escape(user or requested_by)


def approval_message(
    ev: ApprovalRequested, *, approvers: frozenset[str], groups: tuple[str, ...], limit: int
) -> tuple[str, bool]:
    """The approval message (exact action in a code block) and whether the detail must be attached."""
    names = mention_list(approvers, groups)
    who = APPROVERS.format(names=names) if names else NO_APPROVERS
    shown = f"$ {ev.detail}" if ev.detail_kind == "argv" else ev.detail
    fallback = time.strftime("%H:%M UTC", time.gmtime(ev.expires_at))
    # The code block is the exact action; a summary in mrkdwn could render `*`/`_` as formatting.
    head = [f":warning: *{escape(texts.approval_header(ev))}*"]
    tail = [
        REQUESTED_BY.format(
            id=ev.approval_id, requester=requester(ev.requested_by), at=int(ev.expires_at), fallback=fallback
        ),
        APPROVAL_HINT.format(who=who),
    ]
    full = "\n".join([*head, code_block(shown), *tail])
    if len(full) <= limit:
        return full, False
    # Too long for one message: a preview here, the exact text as a file right below.
    budget = max(200, limit - len("\n".join([*head, *tail])) - 200)
    preview = shown[:budget].rsplit("\n", 1)[0] if "\n" in shown[:budget] else shown[:budget]
    what = texts.DETAIL_FILE_NOUN.get(ev.detail_kind, "action")
    note = DETAIL_ATTACHED.format(what=what, lines=shown.count("\n") + 1)
    return "\n".join([*head, code_block(preview + "\n…"), note, *tail]), True


def with_slack_names(ev: ApprovalResolved) -> ApprovalResolved:
    """`slack:U1,slack:U2` → `<@U1>, <@U2>` so the thread shows who decided."""
    names = [requester(d) for d in ev.decided_by.split(",") if d]
    return replace(ev, decided_by=", ".join(names) or ev.decided_by, reason=escape(ev.reason))


def resolution(ev: ApprovalResolved) -> str:
    icon = ":arrow_forward:" if ev.approved else ":no_entry:"
    return f"{icon} " + RESULT.format(line=texts.resolution_line(with_slack_names(ev)))


def failure_line(error: str) -> str:
    """One readable line, however long or multi-line the error."""
    return escape(texts.failure_text(error))
