"""run_command: a command line split with shlex and executed without a shell."""

from __future__ import annotations

import os
import re
import shlex
from typing import Any

from core.events import Risk
from core.policy import Policy, PolicyError, Verdict
from core.process import run_process
from core.tools.registry import Plan, ToolOutput, ToolSpec, tool

_SECRET_ENV = re.compile(r"(?i)TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE|CREDENTIAL|DATABASE_URL|AUTH")


def scrubbed_env() -> dict[str, str]:
    """The bot's environment minus anything that looks like a secret: children never see our tokens."""
    return {k: v for k, v in os.environ.items() if not _SECRET_ENV.search(k)}


def command_tools(policy: Policy) -> list[ToolSpec]:
    @tool(risk=Risk.EXEC)
    async def run_command(command: str) -> ToolOutput:
        """Run one program with its arguments (no shell: no pipes, redirections, && or ;).

        Read-only commands (df, free, ps, ls, cat inside the file roots, journalctl…) run at once;
        anything else waits for a person's approval; destructive commands are always refused.

        Args:
            command: the command line, for example "df -h /var".
        """
        raise PolicyError("run_command runs only through its plan")  # pragma: no cover

    @run_command.plan
    async def _plan(args: dict[str, Any]) -> Plan:
        decision = policy.check_command(args["command"])
        if decision.verdict is Verdict.FORBIDDEN:
            raise PolicyError(decision.reason)
        argv = decision.argv
        cwd = str(policy.roots[0]) if policy.roots and policy.roots[0].is_dir() else None

        async def execute() -> ToolOutput:
            result = await run_process(
                argv,
                timeout=policy.config.command_timeout,
                output_cap=policy.config.output_cap * 4,
                cwd=cwd,
                env=scrubbed_env(),
            )
            status = "timed out" if result.timed_out else f"exit status {result.exit_status}"
            body = result.combined() or "(no output)"
            cut = "\n(output cut at the cap)" if result.truncated else ""
            return ToolOutput(f"$ {shlex.join(argv)}\n{body}{cut}\n[{status}]", result.ok, result.exit_status)

        risk = Risk.READ if decision.verdict is Verdict.READ else Risk.EXEC
        shown = shlex.join(argv)
        return Plan(risk=risk, summary=f"run {shown}", detail=shown, detail_kind="argv", run=execute)

    return [run_command]
