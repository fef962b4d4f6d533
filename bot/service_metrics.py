"""`/metrics`: what the bot has done, in Prometheus' text format (the `prometheus_client` library).

Counting needs no hook in the agent: runs, steps, approvals and the audit rows of every tool
call are in the store, so they are read there when Prometheus scrapes, a few aggregate queries
in the store's thread, kept for `CACHE_SECONDS` so a burst of scrapes costs one read. Steps and
audit rows only grow: after the first scrape only the rows added since are read (by id).
The figures from the store are the database's, the same in every process that shares it.

What the store does not hold is measured in this process: the model's turns (a timing wrapper
around the agent's model port) and the last result of each health check (the scheduler's pass).
Everything is in a registry of our own, never the library's global one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from sqlalchemy import Connection, distinct, func, select
from sqlmodel import col

from core.health.checks import CheckResult
from core.health.models import Incident
from core.llm import LLM, LLMChunk, LLMError, LLMReply
from core.store import Store
from core.store.models import (
    FINAL_RUN_STATUSES,
    OPEN_APPROVAL_STATUSES,
    Approval,
    ApprovalStatus,
    AuditEntry,
    Outbox,
    OutboxStatus,
    Run,
    RunStatus,
    Step,
)

log = logging.getLogger(__name__)

CACHE_SECONDS = 2.0
NAMESPACE = "orchestrator"
# A model turn takes from a fraction of a second (a small model, a warm cache) to minutes (a big
# model loading from a slow disk): the buckets cover both ends.
MODEL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
DECIDED_APPROVALS = (ApprovalStatus.APPROVED, ApprovalStatus.DENIED, ApprovalStatus.EXPIRED)
TOOL_RUN = "tool_run"  # the audit action of a call that ran (core.agent)
AUTO = "auto"  # its decision when the call was read-only and ran without asking


# ---- the model's turns ------------------------------------------------------------------------
class ModelTiming:
    """Histograms of the agent's model turns: until the first streamed piece, and the whole reply."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.first_token = Histogram(
            "model_first_token_seconds", "Seconds from sending a model turn to its first streamed piece.",
            namespace=NAMESPACE, buckets=MODEL_BUCKETS, registry=registry,
        )  # fmt: skip
        self.turn = Histogram(
            "model_turn_seconds", "Seconds a model turn took, from the request to the whole reply.",
            namespace=NAMESPACE, buckets=MODEL_BUCKETS, registry=registry,
        )  # fmt: skip
        self.errors = PromCounter(
            "model_turn_errors", "Model turns that ended without a reply (unreachable, timed out, cut off).",
            namespace=NAMESPACE, registry=registry,
        )  # fmt: skip

    def wrap(self, llm: LLM) -> LLM:
        return TimedLLM(llm, self)


class TimedLLM:
    """The agent's model port, unchanged, with each turn timed (`ModelTiming`)."""

    def __init__(self, llm: LLM, timing: ModelTiming, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.llm = llm
        self.timing = timing
        self.clock = clock

    async def stream(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]
    ) -> AsyncGenerator[LLMChunk | LLMReply, None]:
        started = self.clock()
        first = True
        try:
            async with contextlib.aclosing(self.llm.stream(messages, tools)) as items:
                async for item in items:
                    if first:
                        self.timing.first_token.observe(self.clock() - started)
                        first = False
                    if isinstance(item, LLMReply):
                        self.timing.turn.observe(self.clock() - started)
                    yield item
        except LLMError:
            self.timing.errors.inc()
            raise

    async def chat(self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]) -> LLMReply:
        started = self.clock()
        try:
            reply = await self.llm.chat(messages, tools)
        except LLMError:
            self.timing.errors.inc()
            raise
        self.timing.turn.observe(self.clock() - started)
        return reply


