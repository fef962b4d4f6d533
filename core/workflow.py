"""Change workflows: SPEC → PLAN → EXECUTE → VERIFY → REPAIR → COMPLETE.

A request that changes a repository or a configuration ("fix the failing test in /srv/app")
becomes a workflow when the model calls `start_change` with the spec (what will be true when
done) and the plan (the steps). From then on the agent, not the model, keeps the phase: a
change (any call whose plan is not read-only) is EXECUTE, a QA tool (`run_tests`, `run_lint`,
…) is VERIFY, a change after a failed check is REPAIR, and at most `max_repairs` repair cycles
are allowed before further changes are refused. The answer is COMPLETE, with a verdict the
agent derives from what ran (the model cannot claim PASS over a failing check): FAIL when the
latest run of a check failed, when verification is required and nothing verified the last
change, or when nothing was changed or verified; PASS otherwise.

`Workflow` is the state machine and holds no I/O; `core.agent` feeds it the calls and results
and turns the phases it returns into `Phase` events, stored (with every step) before shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from core.errors import ToolError
from core.events import Risk, WorkflowPhase
from core.tools.registry import ToolContext, ToolSpec, tool

START_TOOL = "start_change"
QA_TOOLS = frozenset({"run_tests", "run_lint", "run_format", "run_build", "run_typecheck"})
MAX_PLAN_STEPS = 20
MAX_TEXT = 600

Verdict = Literal["PASS", "FAIL"]

STARTED = (
    "Change workflow started (phase EXECUTE). Make the changes, each approved by a person; then verify "
    "them with the QA tools the project has ({qa}); if a check fails, fix it and verify again (at most "
    "{repairs} repair cycles). If a path or a test name is wrong, find the right one with search_files or "
    "list_directory and try again. Finish with a short answer: what changed and the QA results."
)
ALREADY_STARTED = "a change workflow is already under way in this run (phase {phase}); carry on with it"
REPAIRS_USED_UP = (
    "not run: the repair cycles are used up ({repairs} of {repairs}, ORCHESTRATOR_MAX_REPAIR_CYCLES) and "
    "{failing} still fails; make no more changes: answer now with what is left to fix"
)
VERIFY_NUDGE = (
    "Verification is required before you finish (ORCHESTRATOR_VERIFY_REQUIRED): run the project's QA tools "
    "({qa}) on the directory you changed, then answer."
)
REPAIR_NUDGE = (
    "{failing} failed. You have {left} repair cycle(s) left: fix the cause and run the check again, or answer "
    "with why it cannot be fixed."
)
VERDICT_LINE = "Verdict: {verdict}: {why}"


@dataclass(frozen=True, slots=True)
class QAResult:
    """The latest run of one check (a QA tool on a directory)."""

    tool: str
    where: str
    ok: bool

    @property
    def name(self) -> str:
        return f"{self.tool} in {self.where}" if self.where else self.tool


@dataclass
class Workflow:
    """One change workflow's state, inside one run."""

    spec: str
    plan: tuple[str, ...]
    max_repairs: int = 2
    verify_required: bool = False
    phase: WorkflowPhase = WorkflowPhase.EXECUTE
    repairs: int = 0  # repair cycles begun
    changes: int = 0  # changes that ran
    not_run: int = 0  # changes denied or refused
    unverified: bool = False  # a change ran after the last check
    results: dict[tuple[str, str], QAResult] = field(default_factory=dict)
    verdict: Verdict | None = None
    why: str = ""
    _nudged: set[str] = field(default_factory=set)

    # ---- the phases ---------------------------------------------------------------
    @property
    def failing(self) -> list[QAResult]:
        return [r for r in self.results.values() if not r.ok]

    def on_call(self, tool: str, risk: Risk) -> tuple[WorkflowPhase, str] | None:
        """The phase a call moves the workflow to (with what to say of it), None if it stays.
        Raises `ToolError` (the model reads it) for a change once the repair cycles are used up."""
        if tool in QA_TOOLS:
            if self.phase is WorkflowPhase.VERIFY:
                return None
            after = f"after repair cycle {self.repairs} of {self.max_repairs}" if self.repairs else ""
            return self._enter(WorkflowPhase.VERIFY, after)
        if risk is Risk.READ:
            return None  # reading (a search, a diff) belongs to the phase it happens in
        if self.phase is not WorkflowPhase.VERIFY:
            return None
        if not self.failing:
            return self._enter(WorkflowPhase.EXECUTE, "more changes after a passing check")
        if self.repairs >= self.max_repairs:
            raise ToolError(REPAIRS_USED_UP.format(repairs=self.max_repairs, failing=self._names(self.failing)))
        self.repairs += 1
        failing = self._names(self.failing)
        return self._enter(WorkflowPhase.REPAIR, f"cycle {self.repairs} of {self.max_repairs}: {failing} failed")

    def on_result(self, tool: str, risk: Risk, *, ran: bool, ok: bool, where: str = "") -> None:
        """What a call's result means for the workflow: a check's outcome, or a change made."""
        if tool in QA_TOOLS:
            if ran:
                self.results[(tool, where)] = QAResult(tool, where, ok)
                self.unverified = False
            return
        if risk is Risk.READ:
            return
        if ran:
            self.changes += 1
            self.unverified = True
        else:
            self.not_run += 1

    def _enter(self, phase: WorkflowPhase, text: str) -> tuple[WorkflowPhase, str]:
        self.phase = phase
        return phase, text

    # ---- the end --------------------------------------------------------------------
    def before_answer(self) -> str | None:
        """A nudge for the model instead of ending (once per reason), or None to let it answer."""
        qa = ", ".join(sorted(QA_TOOLS))
        if self.verify_required and (not self.results or self.unverified) and "verify" not in self._nudged:
            self._nudged.add("verify")
            return VERIFY_NUDGE.format(qa=qa)
        failing = self.failing
        key = f"repair-{self.repairs}"
        if failing and self.repairs < self.max_repairs and key not in self._nudged:
            self._nudged.add(key)
            return REPAIR_NUDGE.format(failing=self._names(failing), left=self.max_repairs - self.repairs)
        return None

    def complete(self, *, error: str = "") -> tuple[Verdict, str]:
        """The verdict and why, fixed once: from `error` (the run failed) or from what ran."""
        if self.verdict is None:
            self.phase = WorkflowPhase.COMPLETE
            self.verdict, self.why = ("FAIL", error) if error else self._judge()
        return self.verdict, self.why

    def _judge(self) -> tuple[Verdict, str]:
        failing = self.failing
        cycles = f" after {self.repairs} repair cycle{'s' if self.repairs != 1 else ''}" if self.repairs else ""
        if failing:
            return "FAIL", f"{self._names(failing)} failed{cycles}"
        passed = self._names(list(self.results.values()))
        if self.verify_required and (not self.results or self.unverified):
            return "FAIL", "not verified: ORCHESTRATOR_VERIFY_REQUIRED is on and no QA tool ran after the last change"
        if not self.changes:
            if self.results:
                return "PASS", f"nothing needed changing: {passed} passed"
            if self.not_run:
                return "FAIL", f"no change was made: {self.not_run} change(s) denied or refused"
            return "FAIL", "nothing was changed or verified"
        if not self.results:
            return "PASS", f"{self.changes} change(s) made; not verified (no QA tool ran)"
        if self.unverified:
            return "PASS", f"{passed} passed, but a later change was not verified"
        return "PASS", f"{passed} passed{cycles}"

    @staticmethod
    def _names(results: list[QAResult]) -> str:
        return ", ".join(r.name for r in results)


