"""The self-healing pass: run the checks, keep incidents in step, and hand new failures to the agent.

- all checks pass: nothing is posted and the model is not called;
- a NEW failure: one message per reports channel, then the agent is asked, in the first
  channel's thread, to explain and propose a fix (through `Outlet.run_request`, so any fix
  goes through the normal approval reactions). If an approved action ran, the check runs
  again and the thread says whether it passes now;
- still failing: the incident row is updated, nothing is posted;
- recovered: the incident is closed with a short message in its thread(s).

The agent runs in a background task per incident: an approval can take minutes and the
next pass must not wait for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.events import ApprovalResolved, Event, Failed, Report, Request, ToolResult
from core.health import texts
from core.health.checks import Check, CheckContext, CheckResult, LoadPoint, run_check
from core.health.incidents import Change, IncidentBook, posts_of
from core.health.metrics import MetricsRecorder, MetricsSnapshot
from core.health.models import Incident
from core.health.outlets import Destination
from core.health.report import health_report, incident_report
from core.runs import INTERRUPTION_LINES

if TYPE_CHECKING:
    from core.memory.service import MemoryService

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[MetricsSnapshot]]
History = Callable[[float], Awaitable[Sequence[LoadPoint]]]

SCHEDULER_USER = "scheduler"
SCHEDULER_NAME = "health check"


@dataclass
class PassOutcome:
    results: list[CheckResult]
    opened: list[Incident] = field(default_factory=list)
    reopened: list[Incident] = field(default_factory=list)
    updated: list[Incident] = field(default_factory=list)
    closed: list[Incident] = field(default_factory=list)
    followups: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def failing(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok and not r.inconclusive]


def executed_approved_action(events: Sequence[Event]) -> bool:
    """Did the run carry out an action a person approved? (Approved, then its result, not refused.)"""
    approved = False
    for ev in events:
        if isinstance(ev, ApprovalResolved):
            approved = ev.approved
        elif isinstance(ev, ToolResult):
            if approved and not ev.refused:
                return True
            approved = False
    return False


def recorder_history(recorder: MetricsRecorder) -> History:
    async def history(since: float) -> list[LoadPoint]:
        rows = await recorder.recent(since=since)
        return [LoadPoint(r.at, r.load1, r.cpu_cores) for r in rows]

    return history


class HealthMonitor:
    def __init__(
        self,
        *,
        book: IncidentBook,
        checks: Sequence[Check],
        probe: Probe,
        history: History | None = None,
        history_window: float = 15 * 60,
        destinations: Sequence[Destination] = (),
        clock: Callable[[], float] = time.time,
        redact: Callable[[str], str] = lambda text: text,
        memory: MemoryService | None = None,
    ) -> None:
        self.memory = memory  # past incidents: recalled when one opens, remembered when its outcome is known
        self.book = book
        self.checks = list(checks)
        self.probe = probe
        self.history = history
        self.history_window = history_window
        self.destinations = list(destinations)
        self.clock = clock
        self.redact = redact  # what goes to chat: a healthcheck's output may quote a secret
        self._pass_lock = asyncio.Lock()
        self._followups: set[asyncio.Task[None]] = set()

    @property
    def host(self) -> str:
        return self.book.host

    # ---- evaluation (no side effects) ---------------------------------------------
    async def _context(self, now: float) -> CheckContext:
        reading = await self.probe()
        history = await self.history(now - self.history_window) if self.history is not None else ()
        return CheckContext(now=now, reading=reading, history=history)

    async def evaluate(self, *, now: float | None = None) -> list[CheckResult]:
        """Run every check once; opens, posts and asks nothing."""
        ctx = await self._context(self.clock() if now is None else now)
        nested = await asyncio.gather(*(run_check(check, ctx) for check in self.checks))
        return [r for results in nested for r in results]

    async def report(self, *, now: float | None = None) -> tuple[list[CheckResult], Report]:
        """The health report of `orchestrator report health`: every check, nothing opened or asked."""
        results = await self.evaluate(now=now)
        return results, health_report(self.host, results)

    async def recheck(self, name: str, key: str) -> CheckResult:
        """One check again, for one key: after a fix. A key no longer reported counts as passing."""
        check = next((c for c in self.checks if c.name == name), None)
        if check is None:
            return CheckResult(name, key, False, texts.CHECK_BROKEN.format(name=name, error="unknown check"))
        results = await run_check(check, await self._context(self.clock()))
        found = next((r for r in results if r.key == key), None)
        return found or CheckResult(name, key, True, f"{key} is no longer reported")

    # ---- the pass -------------------------------------------------------------------
    async def run_pass(self, *, now: float | None = None) -> PassOutcome:
        async with self._pass_lock:
            now = self.clock() if now is None else now
            outcome = PassOutcome(await self.evaluate(now=now))
            failing = {r.key: r for r in outcome.failing}
            for result in failing.values():
                incident, change = await self.book.record_failure(result, now)
                if change is Change.OPENED:
                    outcome.opened.append(incident)
                    task = await self._announce_open(incident, result)
                    if task is not None:
                        outcome.followups.append(task)
                elif change is Change.REOPENED:
                    outcome.reopened.append(incident)
                    await self._in_threads(incident, texts.INCIDENT_REOPENED.format(summary=result.summary))
                else:
                    outcome.updated.append(incident)
            # A check that could not tell leaves its incidents alone; one that ran closes what it no longer sees.
            unsure = {r.name for r in outcome.results if r.inconclusive}
            ran = {c.name for c in self.checks} - unsure
            current = {r.key: r for r in outcome.results}
            for incident in await self.book.open_incidents():
                if incident.check_name not in ran or incident.key in failing:
                    continue
                assert incident.id is not None
                now_ok = current.get(incident.key)
                summary = now_ok.summary if now_ok is not None else f"{incident.key} is no longer reported"
                closed = await self.book.close(incident.id, now=now, resolution="recovered", summary=summary)
                if closed is not None:
                    outcome.closed.append(closed)
                    took = texts.duration(now - closed.opened_at)
                    # No fix was applied, so none "held": remembered as a recovery, not as a fix that worked.
                    await self._remember(
                        incident.summary, "", "", texts.RECOVERED_ON_ITS_OWN.format(duration=took), (), None,
                        {"host": self.host, "check": incident.key, "incident_id": str(incident.id)},
                    )  # fmt: skip
                    await self._in_threads(closed, texts.INCIDENT_RECOVERED.format(duration=took, summary=summary))
            if outcome.opened or outcome.closed:
                log.info(
                    "health pass: %d failing, %d opened, %d closed",
                    len(failing), len(outcome.opened), len(outcome.closed),
                )  # fmt: skip
            return outcome

    # ---- posting ------------------------------------------------------------------------
    async def _announce_open(self, incident: Incident, result: CheckResult) -> asyncio.Task[None] | None:
        assert incident.id is not None
        posts: dict[str, dict[str, str]] = {}
        primary: tuple[Destination, str] | None = None
        for dest in self.destinations:
            report = incident_report(incident, agent=primary is None)
            report = dataclasses.replace(report, title=self.redact(report.title), text=self.redact(report.text))
            try:
                ref = await dest.outlet.post_report(dest.channel, report)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("posting incident %s to %s failed", incident.key, dest.platform)
                continue
            posts[dest.platform] = {"channel": dest.channel, "ref": ref}
            if primary is None:
                primary = (dest, ref)
        if not posts:
            if not self.destinations:
                log.warning("health check failing with no reports channel configured: %s", result.summary)
            return None
        await self.book.attach_posts(incident.id, posts)
        assert primary is not None
        task = asyncio.create_task(self._follow_up(incident, result, *primary), name=f"incident-{incident.id}")
        self._followups.add(task)
        task.add_done_callback(self._followups.discard)
        return task

    async def _in_threads(self, incident: Incident, text: str, *, skip: str = "") -> None:
        for platform, post in posts_of(incident).items():
            dest = next((d for d in self.destinations if d.platform == platform), None)
            if dest is None or platform == skip:
                continue
            try:
                await dest.outlet.post_in_thread(post["channel"], post["ref"], self.redact(text))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("posting in the thread of incident %s on %s failed", incident.key, platform)

    async def _follow_up(self, incident: Incident, result: CheckResult, dest: Destination, ref: str) -> None:
        """The only place a health check costs a model call: explain, propose, re-check after a fix."""
        assert incident.id is not None
        request = Request(
            platform=dest.platform,
            channel=dest.channel,
            thread=ref,
            user_id=SCHEDULER_USER,
            user_name=SCHEDULER_NAME,
            text=texts.INCIDENT_PROMPT.format(
                host=self.host, key=result.key, summary=result.summary, figures=texts.figures_line(result.figures)
            ),
        )
        source = {"platform": dest.platform, "channel": dest.channel, "thread": ref, "host": self.host,
                  "check": result.key, "incident_id": str(incident.id)}  # fmt: skip
        try:
            from core.memory.incidents import summarize_run  # chromadb is imported only when memory is used

            similar = await self._similar_incidents(result.summary)
            if similar:
                await dest.outlet.post_in_thread(dest.channel, ref, similar)
                request = dataclasses.replace(request, text=f"{request.text}\n\n{similar}")
            events = await dest.outlet.run_request(request)
            if events and isinstance(events[-1], Failed) and events[-1].error in INTERRUPTION_LINES:
                return  # the bot stopped mid-way: nothing was learnt, and the thread was told
            run = summarize_run(events)
            if not executed_approved_action(events):
                await self._remember(result.summary, run.cause, "", "no fix was applied", run.audit_ids, None, source)
                return
            again = await self.recheck(result.name, result.key)
            await self._remember(result.summary, run.cause, run.fix, again.summary, run.audit_ids, again.ok, source)
            template = texts.RECHECK_PASSES if again.ok else texts.RECHECK_FAILS
            recheck = self.redact(template.format(key=result.key, summary=again.summary))
            await dest.outlet.post_in_thread(dest.channel, ref, recheck)
            if again.ok:
                closed = await self.book.close(incident.id, now=self.clock(), resolution="fixed", summary=again.summary)
                if closed is not None:
                    fixed = texts.INCIDENT_FIXED.format(summary=again.summary)
                    await self._in_threads(closed, fixed, skip=dest.platform)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the follow-up of incident %s failed", result.key)

    # ---- memory of past incidents ---------------------------------------------------------
    async def _similar_incidents(self, symptom: str) -> str:
        if self.memory is None:
            return ""
        from core.memory.incidents import format_incidents

        try:
            found = await self.memory.similar_incidents(symptom)
            # A fix that held is the most useful thing to show; otherwise the order stays memory's.
            found = sorted(found, key=lambda incident: not (incident.held is True and incident.fix))
            return self.redact(format_incidents(found))
        except Exception:  # memory is a help, never a reason for the incident flow to stop
            log.exception("recalling similar incidents failed")
            return ""

    async def _remember(
        self,
        symptom: str,
        cause: str,
        fix: str,
        outcome: str,
        audit_ids: Sequence[str],
        held: bool | None,
        source: dict[str, str],
    ) -> None:
        if self.memory is None:
            return
        try:
            await self.memory.remember_incident(
                symptom, cause=cause, fix=fix, outcome=outcome, audit_ids=audit_ids, held=held, source=source
            )
        except Exception:
            log.exception("remembering the incident failed")

    # ---- lifecycle ------------------------------------------------------------------------
    async def drain(self) -> None:
        """Wait for every agent follow-up started so far (tests, orderly shutdown)."""
        while self._followups:
            await asyncio.gather(*list(self._followups), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._followups):
            task.cancel()
        await asyncio.gather(*list(self._followups), return_exceptions=True)
