"""Every user-facing sentence the adapters post, in one place: the chat lines, the progress
message's step lines, the approval header. What only one platform says (its markup, its
attachment notes) lives in that platform's `messages.py`."""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from core.access import Admit, Asker, Decision, Pair, Refusal, Refuse
from core.events import (
    Answer,
    ApprovalRequested,
    ApprovalResolved,
    DetailKind,
    Event,
    Failed,
    Phase,
    Thinking,
    ToolCall,
    ToolResult,
    WorkflowPhase,
)
from core.runs import INTERRUPTION_LINES

NOT_AN_APPROVER = "<@{user}> you are not an approver for this action, so your reaction was ignored."
SELF_APPROVAL = "<@{user}> self-approval is disabled here: another approver has to decide."
ALREADY_DECIDED = "<@{user}> approval #{id} is already {status}; your reaction changed nothing."
VOTE_RECORDED = "Approval from <@{user}> noted; {remaining} more approver(s) needed."
OWNER_GONE = (
    "<@{user}> approval #{id} expired: the bot that asked for it restarted before it could run, so nothing ran. "
    "Ask again if it is still needed."
)
EXPIRED_ON_RESTART = (
    "Approval #{id} ({summary}) expired: the bot restarted before anyone decided. Ask again if it is still needed."
)
# ---- who may ask (core.access): short, and in French too for the people who wrote in it
NOT_ALLOWED = (
    "Sorry, you are not allowed to ask me anything. To get access, ask the operator of this bot to add "
    "your id `{user}` to {setting}.{pairing} "
    "(FR : vous n'avez pas accès à ce bot ; demandez à son opérateur de vous ajouter.)"
)
PAIRING_HINT = " Or send me a direct message to get a pairing code."
CHANNEL_NOT_ALLOWED = (
    "I do not take questions in this channel: ask me in a channel the operator chose, or in a direct message. "
    "(FR : je ne réponds pas dans ce canal ; écrivez-moi dans un canal prévu ou en message privé.)"
)
PAIRING_CODE = (
    "You are not on this bot's list yet. To get access, give this code to the operator of this bot: `{code}` "
    "(they run `orchestrator pairing approve {code}`). It expires in {minutes} minutes. "
    "(FR : donnez ce code à l'opérateur du bot pour obtenir l'accès : {code}.)"
)
RATE_LIMITED = (
    "You have reached the limit of requests per minute, so nothing was run. Send it again in {seconds} s. "
    "(FR : trop de demandes, rien n'a été lancé ; renvoyez-la dans {seconds} s.)"
)
QUEUED = (
    "Your other requests are still running; this one starts as soon as one of them finishes. "
    "(FR : vos autres demandes sont en cours ; celle-ci suivra.)"
)
ALLOW_SETTING = {
    "slack": "SLACK_ALLOWED_USERS",
    "discord": "DISCORD_ALLOWED_USERS (or a role in DISCORD_ALLOWED_ROLES)",
}

CANNOT_SAVE = (
    "I cannot save anything right now (my database is locked or its disk is full), so I did not start on this. "
    "Please send it again in a few minutes. "
    "(FR : je ne peux rien enregistrer pour l'instant, rien n'a été lancé ; renvoyez votre demande dans "
    "quelques minutes.)"
)
CANNOT_SAVE_VOTE = (
    "<@{user}> I cannot save your reaction right now (my database is locked or its disk is full), so it did not "
    "count. Please react again in a few minutes."
)

WORKING = "Working on it…"
RUN_FAILED = "Sorry, that failed: {error}"

# ---- what a run shows while it goes (adapters.thread_run, adapters.progress)
THINKING_LIVE = "Thinking…"  # a timeline task while the model thinks; its title then shows the latest words
WRITING_LIVE = "Writing…"  # the same while it writes (an answer, or what it says before a tool call)
ANSWER_WRITTEN = "Answer written"
WAITING_FOR_APPROVAL = "waiting for approval #{id}"
STATUS_THINKING = "is thinking…"  # Slack's assistant status, shown after the app's name
ANSWER_ATTACHED = "The answer is long ({chars} characters), so here it is as a file."
ANSWER_CONTINUED = "… the full answer ({chars} characters) is attached below."
ANSWER_BELOW = "The answer is long, so it follows below."
OUTPUT_ATTACHED = "Full output of `{tool}` ({lines} lines):"

# ---- the progress message: one line per step (step_line), the live line last (live_line)
STEP_THINKING = "💭 {text}"
STEP_CALL = "🔧 `{tool}({args})`"
STEP_RESULT = "{mark} {tool}: {head}{more}"
STEP_RESULT_MORE = " (+{lines} lines)"
STEP_NO_OUTPUT = "(no output)"
STEP_WAITING = "⏸️ waiting for approval #{id} ({tool})"
STEP_DECIDED = "{mark} approval #{id}: {line}"
STEP_DONE = "🏁 done"
APPROVAL_REUSED = " (approving also lets it run again, in this directory, later in this run without asking)"
# a change workflow's phases, as headings among the steps (and in the progress message's header)
STEP_PHASE = "▶ {phase}{text}"
STEP_VERDICT = "{mark} COMPLETE: {verdict}: {why}"
WORKING_IN_PHASE = "Working on it… ({phase})"
STEP_FAILED = "{mark} {error}"
EARLIER_STEPS = "… {hidden} earlier step(s)"

