"""The store: one SQLAlchemy engine, async methods, one worker thread.

SQLModel is synchronous; every call runs in a single dedicated thread so the
event loop never waits on the database and SQLite sees one writer at a time.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, bindparam, event, func, insert, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, IntegrityError, NoSuchModuleError, OperationalError
from sqlmodel import Session, col, create_engine, select

from core.errors import ConfigurationError, ServiceUnavailable
from core.events import Request
from core.store.models import (
    OPEN_APPROVAL_STATUSES,
    Approval,
    ApprovalStatus,
    AuditEntry,
    Conversation,
    Message,
    Outbox,
    OutboxStatus,
    Pairing,
    PairingStatus,
    ProcessedEvent,
    Run,
    RunStatus,
    Step,
)

T = TypeVar("T")

# Audit actions of the access checks (core.access): who was refused, paired, unpaired.
ACCESS_REFUSED = "access_refused"
RATE_LIMITED = "rate_limited"
PAIRING_REQUESTED = "pairing_requested"
PAIRING_APPROVED = "pairing_approved"
PAIRING_REVOKED = "pairing_revoked"
TOLD, QUIET = "told", "quiet"  # whether the refused person was answered

BUSY_TIMEOUT = 10.0  # seconds a write waits for another connection's lock before it fails


def is_unavailable(exc: BaseException) -> bool:
    """The database refused for a reason that may pass: locked past the busy timeout, disk full,
    connection lost. (A bug in a query is not that: it raises something else.)"""
    return isinstance(exc, OperationalError)


def default_sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'orchestrator.db'}"


def _sqlite_pragmas(busy_timeout: float) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return on_connect


def make_engine(url: str, *, busy_timeout: float = BUSY_TIMEOUT) -> Engine:
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout})
            event.listen(engine, "connect", _sqlite_pragmas(busy_timeout))
            return engine
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError) as exc:  # ImportError: the URL names a driver that is not installed
        raise ConfigurationError(_unusable_url(url, exc)) from exc


URL_EXAMPLES = "sqlite:////path/to/orchestrator.db or postgresql+psycopg://user:password@host/db"


def _unusable_url(url: str, exc: Exception) -> str:
    if isinstance(exc, ImportError):
        shown = make_url(url).render_as_string(hide_password=True)
        if (exc.name or "").startswith("psycopg"):
            return (f"{shown} needs the PostgreSQL driver psycopg, which is not installed: "
                    "install the `postgres` extra: pip install -e '.[postgres]'")  # fmt: skip
        return f"{shown} needs the Python package {exc.name}, which is not installed; use {URL_EXAMPLES}"
    if isinstance(exc, NoSuchModuleError):
        shown = make_url(url).render_as_string(hide_password=True)
        return f"{shown}: {make_url(url).get_backend_name()!r} is not a database this bot knows; use {URL_EXAMPLES}"
    return f"{url!r} is not a database URL; use {URL_EXAMPLES}"


def _is_locked(exc: DatabaseError) -> bool:
    reason = str(exc.orig if exc.orig is not None else exc).lower()
    return "locked" in reason or "busy" in reason


def _cannot_connect(engine: Engine, exc: DatabaseError) -> Exception:
    """The first connection failed: one line naming the database, what it said and what to check."""
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    if engine.url.get_backend_name() == "sqlite":
        path = engine.url.database
        if "locked" in reason:
            return ServiceUnavailable(f"the SQLite database {path} is locked by another program ({reason})")
        return ConfigurationError(
            f"cannot use the SQLite database {path} ({reason}): its directory must exist and this user must be "
            "able to write there"
        )
    shown = engine.url.render_as_string(hide_password=True)
    return ServiceUnavailable(f"cannot reach the database at {shown} ({reason}): is the server running there?")


@dataclass(frozen=True, slots=True)
class OutboxClaim:
    """What `Store.outbox_claim` found at the head of a lane."""

    entry: Outbox | None = None  # claimed: ours to deliver until `lease` runs out
    due: float | None = None  # nothing claimable: when the head is due (None: the lane is empty)
    latest: Outbox | None = None  # for an edit: the newest pending edit of the same message (sent instead)
    covers: tuple[int, ...] = ()  # the older edits `latest` supersedes (the claimed one included)
    target: Outbox | None = None  # for an edit or a reaction: the post it applies to


def event_payload(ev: object) -> dict[str, Any]:
    if is_dataclass(ev) and not isinstance(ev, type):
        return asdict(ev)
    return {"value": repr(ev)}


class Store:
    """The bot's state in one SQL database (SQLite by default, or PostgreSQL): conversations, runs
    and their steps, approvals, the audit log, pairings, dedupe keys and the outbox.

    The async methods run in one dedicated worker thread, so the event loop never waits on the
    database; the `*_sync` ones are for synchronous callers (the CLI, notebooks) and run in theirs.
    Open it from settings with `bot.app.open_store` (blocking) or `open_store_async`, which check
    the data directory and create or upgrade the schema (`migrate_sync` / `init`); `close()` it after.
    """

    def __init__(self, url: str, *, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.url = url
        self.busy_timeout = busy_timeout
        self.engine = make_engine(url, busy_timeout=busy_timeout)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._writes: list[_Write] = []
        self._writes_lock = threading.Lock()
        self._draining = False

    # ---- plumbing ---------------------------------------------------------
    async def _call(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn)

    async def _write(self, fn: Callable[[Connection], T]) -> T:
        """A write on the hot path, committed with the others waiting at that moment (group commit).

        Many conversations at once then share one transaction and one trip to the store thread
        instead of one each; each caller still returns only once its rows are committed. If the
        group fails, each write is tried again alone, so one bad write fails only its caller.
        Writes keep their order, and a read asked for after a write sees it (one thread, FIFO)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._writes_lock:
            self._writes.append(_Write(fn, future, loop))
            start, self._draining = not self._draining, True
        if start:
            self._pool.submit(self._drain)
        return await future  # type: ignore[no-any-return]

    def _drain(self) -> None:
        while True:
            with self._writes_lock:
                batch, self._writes = self._writes, []
                if not batch:
                    self._draining = False
                    return
            outcomes = self._commit_group(batch)
            loops = {id(w.loop): w.loop for w in batch}
            for loop in loops.values():
                mine = [(w, o) for w, o in zip(batch, outcomes, strict=True) if w.loop is loop]
                try:
                    loop.call_soon_threadsafe(_deliver, mine)
                except RuntimeError:  # that loop is closed: nobody waits any more
                    pass

    def _commit_group(self, batch: list[_Write]) -> list[tuple[Any, BaseException | None]]:
        if len(batch) > 1:
            try:
                with self.engine.begin() as conn:
                    results = [w.fn(conn) for w in batch]
                return [(r, None) for r in results]
            except Exception:  # one of them failed: each is tried alone below
                pass
        outcomes: list[tuple[Any, BaseException | None]] = []
        for w in batch:
            try:
                with self.engine.begin() as conn:
                    outcomes.append((w.fn(conn), None))
            except Exception as exc:
                outcomes.append((None, exc))
        return outcomes

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def migrate_sync(self) -> None:
        """Create or upgrade the schema. Another process starting at the same moment (a second
        bot, `orchestrator jobs`) can make SQLite answer "locked" at once, without waiting; the
        upgrade is one transaction, so it is tried again until the busy timeout has passed."""
        from core.store.migrate import upgrade  # Alembic: only for the commands that open the store

        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                upgrade(self.engine)
                return
            except DatabaseError as exc:  # the first connection of a process: say why it failed, in one line
                if not isinstance(exc, OperationalError) and type(exc) is not DatabaseError:
                    raise  # an integrity or programming error is a bug in a migration
                if _is_locked(exc) and time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                raise _cannot_connect(self.engine, exc) from exc

    async def init(self) -> None:
        """Create or upgrade the schema (safe to call on every start)."""
        await self._call(self.migrate_sync)

    async def close(self) -> None:
        await self._call(self.engine.dispose)
        self._pool.shutdown(wait=True)

    def run_sync(self, fn: Callable[[Session], T]) -> T:
        """For synchronous callers (the CLI's read-only commands, notebooks)."""
        with self._session() as s:
            return fn(s)

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run a function with a session in the store thread (for other core services)."""

        def work() -> T:
            with self._session() as s:
                return fn(s)

        return await self._call(work)

    async def ping(self) -> None:
        """One round trip to the database (a health check); raises what the database raised."""
        await self.run(lambda s: s.connection().exec_driver_sql("SELECT 1").scalar())

    # ---- conversations ------------------------------------------------------
    async def open_conversation(self, platform: str, channel: str, thread: str) -> int:
        """The id of the conversation in this thread, creating its row on first use (and marking it active)."""
        now = time.time()

        def work(conn: Connection) -> int:
            # Core statements, not the ORM: every request passes here (a tenth of the time).
            found = conn.execute(_hot.find_conversation, {"p": platform, "c": channel, "t": thread}).scalar()
            if found is not None:
                conn.execute(_hot.touch_conversation, {"cid": found, "now": now})
                return int(found)
            row = {"platform": platform, "channel": channel, "thread": thread, "created_at": now, "updated_at": now}
            created = conn.execute(_hot.insert_conversation, row).inserted_primary_key
            assert created is not None
            return int(created[0])

        return await self._write(work)

    async def has_conversation(self, platform: str, channel: str, thread: str) -> bool:
        """Whether this thread has a conversation (the bot answered or posted there); creates nothing."""

        def work() -> bool:
            with self._session() as s:
                query = select(Conversation.id).where(
                    Conversation.platform == platform, Conversation.channel == channel, Conversation.thread == thread
                )
                return s.exec(query).first() is not None

        return await self._call(work)

    async def history(self, conversation_id: int, *, limit: int = 40) -> list[Message]:
        def work() -> list[Message]:
            with self._session() as s:
                rows = s.exec(
                    select(Message)
                    .where(Message.conversation_id == conversation_id)
                    .order_by(col(Message.id).desc())
                    .limit(limit)
                ).all()
                return list(reversed(rows))

        return await self._call(work)

    async def add_messages(self, conversation_id: int, messages: Sequence[dict[str, Any]]) -> None:
        now = time.time()
        # plain rows for a Core insert (a model instance each costs more than the insert)
        rows = [
            {
                "conversation_id": conversation_id,
                "role": str(m["role"]),
                "content": str(m.get("content") or ""),
                "tool_name": str(m.get("tool_name") or ""),
                "tool_calls_json": json.dumps(m["tool_calls"]) if m.get("tool_calls") else "",
                "created_at": now,
            }
            for m in messages
        ]

        def work(conn: Connection) -> None:
            conn.execute(_hot.insert_message, rows)

        if rows:
            await self._write(work)

    # ---- runs and steps -----------------------------------------------------
    async def start_run(self, request: Request, conversation_id: int, *, owner: str = "") -> int:
        now = time.time()
        run = {
            "conversation_id": conversation_id,
            "platform": request.platform,
            "user_id": request.user_id,
            "user_name": request.user_name,
            "channel": request.channel,
            "thread": request.thread,
            "request_text": request.text,
            "status": RunStatus.RUNNING,
            "started_at": now,
            "owner": owner,
            "heartbeat_at": now,
        }
        entry = {"at": now, "action": "request", "actor": f"{request.platform}:{request.user_id}",
                 "detail": request.text[:2000]}  # fmt: skip

        def work(conn: Connection) -> int:
            # the run and its "request" audit row in one transaction, as Core inserts
            created = conn.execute(_hot.insert_run, run).inserted_primary_key
            assert created is not None
            run_id = int(created[0])
            conn.execute(_hot.insert_audit, {**entry, "run_id": run_id})
            return run_id

        return await self._write(work)

    async def add_step(self, run_id: int, seq: int, ev: object) -> None:
        await self.add_steps(run_id, [(seq, ev)])

    async def add_steps(
        self,
        run_id: int,
        steps: Sequence[tuple[int, object]],
        *,
        audit: Sequence[AuditEntry] = (),
        phases: Sequence[str] = (),
    ) -> None:
        """Steps of a run, and the audit rows that go with them, in one transaction: all stored or none.
        `phases` are the change workflow's phases they were taken in, one per step (none outside one)."""
        now = time.time()
        rows = [
            {"run_id": run_id, "seq": seq, "kind": type(ev).__name__, "created_at": now,
             "phase": phases[i] if i < len(phases) else "", "payload_json": json.dumps(event_payload(ev), default=str)}
            for i, (seq, ev) in enumerate(steps)
        ]  # fmt: skip
        audits = [entry.model_dump(exclude={"id"}) for entry in audit]

        def work(conn: Connection) -> None:
            # Core inserts, not the ORM: this is the hot path of every run.
            if rows:
                conn.execute(_hot.insert_step, rows)
            if audits:
                conn.execute(_hot.insert_audit, audits)

        await self._write(work)

    async def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        answer: str = "",
        error: str = "",
        verdict: str = "",
        verdict_reason: str = "",
    ) -> bool:
        """Move a running run to its final state (with a change workflow's verdict). False when it had
        one already (a sweep got there first)."""

        def work(conn: Connection) -> bool:
            values = {"rid": run_id, "status": status, "answer": answer, "error": error, "at": time.time(),
                      "verdict": verdict, "why": verdict_reason}  # fmt: skip
            return bool(conn.execute(_hot.finish_run, values).rowcount)

        return await self._write(work)

    async def heartbeat_run(self, run_id: int, at: float) -> None:
        def work(conn: Connection) -> None:
            conn.execute(_hot.heartbeat_run, {"rid": run_id, "at": at})

        await self._write(work)

    async def running_runs(self) -> list[Run]:
        """Runs not finished yet (live ones, and those a crash left behind), oldest first."""
        return await self.run(
            lambda s: list(s.exec(select(Run).where(Run.status == RunStatus.RUNNING).order_by(col(Run.id))).all())
        )

    async def get_run(self, run_id: int) -> Run | None:
        return await self.run(lambda s: s.get(Run, run_id))

    async def steps(self, run_id: int) -> list[Step]:
        return await self.run(
            lambda s: list(s.exec(select(Step).where(Step.run_id == run_id).order_by(col(Step.seq))).all())
        )

    async def runs(self, *, limit: int = 20) -> list[Run]:
        return await self.run(lambda s: list(s.exec(select(Run).order_by(col(Run.id).desc()).limit(limit)).all()))

    def runs_sync(self, *, limit: int = 20) -> list[tuple[Run, dict[str, int]]]:
        """The latest `limit` runs, newest first, each with how many of each step kind it has
        (`orchestrator runs`)."""
        with self._session() as s:
            runs = list(s.exec(select(Run).order_by(col(Run.id).desc()).limit(limit)).all())
            counts: dict[int, dict[str, int]] = {r.id: {} for r in runs if r.id is not None}
            if counts:
                q = (
                    select(Step.run_id, Step.kind, func.count())
                    .where(col(Step.run_id).in_(list(counts)))
                    .group_by(col(Step.run_id), col(Step.kind))
                )
                for run_id, kind, n in s.exec(q).all():
                    counts[run_id][kind] = n
            return [(r, counts.get(r.id or 0, {})) for r in runs]

    def run_record_sync(self, run_id: int) -> tuple[Run, list[Step], list[Message]] | None:
        """One run as stored: the run, every step in order, and the conversation's messages written
        while it ran (what the model was sent and answered), for `orchestrator runs show`."""
        with self._session() as s:
            run = s.get(Run, run_id)
            if run is None:
                return None
            steps = list(s.exec(select(Step).where(Step.run_id == run_id).order_by(col(Step.seq))).all())
            q = select(Message).where(Message.conversation_id == run.conversation_id)
            q = q.where(col(Message.created_at) >= run.started_at)
            if run.finished_at is not None:
                q = q.where(col(Message.created_at) <= run.finished_at)
            messages = list(s.exec(q.order_by(col(Message.id))).all())
            return run, steps, messages

    # ---- approvals ----------------------------------------------------------
    async def add_approval(self, approval: Approval) -> Approval:
        def work() -> Approval:
            with self._session() as s:
                s.add(approval)
                s.flush()
                assert approval.id is not None
                s.add(
                    AuditEntry(
                        at=approval.requested_at,
                        action="approval_requested",
                        actor=approval.requested_by,
                        tool=approval.tool,
                        args_json=approval.args_json,
                        fingerprint=approval.fingerprint,
                        run_id=approval.run_id,
                        approval_id=approval.id,
                        detail=approval.summary,
                    )
                )
                s.commit()
                return approval

        return await self._call(work)

    async def get_approval(self, approval_id: int) -> Approval | None:
        return await self.run(lambda s: s.get(Approval, approval_id))

    async def approval_for_message(self, platform: str, channel: str, message_ref: str) -> Approval | None:
        return await self.run(
            lambda s: s.exec(
                select(Approval).where(
                    Approval.platform == platform,
                    Approval.channel == channel,
                    Approval.message_ref == message_ref,
                )
            ).first()
        )

    async def attach_approval_message(self, approval_id: int, *, channel: str, thread: str, message_ref: str) -> None:
        def work() -> None:
            with self._session() as s:
                s.execute(
                    update(Approval)
                    .where(col(Approval.id) == approval_id)
                    .values(channel=channel, thread=thread, message_ref=message_ref)
                )
                s.commit()

        await self._call(work)

    async def record_vote(self, approval_id: int, votes: list[str]) -> None:
        def work() -> None:
            with self._session() as s:
                s.execute(
                    update(Approval)
                    .where(col(Approval.id) == approval_id, col(Approval.status) == ApprovalStatus.PENDING)
                    .values(votes_json=json.dumps(votes))
                )
                s.commit()

        await self._call(work)

    async def decide_approval(
        self,
        approval_id: int,
        *,
        status: str,
        decided_by: str,
        reason: str = "",
        from_status: Sequence[str] = (ApprovalStatus.PENDING,),
    ) -> bool:
        """Move an approval from one of `from_status` (pending by default) to its final state, audited.
        False when it was not in one of those any more."""

        def work() -> bool:
            now = time.time()
            with self._session() as s:
                result = s.execute(
                    update(Approval)
                    .where(col(Approval.id) == approval_id, col(Approval.status).in_(list(from_status)))
                    .values(status=status, decided_by=decided_by, decided_at=now, reason=reason)
                )
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    s.rollback()
                    return False
                row = s.get(Approval, approval_id)
                assert row is not None
                s.add(
                    AuditEntry(
                        at=now,
                        action=status,
                        actor=row.requested_by,
                        tool=row.tool,
                        args_json=row.args_json,
                        fingerprint=row.fingerprint,
                        decision=status,
                        decider=decided_by,
                        run_id=row.run_id,
                        approval_id=approval_id,
                        detail=reason,
                    )
                )
                s.commit()
                return True

        return await self._call(work)

    async def heartbeat_approval(self, approval_id: int, at: float) -> None:
        def work() -> None:
            with self.engine.begin() as conn:
                conn.execute(
                    update(Approval)
                    .where(col(Approval.id) == approval_id, col(Approval.status).in_(OPEN_APPROVAL_STATUSES))
                    .values(heartbeat_at=at)
                )

        await self._call(work)

    async def grant_approval(self, approval_id: int, *, decided_by: str, reason: str = "") -> bool:
        """Approvers said yes, from a process that is not the one waiting: pending → granted, not yet
        audited. The waiting run takes it (granted → approved, audited) and runs the action; if that
        run is gone it expires instead. False when it was not pending any more."""

        def work() -> bool:
            with self._session() as s:
                done = s.execute(
                    update(Approval)
                    .where(col(Approval.id) == approval_id, col(Approval.status) == ApprovalStatus.PENDING)
                    .values(status=ApprovalStatus.GRANTED, decided_by=decided_by, decided_at=time.time(), reason=reason)
                )
                s.commit()
                return bool(done.rowcount)  # type: ignore[attr-defined]

        return await self._call(work)

    async def open_approvals(self) -> list[Approval]:
        """Pending and granted approvals: those still waiting for their run to go on."""
        return await self.run(
            lambda s: list(
                s.exec(
                    select(Approval).where(col(Approval.status).in_(OPEN_APPROVAL_STATUSES)).order_by(col(Approval.id))
                ).all()
            )
        )

    async def pending_approvals(self) -> list[Approval]:
        return await self.run(
            lambda s: list(
                s.exec(
                    select(Approval).where(Approval.status == ApprovalStatus.PENDING).order_by(col(Approval.id))
                ).all()
            )
        )

    async def approvals(self, *, limit: int = 50) -> list[Approval]:
        return await self.run(
            lambda s: list(s.exec(select(Approval).order_by(col(Approval.id).desc()).limit(limit)).all())
        )

    def recent_approvals_sync(self, *, limit: int = 50, pending_only: bool = False) -> list[Approval]:
        """The latest `limit` approvals, newest first; with `pending_only`, only those still waiting for
        a decision (`orchestrator approvals`, and `--all` for every one)."""
        with self._session() as s:
            q = select(Approval).order_by(col(Approval.id).desc()).limit(limit)
            if pending_only:
                q = q.where(Approval.status == ApprovalStatus.PENDING)
            return list(s.exec(q).all())

    # ---- audit ----------------------------------------------------------------
    async def audit(self, entry: AuditEntry) -> None:
        values = entry.model_dump(exclude={"id"})

        def work() -> None:
            with self.engine.begin() as conn:
                conn.execute(insert(AuditEntry).values(**values))

        await self._call(work)

    def audit_entries_sync(self, *, limit: int = 100, since: float | None = None) -> list[AuditEntry]:
        with self._session() as s:
            q = select(AuditEntry)
            if since is not None:
                q = q.where(AuditEntry.at >= since)
            rows = s.exec(q.order_by(col(AuditEntry.id).desc()).limit(limit)).all()
            return list(reversed(rows))

    async def audit_entries(self, *, limit: int = 100, since: float | None = None) -> list[AuditEntry]:
        return await self._call(lambda: self.audit_entries_sync(limit=limit, since=since))

    # ---- dedupe -----------------------------------------------------------------
    async def first_time(self, key: str) -> bool:
        """True the first time a platform event key is seen, False on any redelivery."""

        def work() -> bool:
            with self._session() as s:
                s.add(ProcessedEvent(key=key, at=time.time()))
                try:
                    s.commit()
                except IntegrityError:
                    s.rollback()
                    return False
                return True

        return await self._call(work)

    # ---- access: refusals and DM pairing ---------------------------------------------
    async def record_refusal(self, actor: str, *, reason: str, where: str, now: float, quiet_for: float | None) -> bool:
        """Audit a refused message. True when the person is to be told: nobody told them in the
        last `quiet_for` seconds (None: never tell). One store call, so two messages at once
        cannot both be answered."""

        def work() -> bool:
            with self._session() as s:
                tell = False
                if quiet_for is not None:
                    recent = select(AuditEntry.id).where(
                        AuditEntry.action == ACCESS_REFUSED,
                        AuditEntry.actor == actor,
                        AuditEntry.decision == TOLD,
                        AuditEntry.at > now - quiet_for,
                    )
                    tell = s.exec(recent.limit(1)).first() is None
                s.add(
                    AuditEntry(
                        at=now, action=ACCESS_REFUSED, actor=actor, decision=TOLD if tell else QUIET,
                        detail=f"{reason} in {where}",
                    )
                )  # fmt: skip
                s.commit()
                return tell

        return await self._call(work)

    async def record_rate_limited(self, actor: str, *, retry_after: float, where: str, now: float) -> None:
        await self.audit(
            AuditEntry(
                at=now, action=RATE_LIMITED, actor=actor, decision=TOLD,
                detail=f"in {where}; taken again in {retry_after:.0f} s",
            )
        )  # fmt: skip

    async def is_paired(self, platform: str, user_id: str) -> bool:
        def work(s: Session) -> bool:
            query = select(Pairing.id).where(
                Pairing.platform == platform, Pairing.user_id == user_id, Pairing.status == PairingStatus.APPROVED
            )
            return s.exec(query.limit(1)).first() is not None

        return await self.run(work)

    async def pairing_request(
        self, platform: str, user_id: str, *, user_name: str, now: float, ttl: float, make_code: Callable[[], str]
    ) -> tuple[Pairing, bool]:
        """This person's pending code if it is still valid, else a new one (True: new, and audited)."""

        def work() -> tuple[Pairing, bool]:
            with self._session() as s:
                pending = s.exec(
                    select(Pairing).where(
                        Pairing.platform == platform, Pairing.user_id == user_id,
                        Pairing.status == PairingStatus.PENDING,
                    )
                ).all()  # fmt: skip
                for row in pending:
                    if row.expires_at > now:
                        return row, False
                    row.status = PairingStatus.EXPIRED
                    s.add(row)
                s.commit()
                for _ in range(10):  # a clash with an old code is unlikely; try another
                    row = Pairing(
                        platform=platform, user_id=user_id, user_name=user_name, code=make_code(),
                        requested_at=now, expires_at=now + ttl,
                    )  # fmt: skip
                    s.add(row)
                    try:
                        s.flush()
                    except IntegrityError:
                        s.rollback()
                        continue
                    s.add(
                        AuditEntry(
                            at=now, action=PAIRING_REQUESTED, actor=f"{platform}:{user_id}",
                            detail=f"code sent to {user_name or user_id}, valid {ttl / 60:.0f} min",
                        )
                    )  # fmt: skip
                    s.commit()
                    return row, True
                raise RuntimeError("could not draw an unused pairing code")

        return await self._call(work)

    def approve_pairing_sync(self, code: str, *, by: str, now: float) -> tuple[Pairing | None, bool]:
        """Approve a pending, unexpired code once. (row, True) when approved now; (row, False) when
        the code was used, revoked or expired (the row says which); (None, False) when unknown."""
        with self._session() as s:
            row = s.exec(select(Pairing).where(Pairing.code == code)).first()
            if row is None:
                return None, False
            if row.status == PairingStatus.PENDING and row.expires_at <= now:
                row.status = PairingStatus.EXPIRED
                s.add(row)
                s.commit()
                return row, False
            result = s.execute(
                update(Pairing)
                .where(col(Pairing.id) == row.id, col(Pairing.status) == PairingStatus.PENDING)
                .values(status=PairingStatus.APPROVED, decided_by=by, decided_at=now)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                s.rollback()
                s.refresh(row)
                return row, False
            s.add(
                AuditEntry(
                    at=now, action=PAIRING_APPROVED, actor=f"{row.platform}:{row.user_id}", decision="approved",
                    decider=by, detail=row.user_name,
                )
            )  # fmt: skip
            s.commit()
            s.refresh(row)
            return row, True

    def revoke_pairing_sync(self, platform: str, user_id: str, *, by: str, now: float) -> int:
        """End this person's grant (and any pending code); the number of rows revoked."""
        with self._session() as s:
            result = s.execute(
                update(Pairing)
                .where(
                    col(Pairing.platform) == platform,
                    col(Pairing.user_id) == user_id,
                    col(Pairing.status).in_([PairingStatus.APPROVED, PairingStatus.PENDING]),
                )
                .values(status=PairingStatus.REVOKED, decided_by=by, decided_at=now)
            )
            count = int(result.rowcount)  # type: ignore[attr-defined]
            if count:
                s.add(
                    AuditEntry(
                        at=now, action=PAIRING_REVOKED, actor=f"{platform}:{user_id}", decision="revoked", decider=by
                    )
                )
            s.commit()
            return count

    def pairings_sync(self) -> list[Pairing]:
        with self._session() as s:
            return list(s.exec(select(Pairing).order_by(col(Pairing.id))).all())

    async def approve_pairing(self, code: str, *, by: str, now: float) -> tuple[Pairing | None, bool]:
        return await self._call(lambda: self.approve_pairing_sync(code, by=by, now=now))

    async def revoke_pairing(self, platform: str, user_id: str, *, by: str, now: float) -> int:
        return await self._call(lambda: self.revoke_pairing_sync(platform, user_id, by=by, now=now))

    # ---- outbox: what the bot must post (adapters.outbox drains it) ----------------------------
    async def outbox_add(self, entry: Outbox) -> tuple[Outbox, bool]:
        """Queue a post, edit or reaction. (row, True) when queued now; (the row queued earlier under
        the same dedupe key, False) otherwise: queuing twice never sends twice."""

        def work() -> tuple[Outbox, bool]:
            with self._session() as s:
                s.add(entry)
                try:
                    s.commit()
                    return entry, True
                except IntegrityError:
                    s.rollback()
                    row = s.exec(select(Outbox).where(Outbox.dedupe_key == entry.dedupe_key)).one()
                    return row, False

        return await self._call(work)

    async def outbox_claim(self, platform: str, channel: str, thread: str, *, now: float, lease: float) -> OutboxClaim:
        """Claim the oldest pending entry of a lane if it is due. Nothing behind it is ever claimed
        first, so a lane is delivered in order whichever bot process drains it."""

        def lane() -> Any:
            return select(Outbox).where(
                Outbox.platform == platform,
                Outbox.channel == channel,
                Outbox.thread == thread,
                Outbox.status == OutboxStatus.PENDING,
            )

        def work() -> OutboxClaim:
            with self._session() as s:
                head = s.exec(lane().order_by(col(Outbox.id)).limit(1)).first()
                if head is None:
                    return OutboxClaim()
                if head.next_attempt_at > now:
                    return OutboxClaim(due=head.next_attempt_at)
                s.expunge(head)  # a copy: the claim below is the only write
                claimed = s.execute(
                    update(Outbox)
                    .where(col(Outbox.id) == head.id, col(Outbox.attempts) == head.attempts)
                    .values(next_attempt_at=now + lease, attempts=head.attempts + 1)
                    .execution_options(synchronize_session=False)
                )
                if claimed.rowcount != 1:  # type: ignore[attr-defined]
                    s.rollback()  # another process claimed it a moment ago
                    return OutboxClaim(due=now + lease)
                head.attempts += 1
                head.next_attempt_at = now + lease
                latest: Outbox = head
                covers: tuple[int, ...] = ()
                if head.kind == "update":
                    newer = s.exec(
                        lane()
                        .where(Outbox.kind == "update", Outbox.target_key == head.target_key, col(Outbox.id) > head.id)
                        .order_by(col(Outbox.id))
                    ).all()
                    if newer:
                        latest = newer[-1]
                        covers = (head.id or 0, *[r.id or 0 for r in newer[:-1]])
                target = None
                if head.target_key:
                    target = s.exec(select(Outbox).where(Outbox.dedupe_key == head.target_key)).first()
                s.commit()
                return OutboxClaim(entry=head, latest=latest, covers=covers, target=target)

        return await self._call(work)

    async def outbox_sent(
        self,
        entry_id: int,
        *,
        ref: str,
        now: float,
        covers: Sequence[int] = (),
        approval: tuple[int, str, str] | None = None,
    ) -> None:
        """Delivered: the entry is sent (with the platform's `ref`), the edits it covers are superseded,
        and an approval request's message is attached to its approval (id, channel, thread) at once,
        so the first reaction on it is already found."""

        def work() -> None:
            with self._session() as s:
                s.execute(
                    update(Outbox)
                    .where(col(Outbox.id) == entry_id)
                    .values(status=OutboxStatus.SENT, ref=ref, sent_at=now, error="")
                )
                if covers:
                    s.execute(
                        update(Outbox)
                        .where(col(Outbox.id).in_(list(covers)), col(Outbox.id) != entry_id)
                        .values(status=OutboxStatus.SUPERSEDED, sent_at=now)
                    )
                if approval is not None:
                    approval_id, channel, thread = approval
                    s.execute(
                        update(Approval)
                        .where(col(Approval.id) == approval_id)
                        .values(channel=channel, thread=thread, message_ref=ref)
                    )
                s.commit()

        await self._call(work)

    async def outbox_failed(self, entry_ids: Sequence[int], *, error: str) -> None:
        """Refused for good: never retried (the lane goes on with the next entry)."""

        def work() -> None:
            with self.engine.begin() as conn:
                conn.execute(
                    update(Outbox)
                    .where(col(Outbox.id).in_(list(entry_ids)))
                    .values(status=OutboxStatus.FAILED, error=error[:1000])
                )

        await self._call(work)

    async def outbox_retry(self, entry_id: int, *, at: float, error: str) -> None:
        """Not delivered this time: due again at `at` (the platform's Retry-After, or a backoff)."""

        def work() -> None:
            with self.engine.begin() as conn:
                conn.execute(
                    update(Outbox)
                    .where(col(Outbox.id) == entry_id, col(Outbox.status) == OutboxStatus.PENDING)
                    .values(next_attempt_at=at, error=error[:1000])
                )

        await self._call(work)

    async def outbox_lanes(self, platform: str) -> list[tuple[str, str]]:
        """Lanes with something pending (a restarted bot drains what the last one left)."""

        def work(s: Session) -> list[tuple[str, str]]:
            query = (
                select(Outbox.channel, Outbox.thread)
                .where(Outbox.platform == platform, Outbox.status == OutboxStatus.PENDING)
                .distinct()
            )
            return [(channel, thread) for channel, thread in s.exec(query).all()]

        return await self.run(work)

    async def outbox_entries(self, *, platform: str | None = None, keys: Sequence[str] = ()) -> list[Outbox]:
        """Entries oldest first, of one platform or with these dedupe keys (tests, the operator)."""

        def work(s: Session) -> list[Outbox]:
            query = select(Outbox)
            if platform is not None:
                query = query.where(Outbox.platform == platform)
            if keys:
                query = query.where(col(Outbox.dedupe_key).in_(list(keys)))
            return list(s.exec(query.order_by(col(Outbox.id))).all())

        return await self.run(work)

    async def outbox_prune(self, *, before: float) -> int:
        """Forget delivered entries older than `before`; pending and failed ones stay."""

        def work() -> int:
            with self.engine.begin() as conn:
                result = conn.execute(
                    Outbox.__table__.delete().where(  # type: ignore[attr-defined]
                        col(Outbox.status).in_([OutboxStatus.SENT, OutboxStatus.SUPERSEDED]),
                        col(Outbox.created_at) < before,
                    )
                )
                return int(result.rowcount)

        return await self._call(work)


@dataclass(frozen=True, slots=True)
class _Write:
    fn: Callable[[Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def _deliver(outcomes: list[tuple[_Write, tuple[Any, BaseException | None]]]) -> None:
    for write, (result, error) in outcomes:
        if write.future.done():  # its caller was cancelled; the write stands
            continue
        if error is not None:
            write.future.set_exception(error)
        else:
            write.future.set_result(result)


class _HotStatements:
    """The statements of every run, built once: a statement object caches its compiled form, so
    the store thread does not rebuild and re-key it for each step (parameters are bound by name)."""

    def __init__(self) -> None:
        self.find_conversation = select(Conversation.id).where(
            col(Conversation.platform) == bindparam("p"),
            col(Conversation.channel) == bindparam("c"),
            col(Conversation.thread) == bindparam("t"),
        )
        self.touch_conversation = (
            update(Conversation).where(col(Conversation.id) == bindparam("cid")).values(updated_at=bindparam("now"))
        )
        self.insert_conversation = insert(Conversation)
        self.insert_message = insert(Message)
        self.insert_run = insert(Run)
        self.insert_step = insert(Step)
        self.insert_audit = insert(AuditEntry)
        running = (col(Run.id) == bindparam("rid"), col(Run.status) == RunStatus.RUNNING)
        self.finish_run = (
            update(Run)
            .where(*running)
            .values(
                status=bindparam("status"),
                answer=bindparam("answer"),
                error=bindparam("error"),
                finished_at=bindparam("at"),
                verdict=bindparam("verdict"),
                verdict_reason=bindparam("why"),
            )
        )
        self.heartbeat_run = update(Run).where(*running).values(heartbeat_at=bindparam("at"))


_hot = _HotStatements()
