"""run_command: a command line split with shlex and executed without a shell.

The plan says what the approver sees (the exact argv) and the risk the policy gives it;
the body asks the policy again and runs the argv one of two ways: a read-only command
runs freely inside the kernel sandbox, anything else only because a person approved that
exact argv (and then as approved). Without a working sandbox nothing runs freely.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from typing import Any

from core.events import Risk
from core.policy import CommandDecision, Policy, PolicyError, Verdict
from core.process import ProcessResult, run_process
from core.sandbox import Sandbox, SandboxConfig, SandboxUnavailable
from core.tools.registry import Plan, ToolContext, ToolOutput, ToolSpec, canonical_json, tool

_SECRET_ENV = re.compile(r"(?i)TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE|CREDENTIAL|DATABASE_URL|AUTH")


def scrubbed_env() -> dict[str, str]:
    """The bot's environment minus anything that looks like a secret: children never see our tokens."""
    return {k: v for k, v in os.environ.items() if not _SECRET_ENV.search(k)}


def command_output(argv: Sequence[str], result: ProcessResult) -> ToolOutput:
    status = "timed out" if result.timed_out else f"exit status {result.exit_status}"
    body = result.combined() or "(no output)"
    cut = "\n(output cut at the cap)" if result.truncated else ""
    return ToolOutput(f"$ {shlex.join(argv)}\n{body}{cut}\n[{status}]", result.ok, result.exit_status)


def command_tools(policy: Policy, *, sandbox: Sandbox | None = None) -> list[ToolSpec]:
    sandbox = sandbox or Sandbox(SandboxConfig(file_roots=tuple(policy.roots)))

    def judged(command: str) -> CommandDecision:
        """The policy's decision; a forbidden command is refused here, with or without approval."""
        decision = policy.check_command(command)
        if decision.verdict is Verdict.FORBIDDEN:
            raise PolicyError(decision.reason)
        return decision

    async def free(decision: CommandDecision) -> bool:
        """Read-only by the table AND a sandbox to run it in: otherwise it asks."""
        return decision.verdict is Verdict.READ and (await sandbox.probe()).available

    async def run_free(decision: CommandDecision) -> ProcessResult:
        """A command the policy judged read-only: it runs in the sandbox, without anyone's approval."""
        assert decision.workdir is not None  # the policy gives READ only with a root to run in
        return await sandbox.run(
            decision.argv,
            cwd=decision.workdir,
            timeout=policy.config.command_timeout,
            output_cap=policy.config.output_cap * 4,
        )

    async def run_approved(decision: CommandDecision) -> ProcessResult:
        """A command a person approved: it runs exactly as the approver saw it."""
        return await run_process(
            list(decision.argv),
            timeout=policy.config.command_timeout,
            output_cap=policy.config.output_cap * 4,
            cwd=str(decision.workdir or "/"),
            env=scrubbed_env(),
        )

    @tool(risk=Risk.EXEC)
    async def run_command(command: str, *, ctx: ToolContext) -> ToolOutput:
        """Run one program with its arguments (no shell: no pipes, redirections, && or ;).

        Read-only commands (df, free, ps, ls, cat inside the file roots, journalctl…) run at once;
        anything else waits for a person's approval; destructive commands are always refused.

        Args:
            command: the command line, for example "df -h /var".
        """
        decision = judged(command)
        argv = decision.argv
        if ctx.approved:
            return command_output(argv, await run_approved(decision))
        if not await free(decision):
            raise PolicyError(f"{shlex.join(argv)} needs a person's approval first; it was not run")
        try:
            return command_output(argv, await run_free(decision))
        except SandboxUnavailable as exc:  # the sandbox broke since the plan: never run it unconfined
            raise PolicyError(f"{shlex.join(argv)} was not run: {exc}; it needs a person's approval") from exc

    def argv_part(decision: CommandDecision) -> tuple[str, ...]:
        return (canonical_json(list(decision.argv)),)  # the approval is bound to the argv the approver saw

    @run_command.plan
    async def _plan(args: dict[str, Any]) -> Plan:
        decision = judged(args["command"])
        risk = Risk.READ if await free(decision) else Risk.EXEC
        shown = shlex.join(decision.argv)
        return Plan(
            risk=risk,
            summary=f"run {shown}",
            detail=shown,
            detail_kind="argv",
            fingerprint_parts=argv_part(decision),
        )

    @run_command.check_fresh
    async def _fresh(args: dict[str, Any]) -> tuple[str, ...]:
        return argv_part(judged(args["command"]))  # a command forbidden since the approval is refused

    return [run_command]
