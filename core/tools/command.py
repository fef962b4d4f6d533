"""run_command: a command line split with shlex and executed without a shell.

The plan says what the approver sees (the exact argv) and the risk the policy gives it;
the body asks the policy again and runs the argv one of two ways: a read-only command
runs freely, anything else only because a person approved that exact argv.
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


def command_tools(policy: Policy) -> list[ToolSpec]:
    def judged(command: str) -> CommandDecision:
        """The policy's decision; a forbidden command is refused here, with or without approval."""
        decision = policy.check_command(command)
        if decision.verdict is Verdict.FORBIDDEN:
            raise PolicyError(decision.reason)
        return decision

    def workdir() -> str | None:
        return str(policy.roots[0]) if policy.roots and policy.roots[0].is_dir() else None

    async def run_free(argv: Sequence[str]) -> ProcessResult:
        """A command the policy judged read-only: it runs without anyone's approval."""
        return await run_process(
            list(argv),
            timeout=policy.config.command_timeout,
            output_cap=policy.config.output_cap * 4,
            cwd=workdir(),
            env=scrubbed_env(),
        )

    async def run_approved(argv: Sequence[str]) -> ProcessResult:
        """A command a person approved: it runs exactly as the approver saw it."""
        return await run_process(
            list(argv),
            timeout=policy.config.command_timeout,
            output_cap=policy.config.output_cap * 4,
            cwd=workdir(),
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
        if decision.verdict is Verdict.READ:
            return command_output(argv, await run_free(argv))
        if not ctx.approved:
            raise PolicyError(f"{shlex.join(argv)} needs a person's approval first; it was not run")
        return command_output(argv, await run_approved(argv))

    def argv_part(decision: CommandDecision) -> tuple[str, ...]:
        return (canonical_json(list(decision.argv)),)  # the approval is bound to the argv the approver saw

    @run_command.plan
    async def _plan(args: dict[str, Any]) -> Plan:
        decision = judged(args["command"])
        risk = Risk.READ if decision.verdict is Verdict.READ else Risk.EXEC
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
