"""The ReAct loop: ask the model, run the tools it asks for, repeat, answer.

`Agent.run(request)` is an async generator of events. Every event is written to the
store before it is yielded, so what the thread shows can be condensed but the run
never loses a step. Risky calls wait on the approval gate, then the tool's fresh hook
re-checks what the approval was bound to; only then does the tool's own function run,
with a `ToolContext` (who asked, which plan was approved) the model never sees. Tool
failures, unknown tools and bad arguments become observations the model can correct.

Every run ends in a final state (`RunStatus`): answered, failed (the model, a limit, or an
internal error, shown as a `Failed` event) or interrupted. `stop_runs()` is the orderly stop
(SIGTERM): each run in flight is cut where it waits and ends with one `Failed` event saying
so, rendered like any other, before the process exits. A run whose consumer is cancelled
outright keeps its `running` row with its heartbeat stopped: the next start marks it
interrupted and tells its thread (`core.runs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import platform as _platform
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from core import texts
from core.approval import ApprovalGate
from core.errors import ModelFacingError, ServiceUnavailable, ToolError
from core.events import (
    Answer,
    ApprovalRequested,
    ApprovalResolved,
    Event,
    Failed,
    Partial,
    Phase,
    Request,
    Risk,
    Thinking,
    ToolCall,
    ToolResult,
    WorkflowPhase,
)
from core.formats import LiveReader, read_reply
from core.llm import LLM, LLMChunk, LLMError, LLMReply, LLMToolCall
from core.policy import Policy
from core.redact import LiveRedactor
from core.runs import RUN_LEASE, STOPPED
from core.store import Store
from core.store.db import is_unavailable
from core.store.models import ApprovalStatus, AuditEntry, Message, RunStatus
from core.tools.registry import (
    TARGET_CHANGED,
    Plan,
    ToolContext,
    ToolOutput,
    ToolRegistry,
    ToolSpec,
    canonical_json,
    fingerprint,
)
from core.vision import look_at
from core.workflow import ALREADY_STARTED, QA_TOOLS, START_TOOL, VERDICT_LINE, Workflow, check_start, plan_text

log = logging.getLogger(__name__)

LIVE_INTERVAL = 0.1  # seconds: streamed text is masked and handed to renderers at most this often

ContextProvider = Callable[[Request], Awaitable[str]]
RunHook = Callable[[Request, Sequence[dict[str, Any]], str], Awaitable[None]]

SYSTEM_PROMPT = """\
You are AI Orchestrator, an operations assistant for the people who run this server.
Current date and time: {now}. Host: {host} ({os}).

How you work:
- Investigate with tools before you answer; never invent figures, file contents or command output.
- Read-only tools run at once. Tools that change things (write_file, run_command for anything
  that is not read-only, restarts) are shown to a human who approves or denies them. If an action
  is denied, do not retry it: explain and ask what to do instead.
- run_command runs one program without a shell: no pipes, redirections, `&&` or `;`. Plain
  read-only commands run at once; an unusual option makes a command wait for approval, so prefer
  the common forms (`df -h`, `ps aux`, `journalctl -u NAME -n 100 --no-pager`).
- Some commands are forbidden and can never run (formatting disks, raw device writes, kernel
  modules, recursive deletes of system directories). Do not try to work around a refusal.