# ---- the health checks ------------------------------------------------------------------------
class CheckResults:
    """The last pass of the health checks in this process (the one holding the scheduler lease)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.ok = Gauge(
            "health_check_ok", "1 when the check passed at its last run here, 0 when it failed; "
            "a check that could not tell is left out.",
            ["check", "key"], namespace=NAMESPACE, registry=registry,
        )  # fmt: skip

    def record(self, results: Sequence[CheckResult]) -> None:
        self.ok.clear()  # a mount or a container that went away is no longer reported
        for r in results:
            if not r.inconclusive:
                self.ok.labels(check=r.name, key=r.key).set(1 if r.ok else 0)


# ---- what the store holds ---------------------------------------------------------------------
@dataclass
class StoreFigures:
    runs: dict[str, int] = field(default_factory=dict)  # status -> runs
    approvals: dict[str, int] = field(default_factory=dict)  # status -> approvals
    outbox: dict[str, int] = field(default_factory=dict)  # platform -> pending rows
    incidents: dict[str, int] = field(default_factory=dict)  # check -> open incidents
    steps: Counter[str] = field(default_factory=Counter)  # kind -> steps
    tool_calls: Counter[tuple[str, str]] = field(default_factory=Counter)  # (tool, risk) -> calls that ran
    last_step: int = 0  # the highest row id counted so far
    last_audit: int = 0


def _grouped(conn: Connection, column: Any, *where: Any) -> dict[str, int]:
    q = select(column, func.count()).group_by(column)
    for clause in where:
        q = q.where(clause)
    return {str(row[0]): int(row[1]) for row in conn.execute(q).all()}


def read_figures(conn: Connection, before: StoreFigures, declared_risk: Callable[[str], str]) -> StoreFigures:
    """The figures now: the small tables counted again, the growing ones from where `before` stopped.

    The risk of a call that ran after an approval is its approval's (same run, same fingerprint);
    a call that ran without asking was read-only. On PostgreSQL a row whose transaction commits
    after a row with a higher id was counted is missed; for a metric that is an acceptable miss.
    """
    now = StoreFigures(
        runs=_grouped(conn, col(Run.status)),
        approvals=_grouped(conn, col(Approval.status)),
        outbox=_grouped(conn, col(Outbox.platform), col(Outbox.status) == OutboxStatus.PENDING),
        incidents=_grouped(conn, col(Incident.check_name), col(Incident.status) == "open"),
        steps=Counter(before.steps),
        tool_calls=Counter(before.tool_calls),
        last_step=before.last_step,
        last_audit=before.last_audit,
    )
    # Up to the highest id now, taken first: a row added while this reads is counted next time.
    top_step = conn.execute(select(func.max(Step.id))).scalar() or before.last_step
    steps = select(col(Step.kind), func.count()).where(col(Step.id) > before.last_step, col(Step.id) <= top_step)
    for kind, n in conn.execute(steps.group_by(col(Step.kind))).all():
        now.steps[str(kind)] += int(n)
    now.last_step = top_step
    top_audit = conn.execute(select(func.max(AuditEntry.id))).scalar() or before.last_audit
    approved = (
        (col(Approval.run_id) == col(AuditEntry.run_id))
        & (col(Approval.fingerprint) == col(AuditEntry.fingerprint))
        & (col(Approval.status) == ApprovalStatus.APPROVED)
    )
    calls = (
        select(
            col(AuditEntry.tool), col(AuditEntry.decision), col(Approval.risk), func.count(distinct(col(AuditEntry.id)))
        )
        .select_from(AuditEntry)
        .outerjoin(Approval, approved)
        .where(col(AuditEntry.id) > before.last_audit, col(AuditEntry.id) <= top_audit)
        .where(col(AuditEntry.action) == TOOL_RUN)
        .group_by(col(AuditEntry.tool), col(AuditEntry.decision), col(Approval.risk))
    )
    for tool, decision, risk, n in conn.execute(calls).all():
        risk = "read" if decision == AUTO else (risk or declared_risk(str(tool)))
        now.tool_calls[(str(tool), str(risk))] += int(n)
    now.last_audit = top_audit
    return now


class StoreCollector:
    """The store's figures as Prometheus metrics: read by `refresh()` (async), shown by `collect()`."""

    def __init__(
        self,
        store: Store,
        *,
        declared_risk: Callable[[str], str] = lambda _tool: "unknown",
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.declared_risk = declared_risk
        self.cache_seconds = cache_seconds
        self.clock = clock
        self.figures: StoreFigures | None = None
        self.up = False  # the last read worked
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Read the store unless it was read within `cache_seconds`; a failure keeps the last figures."""
        async with self._lock:  # scrapes at the same moment share one read
            if self._read_at is not None and self.clock() - self._read_at < self.cache_seconds:
                return
            before = self.figures or StoreFigures()
            try:
                self.figures = await self.store.run(lambda s: read_figures(s.connection(), before, self.declared_risk))
                self.up = True
            except Exception as exc:
                log.warning("metrics: the store could not be read: %s", exc)
                self.up = False
            self._read_at = self.clock()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{NAMESPACE}_database_up", "1 when the last read of the store for /metrics worked.")
        up.add_metric([], 1 if self.up else 0)
        yield up
        f = self.figures
        if f is None:
            return
        runs = CounterMetricFamily(f"{NAMESPACE}_runs", "Runs that ended, by final status.", labels=["status"])
        for final in sorted(FINAL_RUN_STATUSES):
            runs.add_metric([final], f.runs.get(final, 0))
        yield runs
        running = GaugeMetricFamily(f"{NAMESPACE}_runs_in_flight", "Runs not finished yet.")
        running.add_metric([], f.runs.get(RunStatus.RUNNING, 0))
        yield running
        steps = CounterMetricFamily(f"{NAMESPACE}_steps", "Stored steps of every run, by kind.", labels=["kind"])
        for kind, n in sorted(f.steps.items()):
            steps.add_metric([kind], n)
        yield steps
        calls = CounterMetricFamily(
            f"{NAMESPACE}_tool_calls", "Tool calls that ran, by tool and risk.", labels=["tool", "risk"]
        )
        for (tool, risk), n in sorted(f.tool_calls.items()):
            calls.add_metric([tool, risk], n)
        yield calls
        decided = CounterMetricFamily(
            f"{NAMESPACE}_approvals", "Approval requests decided, by outcome.", labels=["outcome"]
        )
        for outcome in DECIDED_APPROVALS:
            decided.add_metric([outcome], f.approvals.get(outcome, 0))
        yield decided
        waiting = GaugeMetricFamily(
            f"{NAMESPACE}_approvals_open", "Approval requests waiting: pending, or granted and not yet taken.",
            labels=["status"],
        )  # fmt: skip
        for open_status in OPEN_APPROVAL_STATUSES:
            waiting.add_metric([open_status], f.approvals.get(open_status, 0))
        yield waiting
        outbox = GaugeMetricFamily(
            f"{NAMESPACE}_outbox_pending", "Posts, edits and reactions not yet delivered, by platform.",
            labels=["platform"],
        )  # fmt: skip
        for platform, n in sorted(f.outbox.items()):
            outbox.add_metric([platform], n)
        yield outbox
        incidents = GaugeMetricFamily(
            f"{NAMESPACE}_incidents_open", "Open incidents (failing health checks), by check.", labels=["check"]
        )
        for check, n in sorted(f.incidents.items()):
            incidents.add_metric([check], n)
        yield incidents


# ---- all of it --------------------------------------------------------------------------------
class ServiceMetrics:
    """The registry `/metrics` shows. Made before the services (the agent's model is wrapped when
    they are built); the store is watched once it is open."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.model = ModelTiming(self.registry)
        self.checks = CheckResults(self.registry)
        self.store: StoreCollector | None = None

    def watch_store(self, store: Store, *, declared_risk: Callable[[str], str] | None = None) -> None:
        self.store = StoreCollector(store, declared_risk=declared_risk or (lambda _tool: "unknown"))
        self.registry.register(self.store)

    async def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The page and its content type: Prometheus' text format, or OpenMetrics if asked for."""
        if self.store is not None:
            await self.store.refresh()
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type
