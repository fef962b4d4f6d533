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


class Run(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    platform: str
    user_id: str
    user_name: str = ""
    channel: str
    thread: str = ""
    request_text: str
    status: str = "running"  # running | answered | failed
    answer: str = ""
    error: str = ""
    started_at: float = Field(index=True)
    finished_at: float | None = None


class Step(SQLModel, table=True):
    """Every event of a run, in full: the thread may show less, the store never does."""

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    seq: int
    kind: str
    payload_json: str
    created_at: float


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
    status: str = Field(default="pending", index=True)  # pending | approved | denied | expired
    platform: str
    channel: str = ""
    thread: str = ""
    message_ref: str = ""
    requested_by: str
    requested_at: float
    expires_at: float
    owner: str = ""  # the bot process waiting on it (host:pid:nonce)
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