- Keep answers short and concrete: figures, the command you ran, what to do next.
- Answer in the language the user wrote in.
{extra}"""

WORKFLOW_PROMPT = """\
Change workflows: when the request asks you to change files in a repository or a configuration
(fix a failing test, add a healthcheck to a compose file), first call start_change with the spec
(what will be true when done) and the plan (the steps). Then make the changes, verify them with the
project's QA tools ({qa}) and, if a check fails, fix it and verify again (at most {repairs} repair
cycles). When a path or a test name is wrong, find the right one with search_files or list_directory
and try again instead of stopping."""


@dataclass
class _RunState:
    """What the loop and its wrapper share about one run."""

    run_id: int
    conversation_id: int
    seq: int = 0
    final: bool = False  # the run's row has its final status
    stop_reason: str | None = None  # `stop_conversation()` asked this run to end
    step: asyncio.Task[Event | None] | None = None  # the step in flight
    workflow: Workflow | None = None  # a change workflow, once the model called start_change
    llm: LLM | None = None  # the model this run talks to from now on (the code model in a workflow)
    reusable: dict[str, tuple[int, str]] = field(default_factory=dict)  # approved once for the run: id, by whom


@dataclass(frozen=True, slots=True)
class _Approved:
    """The end of a wait for a person: the call may run under this approval."""

    approval_id: int
    by: str


@dataclass
class AgentConfig:
    max_iterations: int = 15
    history_limit: int = 40
    host_name: str = field(default_factory=socket.gethostname)
    extra_instructions: str = ""
    max_repair_cycles: int = 2  # a change workflow's fix-and-verify cycles (ORCHESTRATOR_MAX_REPAIR_CYCLES)
    verify_required: bool = False  # a workflow must run a QA tool after its last change (ORCHESTRATOR_VERIFY_REQUIRED)


def _output_text(out: object) -> tuple[str, bool, int | None]:
    if isinstance(out, ToolOutput):
        return out.text, out.ok, out.exit_status
    if isinstance(out, str):
        return out, True, None
    try:
        return json.dumps(out, indent=1, default=str, ensure_ascii=False), True, None
    except (TypeError, ValueError):
        return str(out), True, None


class Agent:
    """The ReAct loop over one model, one tool registry and one store: every run of every conversation.

    Build one per process with its dependencies passed in (the gate holds risky calls until a
    person decides, the policy redacts what is recorded and shown) and iterate `run(request)`
    for each message: it yields the run's events, each already recorded, ending in an answer, a
    `Failed` event or an interruption. Runs of one conversation take turns; `stop_conversation`
    ends one of them, `stop_runs` then `wait_stopped` end them all. It never posts to a chat:
    adapters render the events.
    """

    def __init__(
        self,
        *,
        llm: LLM,
        tools: ToolRegistry,
        store: Store,
        gate: ApprovalGate,
        policy: Policy,
        config: AgentConfig | None = None,
        context_providers: Sequence[ContextProvider] = (),
        after_run: Sequence[RunHook] = (),
        clock: Callable[[], datetime] = lambda: datetime.now().astimezone(),
        owner: str = "",
        run_lease: float = RUN_LEASE,
        vision: LLM | None = None,
        vision_model: str = "",
        code_llm: LLM | None = None,
    ) -> None:
        self.llm = llm
        self.code_llm = code_llm  # change workflows talk to this model once started (ORCHESTRATOR_CODE_MODEL)
        self.vision = vision  # the model images attached to a message go to (ORCHESTRATOR_VISION_MODEL)
        self.vision_model = vision_model
        self.tools = tools
        self.store = store
        self.gate = gate
        self.policy = policy
        self.config = config or AgentConfig()
        self.context_providers = list(context_providers)
        self.after_run = list(after_run)
        self.clock = clock
        self.owner = owner or gate.instance_id  # written on each run: whose it is, for the start-up sweep
        self.run_lease = run_lease  # its heartbeat comes every third of this
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._stop_reason: str | None = None
        self._steps: set[asyncio.Task[Event | None]] = set()
        self._running: dict[tuple[str, str, str], _RunState] = {}  # conversation -> its run in flight
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # ---- prompt ---------------------------------------------------------------
    async def system_prompt(self, request: Request) -> str:
        extra = [self.config.extra_instructions] if self.config.extra_instructions else []
        if START_TOOL in self.tools:
            qa = ", ".join(n for n in sorted(QA_TOOLS) if n in self.tools) or "none configured"
            extra.append(WORKFLOW_PROMPT.format(qa=qa, repairs=self.config.max_repair_cycles))
        for provider in self.context_providers:
            try:
                text = await provider(request)
            except Exception:  # a memory outage must not stop the agent
                log.exception("context provider failed")
                continue
            if text:
                extra.append(text)
        return SYSTEM_PROMPT.format(
            now=self.clock().strftime("%A %Y-%m-%d %H:%M %Z"),
            host=self.config.host_name,
            os=f"{_platform.system()} {_platform.release()}",
            extra="\n".join(extra),
        )

    @staticmethod
    def _history_messages(rows: Sequence[Message]) -> list[dict[str, Any]]:
        msgs: list[dict[str, Any]] = []
        for row in rows:
            m: dict[str, Any] = {"role": row.role, "content": row.content}
            if row.tool_calls_json:
                m["tool_calls"] = json.loads(row.tool_calls_json)
            if row.tool_name:
                m["tool_name"] = row.tool_name
            msgs.append(m)
        while msgs and msgs[0]["role"] != "user":  # never start mid-exchange
            msgs.pop(0)
        return msgs

    # ---- stopping ---------------------------------------------------------------
    def stop_runs(self, reason: str = STOPPED) -> int:
        """The orderly stop: every run in flight, and any started from now on, ends at once with
        `reason` as its last event (status interrupted). Returns how many runs were in flight."""
        self._stop_reason = reason
        for step in list(self._steps):
            step.cancel()
        return self._active

    def stop_conversation(self, key: tuple[str, str, str], reason: str) -> bool:
        """End the run in flight in one conversation (the console's Ctrl-C) the way `stop_runs` ends
        them all: cut where it waits, `reason` as its last event. False when nothing runs there."""
        state = self._running.get(key)
        if state is None or state.final:
            return False
        state.stop_reason = reason
        if state.step is not None:
            state.step.cancel()
        return True

    async def wait_stopped(self) -> None:
        """Until no run is in flight (each stopped run's last event has been taken by its consumer)."""
        await self._idle.wait()

    # ---- the loop -------------------------------------------------------------
    async def run(self, request: Request) -> AsyncIterator[Event]:
        """The events of one run. Each step of the loop runs as a task of its own, so `stop_runs()`
        can cut it where it waits (the model, an approval, a tool) while the consumer is still
        there to show the run's last line."""
        self._active += 1
        self._idle.clear()
        try:
            lock = self._locks.setdefault(request.conversation_key, asyncio.Lock())
            async with lock:
                conv_id = await self.store.open_conversation(*request.conversation_key)
                state = _RunState(await self.store.start_run(request, conv_id, owner=self.owner), conv_id)
                self._running[request.conversation_key] = state
                beat = asyncio.create_task(self._heartbeat(state.run_id), name=f"run-{state.run_id}-heartbeat")
                try:
                    # aclosing: if the consumer stops early, the inner generators are closed now, not at GC
                    async with contextlib.aclosing(self._run(request, state)) as events:
                        while True:
                            if (reason := self._stop_reason or state.stop_reason) is not None:
                                if not state.final:
                                    yield await self._interrupted(state, reason)
                                return
                            step = asyncio.create_task(_next(events), name=f"run-{state.run_id}-step")
                            self._steps.add(step)
                            state.step = step
                            try:
                                ev = await step
                            except asyncio.CancelledError:
                                if (self._stop_reason or state.stop_reason) is None or _being_cancelled():
                                    raise  # the consumer itself is cancelled: the start-up sweep finishes it
                                continue  # a stop cut the step: the top of the loop ends the run
                            except Exception as exc:
                                if state.final:
                                    log.exception("run #%s failed after its end", state.run_id)
                                    return
                                yield await self._internal_error(state, exc)
                                return
                            finally:
                                self._steps.discard(step)
                            if ev is None:
                                return
                            yield ev
                finally:
                    beat.cancel()
                    self._running.pop(request.conversation_key, None)
                    if not state.final and not _being_cancelled():
                        # The consumer let go early (no shutdown): nobody is left to tell.
                        await asyncio.shield(self._finish(state, RunStatus.INTERRUPTED, error="stopped by its caller"))
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    async def _heartbeat(self, run_id: int) -> None:
        while True:
            await asyncio.sleep(self.run_lease / 3)
            try:
                await self.store.heartbeat_run(run_id, time.time())
            except Exception:
                log.warning("run #%s: its heartbeat could not be written", run_id, exc_info=True)

    async def _record(self, state: _RunState, ev: Event) -> Event:
        await self._record_all(state, [ev])
        return ev

    async def _record_all(
        self, state: _RunState, events: Sequence[Event], audit: Sequence[AuditEntry] = ()
    ) -> Sequence[Event]:
        """Store steps (and the audit rows that go with them) in one transaction, before they are shown.
        Each step is stored with the workflow phase it was taken in (a `Phase` with its own)."""
        first = state.seq + 1
        current = state.workflow.phase.value if state.workflow is not None else ""
        phases = [ev.phase.value if isinstance(ev, Phase) else current for ev in events]
        await self.store.add_steps(state.run_id, list(enumerate(events, start=first)), audit=audit, phases=phases)
        state.seq += len(events)
        return events

    async def _finish(self, state: _RunState, status: RunStatus, *, answer: str = "", error: str = "") -> None:
        state.final = True
        verdict, why = ("", "")
        if state.workflow is not None:  # a workflow cut short fails with the reason it ended
            ended = "" if status is RunStatus.ANSWERED else (error or status.value)
            verdict, why = state.workflow.complete(error=ended)
        await self.store.finish_run(
            state.run_id, status=status, answer=answer, error=error, verdict=verdict, verdict_reason=why
        )

    def _completed(self, state: _RunState, *, error: str = "") -> list[Event]:
        """The COMPLETE phase of a workflow (nothing outside one): its verdict, fixed now."""
        if state.workflow is None:
            return []
        verdict, why = state.workflow.complete(error=error)
        return [Phase(state.run_id, WorkflowPhase.COMPLETE, self.policy.redact(why), verdict)]

    async def _interrupted(self, state: _RunState, reason: str) -> Event:
        """The last event of a stopped run, stored with its final state; its open approvals expire
        with it, so nobody can approve what will never run."""
        ev = Failed(state.run_id, reason)
        try:
            await self._finish(state, RunStatus.INTERRUPTED, error=reason)
            await self._record(state, ev)
            await self.gate.expire_for_run(state.run_id, reason=texts.STOPPED_BEFORE_DECISION)
        except Exception:  # the thread is told all the same
            log.exception("run #%s: its interruption could not be stored", state.run_id)
        return ev

    async def _internal_error(self, state: _RunState, exc: Exception) -> Event:
        """A bug or an unexpected failure inside the loop: the run fails with a readable line."""
        log.error("run #%s failed with an internal error", state.run_id, exc_info=exc)
        detail = self.policy.redact(" ".join(str(exc).split()))[:200]
        if isinstance(exc, ServiceUnavailable):
            error = texts.UNAVAILABLE.format(detail=detail)
        elif is_unavailable(exc):
            error = texts.DATABASE_REFUSED.format(kind=type(exc).__name__)
        else:
            error = texts.INTERNAL_ERROR.format(kind=type(exc).__name__, detail=f": {detail}" if detail else "")
        ev = Failed(state.run_id, error)
        try:
            await self._finish(state, RunStatus.FAILED, error=error)
            await self._record(state, ev)
        except Exception:
            log.exception("run #%s: its failure could not be stored", state.run_id)
        return ev

    async def _run(self, request: Request, state: _RunState) -> AsyncGenerator[Event, None]:
        conv_id, run_id = state.conversation_id, state.run_id
        history = self._history_messages(await self.store.history(conv_id, limit=self.config.history_limit))

        user_msg = {"role": "user", "content": request.text}
        if request.attachments:
            looked = await look_at(
                request.attachments,
                run_id=run_id,
                question=request.text,
                vision=self.vision,
                model=self.vision_model,
                redact=self.policy.redact,
            )
            viewed = [
                AuditEntry(
                    at=_now(),
                    action="tool_run",
                    actor=f"{request.platform}:{request.user_id}",
                    tool=ev.tool,
                    args_json=canonical_json(ev.args),
                    decision="auto",  # the person's own picture, shown to a local model: nothing runs
                    run_id=run_id,
                )
                for ev in looked.steps
                if isinstance(ev, ToolCall)
            ]
            for shown in await self._record_all(state, looked.steps, viewed) if looked.steps else ():
                yield shown
            user_msg["content"] = f"{request.text}\n\n{looked.note}" if request.text else looked.note
        new_messages: list[dict[str, Any]] = [user_msg]
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": await self.system_prompt(request)},
            *history,
            user_msg,
        ]
        empty_replies = 0
        n_calls = 0
        for _ in range(self.config.max_iterations):
            reply: LLMReply | None = None
            try:
                async with contextlib.aclosing(self._model_turn(run_id, messages, state.llm or self.llm)) as turn:
                    async for item in turn:
                        if isinstance(item, LLMReply):
                            reply = item
                        else:
                            yield item
            except LLMError as exc:
                for shown in await self._fail(state, str(exc)):
                    yield shown
                return
            assert reply is not None
            reading = read_reply(reply, self.tools.names())
            thinking, content, calls = reading.thinking, reading.text, list(reading.calls)
            # Secrets the model read or invented never reach the thread, the store or the history.
            redact = self.policy.redact
            held: list[Event] = [Thinking(run_id, redact(thinking))] if thinking else []  # stored with what follows
            if calls:
                if content:
                    held.append(Thinking(run_id, redact(content)))
                assistant = {
                    "role": "assistant",
                    "content": redact(content),
                    "tool_calls": [
                        {"function": {"name": c.name, "arguments": self._redact_value(c.arguments)}} for c in calls
                    ],
                }
                messages.append(assistant)
                new_messages.append(assistant)
                for call in calls:
                    n_calls += 1
                    call_id = f"{run_id}.{n_calls}"
                    if call.name == START_TOOL and START_TOOL in self.tools:
                        steps, start_audit, output = await self._start_workflow(request, state, call_id, call)
                        for shown in await self._record_all(state, [*held, *steps], start_audit):
                            yield shown
                        held = []
                    else:
                        result: ToolResult | None = None
                        async with contextlib.aclosing(self._call_tool(request, state, call_id, call)) as called:
                            async for ev, audit in called:
                                for shown in await self._record_all(state, [*held, ev], audit):
                                    yield shown
                                held = []
                                if isinstance(ev, ToolResult):
                                    result = ev
                        assert result is not None
                        output = result.output
                    tool_msg = {"role": "tool", "content": output, "tool_name": call.name}
                    messages.append(tool_msg)
                    new_messages.append(tool_msg)
                continue
            if held and not content:
                for shown in await self._record_all(state, held):
                    yield shown
                held = []
            if not content:
                empty_replies += 1
                if empty_replies >= 2:
                    for shown in await self._fail(state, texts.EMPTY_TWICE):
                        yield shown
                    return
                messages.append({"role": "user", "content": texts.EMPTY_REPLY_NUDGE})
                continue
            answer = self.policy.redact(content)
            if state.workflow is not None and (nudge := state.workflow.before_answer()) is not None:
                # not finished yet (a required check, a failure with repair cycles left): the model is told
                for shown in await self._record_all(state, [*held, Thinking(run_id, answer)]) if answer else ():
                    yield shown
                nudged = [{"role": "assistant", "content": answer}, {"role": "user", "content": nudge}]
                messages.extend(nudged)
                new_messages.extend(nudged)
                continue
            completed = self._completed(state)
            if completed:
                verdict = completed[0]
                assert isinstance(verdict, Phase)
                answer = f"{answer}\n\n{VERDICT_LINE.format(verdict=verdict.verdict, why=verdict.text)}"
            final = Answer(run_id, answer)
            for shown in (await self._record_all(state, [*held, *completed, final]))[:-1]:
                yield shown
            new_messages.append({"role": "assistant", "content": answer})
            await self.store.add_messages(conv_id, new_messages)
            await self._finish(state, RunStatus.ANSWERED, answer=answer)
            yield final
            for hook in self.after_run:
                try:
                    await hook(request, new_messages, answer)
                except Exception:
                    log.exception("after-run hook failed")
            return
        error = texts.TOO_MANY_TURNS.format(turns=self.config.max_iterations)
        await self.store.add_messages(conv_id, [user_msg])
        for shown in await self._fail(state, error):
            yield shown

    async def _fail(self, state: _RunState, error: str) -> Sequence[Event]:
        """A run that ends without an answer (the model, a limit): its last steps, stored with its
        final state before they are shown (a workflow's COMPLETE phase, FAIL, then the failure)."""
        events = await self._record_all(state, [*self._completed(state, error=error), Failed(state.run_id, error)])
        await self._finish(state, RunStatus.FAILED, error=error)
        return events

    async def _start_workflow(
        self, request: Request, state: _RunState, call_id: str, call: LLMToolCall
    ) -> tuple[list[Event], list[AuditEntry], str]:
        """`start_change`: the run becomes a change workflow, shown as its SPEC and PLAN phases
        (and EXECUTE, where it goes next), with the steps, the audit row and what the model reads.
        A second start, or a call without a spec or a plan, is refused like any bad call."""
        run_id, actor = state.run_id, f"{request.platform}:{request.user_id}"
        spec = self.tools.get(START_TOOL)
        assert spec is not None
        shown_args = self._redact_value(call.arguments if isinstance(call.arguments, dict) else {"raw": call.arguments})
        entry = AuditEntry(
            at=_now(), action="tool_run", actor=actor, tool=START_TOOL, args_json=canonical_json(shown_args),
            decision="auto", exit_status=0, run_id=run_id,
        )  # fmt: skip
        try:
            if state.workflow is not None:
                raise ToolError(ALREADY_STARTED.format(phase=state.workflow.phase))
            args = spec.validate(call.arguments)
            goal, steps = check_start(args["spec"], args["plan"])
            output = str(await spec.run(args, ToolContext(request=request, run_id=run_id, call_id=call_id)))
        except ModelFacingError as exc:
            message = texts.CALL_REFUSED.format(error=exc)
            result, audit = _refusal(run_id, call_id, START_TOOL, actor, shown_args, message, audit_action="refused")
            return [ToolCall(run_id, call_id, START_TOOL, shown_args), result], list(audit), message
        redact = self.policy.redact
        state.workflow = Workflow(
            goal, steps, max_repairs=self.config.max_repair_cycles, verify_required=self.config.verify_required
        )
        if self.code_llm is not None:
            state.llm = self.code_llm  # the change itself is the code model's work (ORCHESTRATOR_CODE_MODEL)
        phases: list[Event] = [
            Phase(run_id, WorkflowPhase.SPEC, redact(goal)),
            Phase(run_id, WorkflowPhase.PLAN, redact(plan_text(steps))),
            Phase(run_id, WorkflowPhase.EXECUTE),
        ]
        return phases, [entry], output

    async def _model_turn(
        self, run_id: int, messages: Sequence[dict[str, Any]], llm: LLM
    ) -> AsyncGenerator[Partial | LLMReply, None]:
        """One model turn: its pieces as they stream (read and masked, for renderers), then the
        whole reply. Raises `LLMError`; a turn cut short never yields its reply."""
        reader = LiveReader(self.tools.names())
        masks = {kind: LiveRedactor(self.policy.redact, interval=LIVE_INTERVAL) for kind in ("thinking", "text")}

        current: list[Literal["thinking", "text"]] = []  # the kind being shown (one at most)

        def pieces(found: Sequence[tuple[Literal["thinking", "text"], str]], *, end: bool = False) -> list[Partial]:
            out: list[Partial] = []
            for kind, text in found:
                # the other kind ends here: what it held goes out first
                if current and current[0] != kind and (shown := masks[current[0]].flush()):
                    out.append(Partial(run_id, current[0], shown))
                current[:] = [kind]
                if shown := masks[kind].feed(text):
                    out.append(Partial(run_id, kind, shown))
            if end and current and (shown := masks[current[0]].flush()):
                out.append(Partial(run_id, current[0], shown))
            return out

        async with contextlib.aclosing(llm.stream(messages, self.tools.schemas())) as stream:
            pending: asyncio.Future[LLMChunk | LLMReply] | None = None
            try:
                while True:
                    pending = pending or asyncio.ensure_future(anext(stream))
                    done, _ = await asyncio.wait({pending}, timeout=LIVE_INTERVAL)
                    if not done:  # the model paused: what the mask held for its pace goes out
                        for partial in pieces([(current[0], "")] if current else []):
                            yield partial
                        continue
                    try:
                        item = pending.result()
                    except StopAsyncIteration:
                        break
                    finally:
                        pending = None
                    if isinstance(item, LLMReply):
                        for partial in pieces(reader.close(), end=True):
                            yield partial
                        yield item
                        return
                    for partial in pieces(reader.feed(content=item.content, thinking=item.thinking)):
                        yield partial
            finally:
                if pending is not None:
                    pending.cancel()
                    with contextlib.suppress(BaseException):
                        await pending
        raise LLMError("the model's reply ended without being complete")

    def _redact_value(self, value: Any) -> Any:
        """The same JSON-like value with every string redacted (arguments shown or stored)."""
        if isinstance(value, str):
            return self.policy.redact(value)
        if isinstance(value, dict):
            return {k: self._redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._redact_value(v) for v in value]
        return value

    # ---- one tool call ----------------------------------------------------------
    async def _call_tool(
        self, request: Request, state: _RunState, call_id: str, call: LLMToolCall
    ) -> AsyncGenerator[tuple[Event, Sequence[AuditEntry]], None]:
        """The events of one call, each with the audit rows stored in the same transaction. In a
        change workflow, the phase the call moves the run to comes first, and its result is told
        to the workflow (a check passed or failed, a change was made or not)."""
        run_id, wf = state.run_id, state.workflow
        raw_args = call.arguments if isinstance(call.arguments, dict) else {"raw": call.arguments}
        shown_args = self._redact_value(raw_args)  # what the thread, the store and the audit see
        actor = f"{request.platform}:{request.user_id}"

        def refuse(message: str, *, audit_action: str = "") -> tuple[ToolResult, Sequence[AuditEntry]]:
            if wf is not None and plan is not None:
                wf.on_result(call.name, plan.risk, ran=False, ok=False)
            return _refusal(run_id, call_id, call.name, actor, shown_args, message, audit_action=audit_action)

        # The plan comes before the call is shown, so a workflow's new phase is shown above it.
        spec = self.tools.get(call.name)
        plan: Plan | None = None
        problem = ""
        if spec is None:
            problem = texts.NO_SUCH_TOOL.format(name=call.name, tools=", ".join(self.tools.names()))
        else:
            try:
                args = spec.validate(call.arguments)
                plan = await spec.make_plan(args, ToolContext(request=request, run_id=run_id, call_id=call_id))
            except ModelFacingError as exc:
                problem = texts.CALL_REFUSED.format(error=exc)
        if wf is not None and plan is not None:
            try:
                moved = wf.on_call(call.name, plan.risk)
            except ModelFacingError as exc:
                problem, plan = texts.CALL_REFUSED.format(error=exc), None
            else:
                if moved is not None:
                    yield Phase(run_id, *moved), ()
        yield ToolCall(run_id, call_id, call.name, shown_args), ()
        if problem or spec is None or plan is None:
            yield refuse(problem, audit_action="refused")
            return
        fp = fingerprint(spec.name, args, plan.fingerprint_parts)

        approval_id: int | None = None
        approved_by = ""
        reused = ""
        if plan.risk is not Risk.READ:
            # A QA tool's plan is approved once per run for its directory and exact argv.
            reuse_key = fingerprint(spec.name, {}, plan.fingerprint_parts) if plan.reuse else ""
            if reuse_key and reuse_key in state.reusable:
                approval_id, approved_by = state.reusable[reuse_key]
                if why := await self._changed_since(request, run_id, call_id, spec, args, plan, fp):
                    yield refuse(why, audit_action="refused")
                    return
                reused = f"approved in #{approval_id} earlier in this run; "
            else:
                async with contextlib.aclosing(self._approve(request, run_id, call_id, spec, args, plan, fp)) as asked:
                    async for step in asked:
                        if isinstance(step, _Approved):
                            approval_id, approved_by = step.approval_id, step.by
                            continue
                        yield step
                        if isinstance(step[0], ToolResult):  # denied, expired, or changed since
                            if wf is not None:
                                wf.on_result(spec.name, plan.risk, ran=False, ok=False)
                            return
                assert approval_id is not None
                if reuse_key:
                    state.reusable[reuse_key] = (approval_id, approved_by)

        ctx = ToolContext(
            request=request, run_id=run_id, call_id=call_id, plan=plan, approval_id=approval_id, approved_by=approved_by
        )
        try:
            out = await spec.run(args, ctx)
        except asyncio.CancelledError:
            raise
        except ModelFacingError as exc:
            out = ToolOutput(texts.CALL_REFUSED.format(error=exc), ok=False)
        except Exception as exc:  # a tool bug is an observation, not a crash
            log.exception("tool %s failed", spec.name)
            out = ToolOutput(texts.TOOL_FAILED.format(tool=spec.name, kind=type(exc).__name__, error=exc), ok=False)
        text, ok, exit_status = _output_text(out)
        clean, truncated = self.policy.clean(text)
        ran = AuditEntry(
            at=_now(),
            action="tool_run",
            actor=actor,
            tool=spec.name,
            args_json=canonical_json(self._redact_value(args)),
            fingerprint=fp,
            decision="auto" if plan.risk is Risk.READ else "approved",
            exit_status=exit_status if exit_status is not None else (0 if ok else 1),
            output_size=len(text),
            run_id=run_id,
            approval_id=approval_id,
            detail=(reused + self.policy.redact(plan.summary))[:2000],
        )
        if wf is not None:
            where = plan.fingerprint_parts[0] if spec.name in QA_TOOLS and plan.fingerprint_parts else ""
            wf.on_result(spec.name, plan.risk, ran=True, ok=ok, where=where)
        yield ToolResult(run_id, call_id, spec.name, ok, clean, truncated), (ran,)

    async def _changed_since(
        self,
        request: Request,
        run_id: int,
        call_id: str,
        spec: ToolSpec,
        args: dict[str, Any],
        plan: Plan,
        approved: str,
    ) -> str:
        """Why an approved call may no longer run, "" when it may: the tool's fresh hook checks the
        policy again and re-derives the facts the approval (fingerprint `approved`) was bound to."""
        try:
            parts = await spec.fresh_parts(
                args, ToolContext(request=request, run_id=run_id, call_id=call_id, plan=plan)
            )
        except ModelFacingError as exc:
            return texts.NOT_RUN.format(why=exc)
        if fingerprint(spec.name, args, parts) != approved:
            return texts.NOT_RUN.format(why=TARGET_CHANGED)
        return ""

    async def _approve(
        self,
        request: Request,
        run_id: int,
        call_id: str,
        spec: ToolSpec,
        args: dict[str, Any],
        plan: Plan,
        fp: str,
    ) -> AsyncGenerator[tuple[Event, Sequence[AuditEntry]] | _Approved, None]:
        """A risky call waits for a person: the steps to show (ending in a refused `ToolResult` when
        it may not run), else, last, the approval's id and who approved it."""
        actor, shown_args = f"{request.platform}:{request.user_id}", self._redact_value(args)

        def refuse(message: str, *, shown: str = "", audit_action: str = "") -> tuple[ToolResult, Sequence[AuditEntry]]:
            return _refusal(
                run_id, call_id, spec.name, actor, shown_args, message, shown=shown, audit_action=audit_action
            )

        # the approver sees the exact action with secrets masked; the fingerprint binds the real one
        shown = dataclasses.replace(
            plan, summary=self.policy.redact(plan.summary), detail=self.policy.redact(plan.detail)
        )
        approval = await self.gate.request(
            request=request, run_id=run_id, tool=spec.name, args=args, plan=shown, fingerprint=fp
        )
        assert approval.id is not None
        try:
            yield (
                ApprovalRequested(
                    run_id=run_id,
                    approval_id=approval.id,
                    tool=spec.name,
                    risk=plan.risk,
                    summary=shown.summary,
                    detail=shown.detail,
                    detail_kind=plan.detail_kind,
                    host=plan.host,
                    expires_at=approval.expires_at,
                    requested_by=actor,
                    reuse=plan.reuse,
                ),
                (),
            )
        except GeneratorExit:
            self.gate.abandon(approval.id)  # the run was stopped before it waited
            raise
        final = await self.gate.wait(approval.id)
        approved = final.status == ApprovalStatus.APPROVED
        yield ApprovalResolved(run_id, approval.id, approved, final.decided_by, final.reason), ()
        if not approved:
            why = texts.NO_DECISION if final.status == ApprovalStatus.EXPIRED else (final.reason or "denied")
            decided = {"status": final.status, "by": final.decided_by, "why": why}
            yield refuse(texts.NOT_RUN_DECIDED.format(**decided), shown=texts.NOT_RUN_SHOWN.format(**decided))
            return
        if why := await self._changed_since(request, run_id, call_id, spec, args, plan, final.fingerprint):
            yield refuse(why, audit_action="refused")
            return
        yield _Approved(approval.id, final.decided_by or "")


def _now() -> float:
    return time.time()


def _refusal(
    run_id: int,
    call_id: str,
    tool: str,
    actor: str,
    args: dict[str, Any],
    message: str,
    *,
    shown: str = "",
    audit_action: str = "",
) -> tuple[ToolResult, Sequence[AuditEntry]]:
    """A call that does not run: `message` for the model, `shown` (default: the same) for people, and
    the audit row when `audit_action` names one (a refusal; a person's "no" is audited by the gate)."""
    result = ToolResult(run_id, call_id, tool, False, message, refused=shown or message)
    if not audit_action:
        return result, ()
    entry = AuditEntry(
        at=_now(), action=audit_action, actor=actor, tool=tool, args_json=canonical_json(args), run_id=run_id,
        detail=message[:2000],
    )  # fmt: skip
    return result, (entry,)


async def _next(events: AsyncGenerator[Event, None]) -> Event | None:
    """The next event, None at the end (a task's result, so the step can be cancelled on its own)."""
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        return None


def _being_cancelled() -> bool:
    """True when the current task has been asked to stop (it must not be kept busy)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