def plan_text(plan: tuple[str, ...]) -> str:
    return "\n".join(f"{i}. {step}" for i, step in enumerate(plan, start=1))


def workflow_tools(*, max_repairs: int = 2) -> list[ToolSpec]:
    """`start_change`, the call that turns a run into a change workflow."""

    @tool(risk=Risk.READ)
    async def start_change(spec: str, plan: list[str], *, ctx: ToolContext) -> str:
        """Start a change workflow. Call this first, before any change, when the request asks to change files in
        a repository or a configuration (fix a failing test, edit a compose file). The phases (SPEC, PLAN,
        EXECUTE, VERIFY, REPAIR, COMPLETE) are shown in the thread and the run ends with a verdict.

        Args:
            spec: what will be true when the change is done, in one or two sentences.
            plan: the steps, in order, one short sentence each.
        """
        check_start(spec, plan)
        return STARTED.format(qa=", ".join(sorted(QA_TOOLS)), repairs=max_repairs)

    return [start_change]


def check_start(spec: str, plan: list[str]) -> tuple[str, tuple[str, ...]]:
    """The spec and steps, cleaned, or `ToolError` saying what to give instead."""
    text = " ".join(spec.split())
    steps = tuple(" ".join(s.split()) for s in plan if s.strip())
    if not text:
        raise ToolError("start_change needs a spec: what will be true when the change is done")
    if not steps:
        raise ToolError("start_change needs a plan: the steps, one short sentence each")
    if len(steps) > MAX_PLAN_STEPS:
        raise ToolError(f"the plan has {len(steps)} steps; keep it to {MAX_PLAN_STEPS} at most")
    if len(text) > MAX_TEXT or any(len(s) > MAX_TEXT for s in steps):
        raise ToolError(f"keep the spec and each step under {MAX_TEXT} characters")
    return text, steps