LiveKind = Literal["thinking", "text"]
LIVE_ICONS: dict[LiveKind, str] = {"thinking": "💭", "text": "✍️"}

# ---- what an approval shows: its detail named by kind (the header's noun, the attachment's noun)
DETAIL_NOUN: dict[DetailKind, str] = {"argv": "command", "diff": "file change", "text": "action"}
DETAIL_FILE_NOUN: dict[DetailKind, str] = {"argv": "command", "diff": "diff", "text": "action"}


def access_reply(decision: Decision, asker: Asker) -> str | None:
    """What a person the gatekeeper did not admit is told; None when nothing is said."""
    match decision:
        case Admit():
            return None
        case Pair(notify=False) | Refuse(notify=False):
            return None
        case Pair(code=code, expires_in=left):
            return PAIRING_CODE.format(code=code, minutes=max(1, round(left / 60)))
        case Refuse(reason=Refusal.RATE_LIMITED, retry_after=wait):
            return RATE_LIMITED.format(seconds=max(1, math.ceil(wait)))
        case Refuse(reason=Refusal.CHANNEL):
            return CHANNEL_NOT_ALLOWED
        case Refuse(can_pair=can_pair):
            setting = ALLOW_SETTING.get(asker.platform, "the allowlist")
            hint = PAIRING_HINT if can_pair and not asker.is_dm else ""
            return NOT_ALLOWED.format(user=asker.user_id, setting=setting, pairing=hint)


def access_outcome(decision: Decision) -> str:
    """For the log: what was decided, without the pairing code."""
    match decision:
        case Admit(why=why):
            return f"admitted: {why}"
        case Pair(notify=new):
            return "pairing code sent" if new else "pairing code pending"
        case Refuse(reason=reason, notify=told):
            return f"{reason}, {'told' if told else 'not told again'}"


def failure_text(error: str, *, limit: int = 300) -> str:
    """A run's error as one readable line, however long or multi-line the error. A run the bot's
    stop or restart interrupted did not fail: its line is said as it is."""
    first = " ".join(error.split())
    if first in INTERRUPTION_LINES:
        return first
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
    what = DETAIL_NOUN.get(ev.detail_kind, "action")
    again = APPROVAL_REUSED if ev.reuse else ""
    return f"Approval needed ({ev.risk} on {ev.host}): {ev.tool} wants to run this {what}{again}"


def resolution_line(ev: ApprovalResolved) -> str:
    if ev.approved:
        return f"Approved by {ev.decided_by}."
    if ev.decided_by == "timeout":
        return f"Not approved in time: denied ({ev.reason})."
    return f"Denied by {ev.decided_by}" + (f": {ev.reason}" if ev.reason and ev.reason != "denied" else ".")


def step_line(ev: Event) -> str | None:
    """The one-line form of a step in the progress message."""
    match ev:
        case Thinking(text=text):
            first = " ".join(text.split())
            return STEP_THINKING.format(text=first if len(first) <= 160 else first[:159] + "…")
        case ToolCall(tool=tool, args=args):
            return STEP_CALL.format(tool=tool, args=format_args(args, 120))
        case ToolResult(tool=tool, ok=ok):
            lines = ev.shown.strip().splitlines()
            head = " ".join(lines[0].split())[:100] if lines else STEP_NO_OUTPUT
            more = STEP_RESULT_MORE.format(lines=len(lines) - 1) if len(lines) > 1 else ""
            return STEP_RESULT.format(mark="✅" if ok else "⚠️", tool=tool, head=head, more=more)
        case ApprovalRequested(tool=tool, approval_id=aid):
            return STEP_WAITING.format(id=aid, tool=tool)
        case ApprovalResolved(approved=approved, approval_id=aid):
            return STEP_DECIDED.format(mark="▶️" if approved else "⛔", id=aid, line=resolution_line(ev))
        case Phase():
            return phase_line(ev)
        case Answer():
            return STEP_DONE
        case Failed(error=error):
            return STEP_FAILED.format(mark="⏹️" if error in INTERRUPTION_LINES else "❌", error=error[:200])
    return None


def phase_line(ev: Phase, chars: int = 300) -> str:
    """A workflow phase as one line: its name, then what it is about (the plan's steps joined)."""
    flat = " · ".join(" ".join(line.split()) for line in ev.text.splitlines() if line.strip())
    flat = flat if len(flat) <= chars else flat[: chars - 1] + "…"
    if ev.phase is WorkflowPhase.COMPLETE:
        return STEP_VERDICT.format(mark="✅" if ev.verdict == "PASS" else "❌", verdict=ev.verdict, why=flat)
    return STEP_PHASE.format(phase=ev.phase.value, text=f": {flat}" if flat else "")


def tail(text: str, chars: int) -> str:
    """The last `chars` characters of `text` on one line (whitespace collapsed), "…" in front when cut."""
    flat = " ".join(text[-(2 * chars + 64) :].split())
    return flat if len(flat) <= chars and len(text) <= 2 * chars + 64 else "…" + flat[-(chars - 1) :]


def live_line(kind: LiveKind, text: str, chars: int) -> str:
    """The progress message's last line while the model thinks or writes: its latest words."""
    return f"{LIVE_ICONS[kind]} {tail(text, chars)}"
