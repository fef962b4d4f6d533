"""Tables. Timestamps are UTC epoch seconds (floats): simple to compare, to index and to chart."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel


class Conversation(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("platform", "channel", "thread"),)
    id: int | None = Field(default=None, primary_key=True)
    platform: str
    channel: str
    thread: str = ""
    created_at: float
    updated_at: float


class Message(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    role: str
    content: str = ""
    tool_name: str = ""
    tool_calls_json: str = ""
    created_at: float


class RunStatus(StrEnum):
    RUNNING = "running"
    ANSWERED = "answered"
    FAILED = "failed"  # the model, a limit or an internal error ended it; `error` says which
    INTERRUPTED = "interrupted"  # the bot stopped or crashed while it ran; its thread was told


FINAL_RUN_STATUSES = frozenset({RunStatus.ANSWERED, RunStatus.FAILED, RunStatus.INTERRUPTED})


class Run(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    platform: str
    user_id: str
    user_name: str = ""
    channel: str
    thread: str = ""
    request_text: str
    status: str = Field(default=RunStatus.RUNNING, index=True)  # a RunStatus
    answer: str = ""
    error: str = ""
    started_at: float = Field(index=True)
    finished_at: float | None = None
    owner: str = ""  # the bot process running it (core.instance owner id)
    heartbeat_at: float | None = None  # refreshed while it runs; stale = its process is gone
    verdict: str = ""  # a change workflow's outcome: PASS or FAIL (empty for other runs)
    verdict_reason: str = ""  # why, in one line (the QA results, or what stopped it)


class Step(SQLModel, table=True):
    """Every event of a run, in full: the thread may show less, the store never does."""

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    seq: int
    kind: str
    payload_json: str
    created_at: float
    phase: str = ""  # the change workflow's phase (SPEC, PLAN, EXECUTE, VERIFY, REPAIR, COMPLETE) or ""


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    GRANTED = "granted"  # approvers said yes in another process; approved once its run takes it
    APPROVED = "approved"  # taken by the run that asked: the action runs
    DENIED = "denied"
    EXPIRED = "expired"


OPEN_APPROVAL_STATUSES = (ApprovalStatus.PENDING, ApprovalStatus.GRANTED)


class Approval(SQLModel, table=True):
    __table_args__ = (Index("ix_approval_message", "platform", "channel", "message_ref"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, index=True)
    tool: str
    args_json: str
    risk: str
    summary: str
    detail: str
    detail_kind: str = "text"
    host: str = "local"
    fingerprint: str
    status: str = Field(default=ApprovalStatus.PENDING, index=True)  # an ApprovalStatus
    platform: str
    channel: str = ""
    thread: str = ""
    message_ref: str = ""
    requested_by: str
    requested_at: float
    expires_at: float
    owner: str = ""  # the bot process waiting on it (core.instance owner id)
    heartbeat_at: float | None = None  # refreshed while that process waits; stale = the run is gone
    votes_json: str = "[]"
    decided_by: str = ""
    decided_at: float | None = None
    reason: str = ""


class AuditEntry(SQLModel, table=True):
    """Append-only: the store has no method that updates or deletes a row, and triggers refuse it."""

    id: int | None = Field(default=None, primary_key=True)
    at: float = Field(index=True)
    action: str  # request | tool_run | refused | approval_requested | approved | denied | expired
    #  | access_refused | rate_limited | pairing_requested | pairing_approved | pairing_revoked (core.access)
    actor: str = ""
    tool: str = ""
    args_json: str = ""
    fingerprint: str = ""
    decision: str = ""
    decider: str = ""
    exit_status: int | None = None
    output_size: int | None = None
    run_id: int | None = None
    approval_id: int | None = None
    detail: str = ""


class ProcessedEvent(SQLModel, table=True):
    """Platform event ids already handled, so a redelivery never starts a second run."""

    key: str = Field(primary_key=True)
    at: float


class PairingStatus(StrEnum):
    PENDING = "pending"  # a code was sent; valid until `expires_at`
    APPROVED = "approved"  # a standing grant to ask
    REVOKED = "revoked"
    EXPIRED = "expired"


class Pairing(SQLModel, table=True):
    """A person who DMed the bot and got a code: pending until an approver approves the code,
    then a standing grant to ask (until revoked). Codes are single-use and expire."""

    __table_args__ = (Index("ix_pairing_user", "platform", "user_id"),)
    id: int | None = Field(default=None, primary_key=True)
    platform: str
    user_id: str
    user_name: str = ""
    code: str = Field(unique=True)
    status: str = Field(default=PairingStatus.PENDING, index=True)  # a PairingStatus
    requested_at: float
    expires_at: float  # the code's expiry; an approved grant lasts until revoked
    decided_by: str = ""
    decided_at: float | None = None


class OutboxStatus(StrEnum):
    PENDING = "pending"  # waiting for its turn, or for the platform's Retry-After
    SENT = "sent"  # the platform has it (`ref` says where)
    FAILED = "failed"  # refused for good (no such channel, no permission); `error` says why
    SUPERSEDED = "superseded"  # an edit replaced by a newer edit of the same message before it was sent


class Outbox(SQLModel, table=True):
    """What the bot must post, edit or react with, kept until the platform has it.

    Drained in order per lane (platform, channel, thread) by `adapters.outbox`; a restarted
    bot drains what the previous one left. `dedupe_key` makes queuing idempotent: the same
    key is queued, and so sent, once."""

    __table_args__ = (Index("ix_outbox_lane", "platform", "channel", "thread", "status"),)
    id: int | None = Field(default=None, primary_key=True)
    platform: str
    channel: str
    thread: str = ""
    kind: str  # post | update | reaction
    payload_json: str
    dedupe_key: str = Field(unique=True)
    target_key: str = ""  # for an update or a reaction: the dedupe key of the post it applies to
    status: str = Field(default=OutboxStatus.PENDING, index=True)  # an OutboxStatus
    attempts: int = 0
    next_attempt_at: float  # not before then: the platform's Retry-After, a backoff, or a claim
    created_at: float
    sent_at: float | None = None
    ref: str = ""  # what the platform calls the posted message (Slack ts, Discord message id)
    error: str = ""  # why the last attempt failed
