"""What flows between a chat adapter and the agent.

A `Request` is everything the core knows about a message; it never holds a
platform object.  A run yields `Event`s, one frozen dataclass per kind, that
renderers match on exhaustively.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal


class Risk(StrEnum):
    READ = "read"
    WRITE = "write"
    EXEC = "exec"


class WorkflowPhase(StrEnum):
    """The phases of a change workflow, in order (REPAIR and VERIFY may alternate)."""

    SPEC = "SPEC"  # what will be true when done
    PLAN = "PLAN"  # the steps
    EXECUTE = "EXECUTE"  # the changes, each approved
    VERIFY = "VERIFY"  # the QA tools
    REPAIR = "REPAIR"  # a fix after a failed check, then VERIFY again (bounded)
    COMPLETE = "COMPLETE"  # the verdict: PASS or FAIL, and why


DetailKind = Literal["argv", "diff", "text"]
"""What an approval prompt shows: the exact argv, a unified diff, or plain text."""


@dataclass(frozen=True, slots=True)
class InputFile:
    """A file a person attached to their message. `data` holds an image's bytes when the adapter
    fetched them (only with a vision model configured, and within its size cap)."""

    name: str
    content_type: str = "application/octet-stream"
    size: int = 0
    url: str = field(default="", repr=False)
    data: bytes | None = field(default=None, repr=False)

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")


@dataclass(frozen=True, slots=True)
class Request:
    platform: str
    user_id: str
    channel: str
    text: str
    thread: str = ""
    user_name: str = ""
    attachments: tuple[InputFile, ...] = ()
    is_private: bool = False

    @property
    def conversation_key(self) -> tuple[str, str, str]:
        return (self.platform, self.channel, self.thread)


@dataclass(frozen=True, slots=True)
class Partial:
    """A piece of the model's turn as it streams, for renderers to show live; never stored.

    `kind` "thinking" is reasoning; "text" is content that becomes the answer, or the prose
    before a tool call (then stored as a `Thinking` step). `text` is a delta: a renderer
    appends it to what this turn has shown so far. The turn's completed steps follow as the
    stored events (`Thinking`, `ToolCall`, `Answer`, `Failed`): any event that is not a
    `Partial` ends the live part of the turn. Secrets are masked before a piece is made, and
    tool-call markup and special tokens never appear in it.
    """

    run_id: int
    kind: Literal["thinking", "text"]
    text: str


@dataclass(frozen=True, slots=True)
class Thinking:
    run_id: int
    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    run_id: int
    call_id: str
    tool: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolResult:
    run_id: int
    call_id: str
    tool: str
    ok: bool
    output: str  # what the model reads
    truncated: bool = False
    refused: str = ""  # why the call did not run, written for a person; empty when it ran

    @property
    def shown(self) -> str:
        """What a person is shown: the output, or why nothing ran (the model's refusal text says
        what the model should do next, which is not for people)."""
        return self.refused or self.output


@dataclass(frozen=True, slots=True)
class ApprovalRequested:
    run_id: int
    approval_id: int
    tool: str
    risk: Risk
    summary: str
    detail: str
    detail_kind: DetailKind
    host: str
    expires_at: float
    requested_by: str
    reuse: bool = False  # approving also covers the same command again later in this run (a QA tool)


@dataclass(frozen=True, slots=True)
class ApprovalResolved:
    run_id: int
    approval_id: int
    approved: bool
    decided_by: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Phase:
    """A change workflow enters a phase. `text` is what the phase is about: the spec, the plan's
    steps (one per line), the repair cycle, or (COMPLETE) why the verdict is what it is."""

    run_id: int
    phase: WorkflowPhase
    text: str = ""
    verdict: Literal["", "PASS", "FAIL"] = ""  # COMPLETE only


@dataclass(frozen=True, slots=True)
class Answer:
    run_id: int
    text: str


@dataclass(frozen=True, slots=True)
class Failed:
    run_id: int
    error: str


Event = Partial | Thinking | ToolCall | ToolResult | ApprovalRequested | ApprovalResolved | Phase | Answer | Failed


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file that goes with a report (a chart, for example)."""

    path: str
    title: str = ""
    mime: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Report:
    """What scheduled jobs hand to adapters: a title, markdown text and files."""

    kind: str
    title: str
    text: str
    attachments: tuple[Attachment, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict)
